"""Parse one corpus file into rows of the common schema, marking bad rows with a reason instead of dropping them.

Pure functions on bytes: `prepare` runs them inside Ray Data tasks, tests call them directly.
Common schema: doc_id, text, label, labels, extra (JSON of the other fields), plus internal _order/_src/_skip.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ConfigError, DataConfig

ID_CANDIDATES = ("doc_id", "_id", "id")
FORMAT_BY_EXT = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("label", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("extra", pa.string()),
        ("_order", pa.int64()),
        ("_src", pa.string()),
        ("_skip", pa.string()),
        ("_truncated", pa.bool_()),
    ]
)
OUTPUT_COLUMNS = ["doc_id", "text", "label", "labels", "extra"]


class BadInputError(ValueError):
    """A bad row met under `on_bad: error` (or `on_long: error`)."""


def file_format(path: str, configured: str) -> str:
    if configured not in ("auto", "beir"):
        return configured
    ext = posixpath.splitext(path)[1].lower()
    if ext not in FORMAT_BY_EXT:
        raise ConfigError(f"cannot tell the format of {path}: set data.format (jsonl, csv, tsv, parquet)")
    return FORMAT_BY_EXT[ext]


def _records(data: bytes, fmt: str, cfg: DataConfig):
    """Yield (line_number, dict or None, parse_error) for each record of a file."""
    if fmt == "jsonl":
        for n, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield n, None, "undecodable"
                continue
            except json.JSONDecodeError:
                yield n, None, "malformed"
                continue
            yield (n, obj, None) if isinstance(obj, dict) else (n, None, "malformed")
    elif fmt in ("csv", "tsv"):
        text = data.decode("utf-8", errors="surrogateescape")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        header = list(cfg.csv_columns) or None
        for values in reader:
            n = reader.line_num
            if header is None:
                header = values
                continue
            if not values:
                continue
            if any("\udc80" <= ch <= "\udcff" for v in values for ch in v):
                yield n, None, "undecodable"
            elif len(values) != len(header):
                yield n, None, "malformed"
            else:
                yield n, dict(zip(header, values)), None
    elif fmt == "parquet":
        for n, obj in enumerate(pq.read_table(io.BytesIO(data)).to_pylist(), 1):
            yield n, obj, None
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_as_text(v) for v in value if _as_text(v))
    return str(value).strip()


def _doc_id(obj: dict, cfg: DataConfig, path: str, n: int):
    if cfg.id_field == "@row":
        return f"{posixpath.basename(path)}:{n}", None
    fields = [cfg.id_field] if cfg.id_field else [f for f in ID_CANDIDATES if f in obj]
    text = _as_text(obj.get(fields[0])) if fields else ""
    return text or None, (fields[0] if fields else None)


def parse_file(path: str, data: bytes, file_index: int, cfg: DataConfig) -> pa.Table:
    """All rows of one file in the common schema; bad ones carry `_skip` (or raise under on_bad=error)."""
    fmt = file_format(path, cfg.format)
    rows = {name: [] for name in SCHEMA.names}
    label_fields = list(cfg.label_fields)
    for n, obj, error in _records(data, fmt, cfg):
        skip, doc_id, text, truncated, label, labels, extra = error or "", None, None, False, None, None, None
        if obj is not None:
            doc_id, id_field = _doc_id(obj, cfg, path, n)
            present = [f for f in cfg.text_fields if f in obj]
            text = cfg.text_separator.join(t for t in (_as_text(obj[f]) for f in present) if t)
            if doc_id is None:
                skip = "missing_id"
            elif not present:
                skip = "missing_text"
            elif not text.strip():
                skip = "empty_text"
            elif len(text) > cfg.max_text_chars:
                if cfg.on_long == "error":
                    raise BadInputError(
                        f"{path}:{n}: document {doc_id!r} has {len(text)} characters, "
                        f"more than data.max_text_chars={cfg.max_text_chars}"
                    )
                if cfg.on_long == "skip":
                    skip = "too_long"
                else:
                    text, truncated = text[: cfg.max_text_chars], True
            if label_fields:
                labels = [_as_text(obj.get(f)) for f in label_fields]
                label = labels[0]
            if cfg.keep_extra:
                used = set(cfg.text_fields) | set(label_fields) | {id_field}
                extra = json.dumps({k: v for k, v in obj.items() if k not in used}, ensure_ascii=False, default=str)
        if skip and cfg.on_bad == "error":
            raise BadInputError(f"{path}:{n}: bad input ({skip}); set data.on_bad=skip to count and skip such rows")
        for name, value in zip(
            SCHEMA.names, (doc_id, text, label, labels, extra, (file_index << 32) | n, f"{path}:{n}", skip, truncated)
        ):
            rows[name].append(value)
    return pa.table(rows, schema=SCHEMA)
