"""Writing an ID table, the two steps assign-ids and baseline-ids share (`encode_rounds`, then `make_unique`):

1. Codes. Input shards are taken in rounds; each round is read_parquet -> codes in actors that load the ID method
   once (ids/methods.py's CodesActor) -> write_parquet into <ids>/_codes/<round>/, then committed by a marker. A
   re-run drops uncommitted rounds and does only the shards no committed round holds: exactly once, finished shards
   never redone.
2. Uniqueness. Ray Data groups documents by prefix (rebalance) and by full code (suffix); documents of an existing
   ID table keep their IDs. The table (doc_id, codes, suffix, sid) is written to <ids>/table/ and counted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray
from ray.data.aggregate import Count
from ray.data.expressions import col

from .. import storage
from ..config import AssignConfig, RayConfig
from ..paths import RunContext
from ..quantizers.codes import code_key
from ..raydata import map_files, map_groups, read_numpy
from ..runtime import shuffle_partitions, shuffle_strategy
from .unique import rebalance_group, sid, suffix_group

log = logging.getLogger("lmindexer.assign")


def _round_name(files: list[str]) -> str:
    return "round-" + hashlib.sha1("\n".join(files).encode()).hexdigest()[:12]


def encode_rounds(
    run: RunContext,
    files_per_round: int,
    fs,
    out: str,
    src_fs,
    src: str,
    columns: list[str],
    actor,
    actor_kwargs: dict,
    actor_gpu: bool = True,
) -> None:
    """Step 1: `actor` turns the `columns` of every shard under `src` not yet in a committed round into codes. Rounds
    record their shards relative to `src`, so a run reached by another path (a moved folder, a link) resumes; a
    committed round whose shards are no longer all in `src` (a re-prepared corpus) is dropped and redone."""
    files = storage.list_files(src_fs, src)
    name_of = {f: _shard_name(f, src) for f in files}
    raw, done_dir = storage.join(out, "_codes"), storage.join(out, "_done")
    committed = {
        os.path.basename(i.path)[:-5]: [_shard_name(f, src) for f in storage.read_json(fs, i.path)["files"]]
        for i in fs.get_file_info(pafs.FileSelector(done_dir, allow_not_found=True))
    }
    present = set(name_of.values())
    for round_name, shards in list(committed.items()):
        if not set(shards) <= present:
            log.warning("codes: %s was made from shards that are gone; it is done again", round_name)
            fs.delete_file(storage.join(done_dir, round_name + ".json"))
            del committed[round_name]
    for info in fs.get_file_info(pafs.FileSelector(raw, allow_not_found=True)):
        if os.path.basename(info.path) not in committed:  # a round that crashed before its commit, or a stale one
            fs.delete_dir(info.path)
    finished = {f for fl in committed.values() for f in fl}
    pending = [f for f in files if name_of[f] not in finished]
    (log.info if len(pending) < len(files) else log.debug)(
        "codes: %d shard(s), %d already done, %d to do", len(files), len(files) - len(pending), len(pending)
    )
    step = max(1, files_per_round)
    for i in range(0, len(pending), step):
        chunk, start = pending[i : i + step], time.time()
        names = [name_of[f] for f in chunk]
        name = _round_name(names)
        map_files(run, chunk, src_fs, columns, actor, actor_kwargs, storage.join(raw, name), fs, gpu=actor_gpu)
        storage.write_json(fs, storage.join(done_dir, name + ".json"), {"files": names})
        log.info(
            "codes: round %d/%d (%d shard(s)) committed in %.1fs",
            i // step + 1,
            -(-len(pending) // step),
            len(chunk),
            time.time() - start,
        )


def _shard_name(path: str, src: str) -> str:
    """A shard's name relative to its source folder (rounds written before this kept absolute paths)."""
    root = src.rstrip("/") + "/"
    return path[len(root) :] if path.startswith(root) else path


def _with_keys(batch: pa.Table) -> pa.Table:
    codes = batch.column("codes").to_pylist()
    batch = batch.append_column("key", pa.array([code_key(c) for c in codes]))
    return batch.append_column("prefix", pa.array([code_key(c[:-1]) for c in codes]))


def _rebalance(group: dict) -> dict:
    old = group["suffix"] >= 0
    if old.all():
        return group
    last = rebalance_group(
        group["doc_id"][~old],
        np.stack(group["candidates"][~old]),
        np.stack(group["scores"][~old]),
        taken=np.array([c[-1] for c in group["codes"][old]], dtype=np.int64),
    )
    codes = [np.asarray(c) for c in group["codes"]]
    for j, i in enumerate(np.flatnonzero(~old)):
        codes[i] = np.concatenate([codes[i][:-1], [last[j]]]).astype(np.int32)
    group["codes"] = np.array(codes + [None], dtype=object)[:-1]
    group["key"] = np.array([code_key(c) for c in codes], dtype=object)
    return group


def _prefer_old(group: dict) -> dict:
    keep = int(np.argmax(group["suffix"]))  # an old row (suffix >= 0) wins over new ones (-1)
    return {k: v[keep : keep + 1] for k, v in group.items()}


def _suffix(group: dict) -> pa.Table:
    suffix = suffix_group(group["doc_id"].astype(str), group["suffix"])
    return pa.table(
        {
            "doc_id": pa.array(group["doc_id"].astype(str)),
            "codes": pa.array([np.asarray(c).tolist() for c in group["codes"]], pa.list_(pa.int32())),
            "suffix": pa.array(suffix, pa.int32()),
            "sid": pa.array([sid(c, s) for c, s in zip(group["codes"], suffix)]),
        }
    )


# shuffle_v2's map-side input per task in the uniqueness pass and its checks: at Ray's default (1 GiB) the doc_id count
# of a million-row table ran as one map task of ~700 MiB; at 1 MiB no map task was the largest worker (a probe)
SHUFFLE_BATCH_BYTES = 1 << 20


def unique_shuffle(settings: RayConfig, rows: int) -> str:
    """The shuffle of a uniqueness pass over `rows` codes on Ray Data (ray.unique_shuffle; auto: shuffle_v2 above
    100,000 rows, where the sort shuffle's small partitions held in the driver reach tens of MiB)."""
    if settings.unique_shuffle != "auto":
        return settings.unique_shuffle
    return "shuffle_v2" if rows > 100_000 else settings.shuffle


def make_unique(
    assign: AssignConfig, run: RunContext, uri: str, start: float, codebook_size: int, source: dict
) -> dict:
    """Step 2 for any codes under <uri>/_codes: keep existing IDs, rebalance or suffix collisions, verify.
    `source` (the method, and the indexer that made the codes) goes into summary.json. Ray Data groups the rows
    across the cluster; at most ray.in_process_rows of them are grouped in this process by the same functions."""
    fs, out = run.filesystem(uri)
    codes = storage.join(out, "_codes")
    efs = epath = None
    if assign.existing:
        efs, epath = run.filesystem(storage.join(assign.existing, "table"))
    rows = storage.count_rows(fs, codes) + (storage.count_rows(efs, epath) if epath else 0)
    if run.in_process(rows):
        kept = _unique_here(assign, fs, out, efs, epath)
    else:  # minutes at a million rows on a small machine: say what runs
        shuffle, begun = unique_shuffle(run.ray, rows), time.time()
        log.info("ids: grouping %d codes on Ray Data (%s, %d partitions)", rows, shuffle, shuffle_partitions(rows))
        with shuffle_strategy(shuffle, SHUFFLE_BATCH_BYTES):
            kept = _unique_on_ray(assign, fs, out, efs, epath, rows)
        log.info("ids: table written in %.1fs; checking it", time.time() - begun)
    return _verify(assign, run, uri, kept, time.time() - start, codebook_size, source)


def _with_old_columns(b: pa.Table, k: int) -> pa.Table:
    """An existing table's rows with the columns of new codes: no rebalancing candidates (they never move)."""
    return b.append_column("candidates", pa.array([[0] * k] * b.num_rows, pa.list_(pa.int32()))).append_column(
        "scores", pa.array([[0.0] * k] * b.num_rows, pa.list_(pa.float32()))
    )


def _new_suffix(b: pa.Table) -> pa.Table:
    return b.append_column("suffix", pa.array(np.full(b.num_rows, -1, dtype=np.int64)))


def _unique_on_ray(assign: AssignConfig, fs, out: str, efs, epath, rows: int) -> int:
    """The ID table from the `rows` codes (new and existing) with Ray Data's groupby; returns the rows kept from the
    existing table."""
    parts = shuffle_partitions(rows)
    new = ray.data.read_parquet(storage.join(out, "_codes"), filesystem=fs).map_batches(
        _new_suffix, batch_format="pyarrow"
    )
    kept = 0
    if epath:
        old = ray.data.read_parquet(epath, filesystem=efs).select_columns(["doc_id", "codes", "suffix"])
        kept = old.count()
        old = old.map_batches(_with_old_columns, fn_kwargs={"k": assign.candidates}, batch_format="pyarrow")
        # a document already in the table keeps its ID, whatever codes it would get now
        new = new.union(old.select_columns(new.schema().names))
        new = new.groupby("doc_id", num_partitions=parts).map_groups(_prefer_old, batch_format="numpy")
    keyed = new.map_batches(_with_keys, batch_format="pyarrow")
    if assign.collisions == "rebalance":
        keyed = keyed.groupby("prefix", num_partitions=parts).map_groups(_rebalance, batch_format="numpy")
    table = keyed.groupby("key", num_partitions=parts).map_groups(_suffix, batch_format="numpy")
    table.write_parquet(storage.join(out, "table"), filesystem=fs, mode="overwrite")
    return kept


def _unique_here(assign: AssignConfig, fs, out: str, efs, epath) -> int:
    """`_unique_on_ray` in this process, group by group in key order."""
    new = _new_suffix(pa.Table.from_batches(list(storage.read_batches(fs, storage.join(out, "_codes")))))
    kept = 0
    if epath:
        old = pa.Table.from_batches(list(storage.read_batches(efs, epath, ["doc_id", "codes", "suffix"])))
        kept = old.num_rows
        old = _with_old_columns(old, assign.candidates).select(new.column_names).cast(new.schema)
        new = map_groups(pa.concat_tables([new, old]), "doc_id", _prefer_old)
    rows = _with_keys(new)
    if assign.collisions == "rebalance":
        rows = map_groups(rows, "prefix", _rebalance)
    storage.write_table(fs, storage.join(out, "table"), map_groups(rows, "key", _suffix))
    return kept


def _repeated(ds, key: str, rows: int) -> int:
    """How many values of `key` occur more than once in the `rows` rows of `ds`."""
    counts = ds.groupby(key, num_partitions=shuffle_partitions(rows)).aggregate(Count())
    return counts.filter(expr=col("count()") > 1).count()


def _verify(
    assign: AssignConfig, run: RunContext, uri: str, kept: int, seconds: float, codebook_size: int, source: dict
) -> dict:
    """Documents in equal IDs out and no doc_id twice; the figures go next to the table as summary.json."""
    fs, out = run.filesystem(uri)
    dfs, dpath = run.filesystem(run.layout.docs)
    docs_in = storage.count_rows(dfs, dpath)
    table = storage.join(out, "table")
    rows = storage.count_rows(fs, table)
    # sids are unique by construction (distinct keys, distinct suffixes); doc_ids are checked
    if run.in_process(rows):
        got = read_numpy(fs, table, ["doc_id", "suffix"])
        collided = int(np.count_nonzero(got["suffix"] > 0))
        largest = int(got["suffix"].max()) + 1 if rows else 0
        dup_docs = int(np.count_nonzero(np.unique(got["doc_id"], return_counts=True)[1] > 1))
    else:  # across the cluster: the driver holds no rows (a dataset keeps the shuffle of the block it is read in)
        with shuffle_strategy(unique_shuffle(run.ray, rows), SHUFFLE_BATCH_BYTES):
            ds = ray.data.read_parquet(table, filesystem=fs)
            collided = ds.select_columns(["suffix"]).filter(expr=col("suffix") > 0).count()
            largest = int(ds.max("suffix")) + 1
            dup_docs = _repeated(ds.select_columns(["doc_id"]), "doc_id", rows)
    summary = {
        **source,
        "documents_in": docs_in,
        "existing_kept": kept,
        "ids_out": rows,
        "duplicate_doc_ids": dup_docs,
        "documents_with_suffix": collided,
        "largest_collision_group": largest,
        "collisions": assign.collisions,
        "codebook_size": codebook_size,
        "table": storage.join(uri, "table"),
        "seconds": round(seconds, 1),
    }
    warning = poor_fit(rows, collided, largest)
    if warning:
        summary["warning"] = warning
    if dup_docs or (rows != docs_in if not kept else not kept <= rows <= kept + docs_in):
        raise RuntimeError(f"ids: counts do not add up: {summary}")
    storage.write_json(fs, storage.join(out, "summary.json"), summary)
    log.info(
        "ids: %d documents in, %d IDs out, all unique (%d with a suffix) in %.1fs", docs_in, rows, collided, seconds
    )
    if summary.get("warning"):
        log.warning("ids: %s", summary["warning"])
    return summary


def poor_fit(rows: int, with_suffix: int, largest_group: int) -> str | None:
    """A warning when the codes do not tell the documents apart, so that the IDs are mostly suffixes: most documents
    need a suffix, or one group of documents with the same codes holds a large share of the corpus. None when the
    table is fine. (A group is the documents whose codes are all equal; its members get suffixes 0, 1, ...)"""
    if rows < 100:  # a handful of documents: shares say nothing
        return None
    problems = []
    if with_suffix > rows / 2:
        problems.append(f"{with_suffix / rows:.0%} of the documents need a suffix")
    if largest_group > max(rows / 20, 50):
        problems.append(f"{largest_group:,} documents ({largest_group / rows:.0%}) share one code tuple")
    if not problems:
        return None
    return (
        " and ".join(problems)
        + ": the indexer does not tell this corpus' documents apart, so their IDs carry little meaning. Run learn-ids"
        " on this corpus (an indexer learned on other text fits it poorly), or add positions (indexer.num_positions);"
        " assign.collisions=rebalance moves documents to the next-nearest free last code."
    )
