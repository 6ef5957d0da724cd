"""`lmindexer assign-ids`: an ID for every document, streamed through an autoscaling Ray Data actor pool.

The corpus's texts go through the trained indexer in committed rounds, then every document gets a unique ID
(lmindexer/ids/table_writer.py: exactly once, resumable, both collision strategies, incremental indexing); the
table (doc_id, codes, suffix, sid) is written to <ids>/table/ and counted.
"""

from __future__ import annotations

import time

from .. import storage
from ..config import AssignConfig
from ..ids.methods import CodesActor
from ..ids.table_writer import encode_rounds, make_unique
from ..models.indexer import CONFIG_FILE
from ..paths import RunContext


def assign_ids(assign: AssignConfig, run: RunContext, max_length: int, bf16: bool = False) -> dict:
    """The stage: every document of the prepared corpus through the indexer (assign.indexer, else the run's), its
    text cut at `max_length` tokens (model.max_length; `bf16`: autocast on GPUs), into a table of unique IDs at
    assign.output (else the run's); the table's summary."""
    start = time.time()
    fs, out = run.filesystem(run.layout.ids)
    dfs, dpath = run.filesystem(run.layout.docs)
    indexer = assign.indexer or run.layout.indexer
    encode_rounds(
        run,
        assign.files_per_round,
        fs,
        out,
        dfs,
        dpath,
        ["doc_id", "text"],
        CodesActor,
        {
            "method_dir": indexer,
            "storage_cfg": run.storage,
            "candidates": assign.candidates,
            "max_length": max_length,
            "bf16": bf16,
        },
    )
    ifs, ipath = run.filesystem(indexer)
    meta = storage.read_json(ifs, storage.join(ipath, CONFIG_FILE))
    size = (meta.get("ids") or meta["indexer"])["codebook_size"]  # indexers saved before the ID spec was
    source = {"method": "lmindexer", "indexer": storage.absolute(indexer)}
    return make_unique(assign, run, run.layout.ids, start, size, source)


def finished_table(assign: AssignConfig, run: RunContext) -> dict | None:
    """The summary of an ID table assign-ids already finished with the current indexer (its summary.json is written
    last and is newer than the indexer's weights), else None: `run` then skips the step."""
    fs, out = run.filesystem(run.layout.ids)
    indexer = storage.absolute(assign.indexer or run.layout.indexer)
    ifs, ipath = run.filesystem(indexer)
    done, weights = storage.join(out, "summary.json"), storage.join(ipath, CONFIG_FILE)
    if not storage.exists(fs, done) or not storage.exists(ifs, weights):
        return None
    summary = storage.read_json(fs, done)
    newer = fs.get_file_info(done).mtime >= ifs.get_file_info(weights).mtime
    return summary if newer and summary.get("indexer") == indexer and not assign.existing else None
