"""Paths and URIs: local folders, NFS and any pyarrow filesystem (s3://, gs://) look the same to every stage."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import shutil
import tempfile

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
        return pafs.S3FileSystem(**kwargs), uri[len("s3://") :].rstrip("/")
    if is_uri(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), posixpath.abspath(uri)


def absolute(uri: str) -> str:
    """A local path made absolute (Ray Train workers run in their own directories); URIs unchanged."""
    return uri if is_uri(uri) else posixpath.abspath(uri)


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
    files = [
        f
        for f in files
        if not any(p.startswith(("_", ".")) for p in f[len(path) :].split("/") if p) or any(ch in path for ch in "*?[")
    ]
    if not files:
        raise FileNotFoundError(f"no input files at {path}")
    return sorted(files)


def parquet_files(fs: pafs.FileSystem, path: str | list) -> list[str]:
    """The parquet files under `path` (list_files), or of the files listed."""
    return [f for f in (path if isinstance(path, list) else list_files(fs, path)) if f.endswith(".parquet")]


def read_batches(fs: pafs.FileSystem, path: str | list, columns: list | None = None, batch_size: int = 8192):
    """The `columns` of every parquet file under `path` (or of the files listed), batch by batch (pyarrow record
    batches), read in the calling process, file after file in path order: one file's batch in memory at a time. For
    steps whose rows come to the driver anyway, or that only count: a Ray Data read first starts its tasks (seconds
    on a small machine)."""
    import pyarrow.parquet as pq

    for name in parquet_files(fs, path):
        with fs.open_input_file(name) as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


def count_rows(fs: pafs.FileSystem, path: str | list) -> int:
    """Rows of the parquet files under `path` (or listed), from their footers."""
    import pyarrow.parquet as pq

    total = 0
    for name in parquet_files(fs, path):
        with fs.open_input_file(name) as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def write_table(fs: pafs.FileSystem, folder: str, table, rows_per_file: int = 0) -> None:
    """`table` as the files of `folder`, which is emptied first (what Ray Data's write_parquet(mode='overwrite')
    leaves): one file, or files of at most `rows_per_file` rows (an empty table still writes one file)."""
    import pyarrow.parquet as pq

    if exists(fs, folder):
        fs.delete_dir(folder)
    fs.create_dir(folder, recursive=True)
    step = rows_per_file or max(1, len(table))
    for i, at in enumerate(range(0, max(1, len(table)), step)):
        pq.write_table(table.slice(at, step), join(folder, f"part-{i:05d}.parquet"), filesystem=fs)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_json(fs: pafs.FileSystem, path: str, data) -> None:
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True).encode())


def read_json(fs: pafs.FileSystem, path: str):
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def is_uri(path: str) -> bool:
    return "://" in path


def local_folder(uri: str, storage: StorageConfig | None = None) -> str:
    """A model folder at a URI, copied once per machine into a cache (`$LMINDEXER_CACHE`, else the temp folder) so
    `from_pretrained` can read it; local paths as they are. The cache key covers every file's size and time, so a
    folder rewritten at the same URI is fetched again. Safe when several actors of one node ask at once."""
    if not is_uri(uri):
        return uri
    fs, path = filesystem(uri, storage)
    if not exists(fs, path):
        raise FileNotFoundError(f"model folder not found: {uri}")
    files = sorted(
        (i.path, i.size, i.mtime_ns)
        for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
        if i.type == pafs.FileType.File
    )
    cache = os.path.join(os.environ.get("LMINDEXER_CACHE") or tempfile.gettempdir(), "lmindexer-folders")
    target = os.path.join(cache, hashlib.sha1(repr((uri, files)).encode()).hexdigest()[:16])
    if os.path.exists(target):
        return target
    os.makedirs(cache, exist_ok=True)
    part = tempfile.mkdtemp(dir=cache, prefix=".part-")
    pafs.copy_files(path, part, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    try:
        os.rename(part, target)
    except OSError:  # another process got there first
        shutil.rmtree(part, ignore_errors=True)
    return target


def put_folder(local: str, uri: str, storage: StorageConfig | None = None) -> None:
    """Copy a local folder to a URI (replacing what was there) or to another local path."""
    fs, path = filesystem(uri, storage)
    if exists(fs, path):
        fs.delete_dir(path)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
