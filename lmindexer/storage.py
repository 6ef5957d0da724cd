"""Paths and URIs: local folders, NFS and any pyarrow filesystem (s3://, gs://) look the same to every stage."""
from __future__ import annotations

import fnmatch
import json
import posixpath

import pyarrow.fs as pafs

from .config import StorageConfig


def filesystem(uri: str, storage: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI; S3 endpoint settings come from the config."""
    if uri.startswith("s3://") and storage is not None and (storage.s3_endpoint or storage.s3_region):
        kwargs = {"scheme": storage.s3_scheme}
        if storage.s3_endpoint:
            kwargs["endpoint_override"] = storage.s3_endpoint
        if storage.s3_region:
            kwargs["region"] = storage.s3_region
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), posixpath.abspath(uri)


def absolute(uri: str) -> str:
    """A local path made absolute (Ray Train workers run in their own directories); URIs unchanged."""
    return uri if "://" in uri else posixpath.abspath(uri)


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts)


def list_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """A file, every file under a folder (recursively), or the files matching a glob; sorted, hidden ones left out."""
    if any(ch in path for ch in "*?["):
        root = path
        while any(ch in root for ch in "*?["):
            root = posixpath.dirname(root)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = [i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"input not found: {path}")
        if info.type == pafs.FileType.File:
            return [path]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = [i.path for i in infos if i.type == pafs.FileType.File]
    files = [f for f in files if not any(p.startswith(("_", ".")) for p in f[len(path):].split("/") if p)
             or any(ch in path for ch in "*?[")]
    if not files:
        raise FileNotFoundError(f"no input files at {path}")
    return sorted(files)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_json(fs: pafs.FileSystem, path: str, data) -> None:
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True).encode())


def read_json(fs: pafs.FileSystem, path: str):
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())
