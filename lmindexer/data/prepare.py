"""`lmindexer prepare`: any corpus -> sharded parquet (doc_id, text, label, labels, extra), with Ray Data.

Every input row ends up either in <out>/docs or, with its reason, in <out>/skipped; the summary adds them up and
the command fails if the sums disagree.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import ray
from ray.data.aggregate import Count, Min
from ray.data.expressions import col

from .. import storage
from ..config import Config, ConfigError
from ..paths import RunLayout
from ..runtime import shuffle_partitions
from .readers import OUTPUT_COLUMNS, BadInputError, parse_file

log = logging.getLogger("lmindexer.prepare")
SUMMARY = "summary.json"  # in the corpus folder, written last
SHOW_SKIPPED = 10


def resolve_input(cfg: Config):
    """(filesystem, files, data config) for the configured input; a BEIR folder means its corpus.jsonl."""
    data = cfg.data
    if data.input == "builtin:demo":
        from .synthetic import write_demo

        folder = RunLayout(cfg).demo_source
        write_demo(folder, cfg.demo, cfg.seed)
        data = type(data)(**{**data.__dict__, "input": folder, "format": "beir"})
    if not data.input:
        raise ConfigError("no input: set data.input (a file, folder, glob or URI) or use 'builtin:demo'")
    fs, path = storage.filesystem(data.input, cfg.storage)
    beir = data.format == "beir" or (
        data.format == "auto"
        and storage.exists(fs, storage.join(path, "corpus.jsonl"))
        and storage.exists(fs, storage.join(path, "queries.jsonl"))
    )
    if beir:
        path = storage.join(path, "corpus.jsonl")
        data = type(data)(**{**data.__dict__, "format": "jsonl", "id_field": data.id_field or "_id"})
    return fs, storage.list_files(fs, path), data


def _parse_batch(batch: pa.Table, data, index: dict) -> pa.Table:
    tables = [
        parse_file(p, b, index[p], data)
        for p, b in zip(batch.column("path").to_pylist(), batch.column("bytes").to_pylist())
    ]
    return pa.concat_tables(tables)


def _mark_duplicates(batch: pa.Table, first: dict) -> pa.Table:
    ids = batch.column("doc_id").to_pylist()
    order = batch.column("_order").to_pylist()
    skip = batch.column("_skip").to_pylist()
    for i, (d, o) in enumerate(zip(ids, order)):
        if not skip[i] and d in first and first[d] != o:
            skip[i] = "duplicate_id"
    return batch.set_column(batch.schema.get_field_index("_skip"), "_skip", pa.array(skip, pa.string()))


def prepared(cfg: Config) -> dict | None:
    """The summary of the prepared corpus (written last, so its presence means complete), or None."""
    fs, path = storage.filesystem(RunLayout(cfg).corpus, cfg.storage)
    done = storage.join(path, SUMMARY)
    return storage.read_json(fs, done) if storage.exists(fs, done) else None


def prepare_once(cfg: Config) -> dict:
    """prepare, unless the corpus is already there."""
    return prepared(cfg) or prepare(cfg)


def prepare(cfg: Config) -> dict:
    start = time.time()
    fs, files, data = resolve_input(cfg)
    out = RunLayout(cfg).corpus
    out_fs, out_path = storage.filesystem(out, cfg.storage)
    log.info("prepare: %d input file(s) from %s -> %s", len(files), data.input, out)
    index = {}
    for i, f in enumerate(files):
        index[f] = index["/" + f.lstrip("/")] = i
    ds = ray.data.read_binary_files(files, filesystem=fs, include_paths=True)
    try:
        rows = ds.map_batches(
            _parse_batch, fn_kwargs={"data": data, "index": index}, batch_size=1, batch_format="pyarrow"
        ).materialize()
    except Exception as e:  # Ray wraps task errors; surface ours with its own message
        raise _unwrap(e) from None

    kept = rows.filter(expr=col("_skip") == "")
    dup = kept.groupby("doc_id", num_partitions=shuffle_partitions()).aggregate(Count(), Min("_order"))
    dup = dup.filter(expr=col("count()") > 1).take_all()
    first = {r["doc_id"]: r["min(_order)"] for r in dup}
    if first and data.on_bad == "error":
        d = next(iter(first))
        raise BadInputError(
            f"duplicate doc_id {d!r} ({len(first)} ids repeat); set data.on_bad=skip to keep the first of each"
        )
    if first:
        rows = rows.map_batches(_mark_duplicates, fn_kwargs={"first": first}, batch_format="pyarrow").materialize()

    total = rows.count()
    by_reason = rows.groupby("_skip", num_partitions=shuffle_partitions()).count().take_all()
    reasons = {r["_skip"]: r["count()"] for r in by_reason}
    written_expected = reasons.pop("", 0)
    truncated = int(rows.sum("_truncated") or 0) if total else 0
    docs = rows.filter(expr=col("_skip") == "").select_columns(OUTPUT_COLUMNS)
    docs.write_parquet(
        storage.join(out_path, "docs"), filesystem=out_fs, max_rows_per_file=cfg.data.rows_per_shard, mode="overwrite"
    )
    skipped_rows = rows.filter(expr=col("_skip") != "")
    if reasons:
        skipped_rows.select_columns(["_src", "_skip", "doc_id", "text"]).write_parquet(
            storage.join(out_path, "skipped"), filesystem=out_fs, mode="overwrite"
        )
        for r in skipped_rows.take(SHOW_SKIPPED):
            log.warning("skipped %s: %s (doc_id=%r)", r["_src"], r["_skip"], r["doc_id"])
    written = ray.data.read_parquet(storage.join(out_path, "docs"), filesystem=out_fs).count()
    summary = {
        "input": data.input,
        "files": len(files),
        "read": total,
        "written": written,
        "skipped": dict(sorted(reasons.items())),
        "truncated": truncated,
        "output": out,
        "seconds": round(time.time() - start, 1),
    }
    if written + sum(reasons.values()) != total or written != written_expected:
        raise RuntimeError(f"row counts disagree: {summary}")
    storage.write_json(out_fs, storage.join(out_path, SUMMARY), summary)
    log.info(
        "prepare: read %d, written %d, skipped %s, truncated %d (%.1fs)",
        total,
        written,
        summary["skipped"] or "none",
        truncated,
        summary["seconds"],
    )
    return summary


def _unwrap(e: Exception) -> Exception:
    """The BadInputError raised inside a Ray task (Ray re-raises it wrapped, with its text), else `e`."""
    marker = "BadInputError: "
    text = str(e)
    if marker in text:
        return BadInputError(text.split(marker, 1)[1].splitlines()[0])
    return e


def _docs(cfg: Config):
    fs, path = storage.filesystem(RunLayout(cfg).docs, cfg.storage)
    if not storage.exists(fs, path):
        raise FileNotFoundError(f"no prepared corpus at {RunLayout(cfg).docs}: run `lmindexer prepare` first")
    return fs, path


def load_docs(cfg: Config) -> "ray.data.Dataset":
    """The prepared corpus as a Ray Data dataset, for the steps that run over it on the cluster."""
    fs, path = _docs(cfg)
    return ray.data.read_parquet(path, filesystem=fs)


def count_docs(cfg: Config) -> int:
    """Documents of the prepared corpus, from its parquet footers."""
    return storage.count_rows(*_docs(cfg))


def read_docs(cfg: Config, columns: list | None, batch_size: int = 8192):
    """The prepared corpus's `columns`, batch by batch, read in the calling process, shard after shard in path
    order (storage.read_batches): for steps that bring the rows to the driver anyway (a tokenizer's sample, the
    texts of the ID table's documents)."""
    yield from storage.read_batches(*_docs(cfg), columns, batch_size)
