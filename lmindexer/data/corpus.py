"""The prepared corpus, read: what every stage after `prepare` uses to reach its rows (never the prepare stage
itself)."""

from __future__ import annotations

import ray

from .. import storage
from ..paths import RunContext

SUMMARY = "summary.json"  # in the corpus folder, written last by prepare


def prepared(run: RunContext) -> dict | None:
    """The summary of the prepared corpus (written last, so its presence means complete), or None."""
    fs, path = run.filesystem(run.layout.corpus)
    done = storage.join(path, SUMMARY)
    return storage.read_json(fs, done) if storage.exists(fs, done) else None


def _docs(run: RunContext):
    fs, path = run.filesystem(run.layout.docs)
    if not storage.exists(fs, path):
        raise FileNotFoundError(f"no prepared corpus at {run.layout.docs}: run `lmindexer prepare` first")
    return fs, path


def load_docs(run: RunContext) -> "ray.data.Dataset":
    """The prepared corpus as a Ray Data dataset, for the steps that run over it on the cluster."""
    fs, path = _docs(run)
    return ray.data.read_parquet(path, filesystem=fs)


def count_docs(run: RunContext) -> int:
    """Documents of the prepared corpus, from its parquet footers."""
    return storage.count_rows(*_docs(run))


def read_docs(run: RunContext, columns: list | None, batch_size: int = 8192):
    """The prepared corpus's `columns`, batch by batch, read in the calling process, shard after shard in path
    order (storage.read_batches): for steps that bring the rows to the driver anyway (a tokenizer's sample, the
    texts of the ID table's documents)."""
    yield from storage.read_batches(*_docs(run), columns, batch_size)
