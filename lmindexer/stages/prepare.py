"""`lmindexer prepare`: any corpus -> sharded parquet (doc_id, text, label, labels, extra), with Ray Data (in this
process for inputs of at most ray.in_process_rows rows).

Every input row ends up either in <out>/docs or, with its reason, in <out>/skipped; the summary adds them up and
the command fails if the sums disagree.
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data.aggregate import Count, Min
from ray.data.expressions import col

from .. import storage
from ..config import ConfigError, DataConfig, DemoConfig
from ..data.corpus import SUMMARY, prepared
from ..data.readers import OUTPUT_COLUMNS, BadInputError, parse_file
from ..paths import RunContext
from ..runtime import shuffle_partitions

log = logging.getLogger("lmindexer.prepare")
SHOW_SKIPPED = 10
SKIPPED_COLUMNS = ["_src", "_skip", "doc_id", "text"]
# inputs larger than this many bytes per ray.in_process_rows row go to Ray Data without a try in process (SciFact's
# abstracts average 1.6 KB a line, Amazon Beauty's items 0.3 KB)
IN_PROCESS_BYTES_PER_ROW = 2048


def resolve_input(data: DataConfig, run: RunContext, demo: DemoConfig | None = None):
    """(filesystem, files, data settings) for the configured input; a BEIR folder means its corpus.jsonl;
    'builtin:demo' writes the embedded corpus (`demo`'s sizes) first."""
    if data.input == "builtin:demo":
        from ..data.synthetic import write_demo

        folder = run.layout.demo_source
        write_demo(folder, demo or DemoConfig(), run.seed)
        data = type(data)(**{**data.__dict__, "input": folder, "format": "beir"})
    if not data.input:
        raise ConfigError("no input: set data.input (a file, folder, glob or URI) or use 'builtin:demo'")
    fs, path = run.filesystem(data.input)
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


def prepare_once(data: DataConfig, run: RunContext, demo: DemoConfig | None = None) -> dict:
    """prepare, unless the corpus is already there."""
    return prepared(run) or prepare(data, run, demo)


def prepare(data: DataConfig, run: RunContext, demo: DemoConfig | None = None) -> dict:
    """The stage: the input `data` names -> the run's corpus folder (run.layout.corpus); its summary."""
    start = time.time()
    fs, files, data = resolve_input(data, run, demo)
    out = run.layout.corpus
    out_fs, out_path = run.filesystem(out)
    log.debug("prepare: %d input file(s) from %s -> %s", len(files), data.input, out)
    index = {}
    for i, f in enumerate(files):
        index[f] = index["/" + f.lstrip("/")] = i
    parsed = _parse_here(run, fs, files, data, index)
    steps = _Here(parsed) if parsed is not None else _OnRay(_parse_on_ray(fs, files, data, index))
    first = steps.duplicates()
    if first and data.on_bad == "error":
        d = next(iter(first))
        raise BadInputError(
            f"duplicate doc_id {d!r} ({len(first)} ids repeat); set data.on_bad=skip to keep the first of each"
        )
    if first:
        steps.mark_duplicates(first)
    total, reasons, truncated = steps.counts()
    written_expected = reasons.pop("", 0)
    docs, skipped = storage.join(out_path, "docs"), storage.join(out_path, "skipped")
    steps.write(out_fs, docs, skipped if reasons else None, data.rows_per_shard)
    for r in steps.skipped_sample(SHOW_SKIPPED) if reasons else []:
        log.warning("skipped %s: %s (doc_id=%r)", r["_src"], r["_skip"], r["doc_id"])
    written = storage.count_rows(out_fs, docs)
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
        "prepare: %s -> %s: read %d, written %d, skipped %s, truncated %d (%.1fs)",
        data.input,
        out,
        total,
        written,
        summary["skipped"] or "none",
        truncated,
        summary["seconds"],
    )
    return summary


def _parse_here(run: RunContext, fs, files: list, data, index: dict) -> pa.Table | None:
    """Every input row parsed in this process, or None as soon as they pass ray.in_process_rows (or with no
    files): Ray Data parses them then. Files of more than IN_PROCESS_BYTES_PER_ROW bytes per allowed row are not
    tried here at all (a single large file would be parsed whole before its rows were counted)."""
    if sum(info.size or 0 for info in fs.get_file_info(files)) > run.ray.in_process_rows * IN_PROCESS_BYTES_PER_ROW:
        return None
    tables, rows = [], 0
    for f in files:
        with fs.open_input_stream(f) as stream:
            table = parse_file(f, stream.read(), index[f], data)
        rows += len(table)
        if not run.in_process(rows):
            return None
        tables.append(table)
    return pa.concat_tables(tables) if tables else None


def _parse_on_ray(fs, files: list, data, index: dict) -> "ray.data.Dataset":
    ds = ray.data.read_binary_files(files, filesystem=fs, include_paths=True)
    try:
        return ds.map_batches(
            _parse_batch, fn_kwargs={"data": data, "index": index}, batch_size=1, batch_format="pyarrow"
        ).materialize()
    except Exception as e:  # Ray wraps task errors; surface ours with its own message
        raise _unwrap(e) from None


class _Here:
    """prepare's steps over the parsed rows as one pyarrow table in this process (small inputs)."""

    def __init__(self, rows: pa.Table):
        self.rows = rows

    def duplicates(self) -> dict:
        kept = self.rows.filter(pc.equal(self.rows["_skip"], ""))
        groups = kept.group_by("doc_id").aggregate([("doc_id", "count"), ("_order", "min")])
        groups = groups.filter(pc.greater(groups["doc_id_count"], 1))
        return dict(zip(groups["doc_id"].to_pylist(), groups["_order_min"].to_pylist()))

    def mark_duplicates(self, first: dict) -> None:
        self.rows = _mark_duplicates(self.rows, first)

    def counts(self) -> tuple[int, dict, int]:
        reasons = self.rows.group_by("_skip").aggregate([("_skip", "count")])
        truncated = int(pc.sum(self.rows["_truncated"]).as_py() or 0)
        return len(self.rows), dict(zip(reasons["_skip"].to_pylist(), reasons["_skip_count"].to_pylist())), truncated

    def write(self, fs, docs: str, skipped: str | None, rows_per_shard: int) -> None:
        keep = pc.equal(self.rows["_skip"], "")
        storage.write_table(fs, docs, self.rows.filter(keep).select(OUTPUT_COLUMNS), rows_per_shard)
        if skipped:
            storage.write_table(fs, skipped, self.rows.filter(pc.invert(keep)).select(SKIPPED_COLUMNS))

    def skipped_sample(self, n: int) -> list:
        return self.rows.filter(pc.not_equal(self.rows["_skip"], "")).slice(0, n).to_pylist()


class _OnRay:
    """The same steps as Ray Data pipelines (inputs over ray.in_process_rows rows)."""

    def __init__(self, rows: "ray.data.Dataset"):
        self.rows = rows

    def duplicates(self) -> dict:
        kept = self.rows.filter(expr=col("_skip") == "")
        dup = kept.groupby("doc_id", num_partitions=shuffle_partitions()).aggregate(Count(), Min("_order"))
        return {r["doc_id"]: r["min(_order)"] for r in dup.filter(expr=col("count()") > 1).take_all()}

    def mark_duplicates(self, first: dict) -> None:
        self.rows = self.rows.map_batches(
            _mark_duplicates, fn_kwargs={"first": first}, batch_format="pyarrow"
        ).materialize()

    def counts(self) -> tuple[int, dict, int]:
        total = self.rows.count()
        by_reason = self.rows.groupby("_skip", num_partitions=shuffle_partitions()).count().take_all()
        truncated = int(self.rows.sum("_truncated") or 0) if total else 0
        return total, {r["_skip"]: r["count()"] for r in by_reason}, truncated

    def write(self, fs, docs: str, skipped: str | None, rows_per_shard: int) -> None:
        kept = self.rows.filter(expr=col("_skip") == "").select_columns(OUTPUT_COLUMNS)
        kept.write_parquet(docs, filesystem=fs, max_rows_per_file=rows_per_shard, mode="overwrite")
        if skipped:
            bad = self.rows.filter(expr=col("_skip") != "").select_columns(SKIPPED_COLUMNS)
            bad.write_parquet(skipped, filesystem=fs, mode="overwrite")

    def skipped_sample(self, n: int) -> list:
        return self.rows.filter(expr=col("_skip") != "").take(n)


def _unwrap(e: Exception) -> Exception:
    """The BadInputError raised inside a Ray task (Ray re-raises it wrapped, with its text), else `e`."""
    marker = "BadInputError: "
    text = str(e)
    if marker in text:
        return BadInputError(text.split(marker, 1)[1].splitlines()[0])
    return e
