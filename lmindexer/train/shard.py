"""A worker's share of the training data, streamed from Ray Data in the first epoch and, when it fits in memory,
served from memory in the later ones.

Every epoch of a Ray Data shard starts a new streaming execution (and the generator's full shuffle with it): about
1.5 s an epoch on 2 CPU cores, five times the training itself on the test corpora, and most of a short run's time.
A shard of at most `limit_mb` MiB is kept as numpy columns while the first epoch streams it; from the second epoch on
the rows are reshuffled in memory (a full permutation of the worker's rows, seeded per epoch and rank), so the rows
stay with the worker that read them. The choice is made together by every worker (`settle`): a streaming split
waits for all of its readers at the start of each epoch, so one worker streaming alone would wait forever.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


class CachedShard:
    """Wraps a Ray Train dataset shard: the same `iter_torch_batches` and `iter_batches` calls as the shard's own,
    from memory once `settle(True)` has been called after a complete first pass."""

    def __init__(self, shard, limit_mb: float):
        self.shard, self.limit = shard, limit_mb * 2**20
        self.columns: dict[str, np.ndarray] | None = None  # the rows, once a whole pass fitted
        self.fits = limit_mb > 0  # the pass so far fitted (or may still)
        self.settled = limit_mb <= 0  # no more recording: from memory if `columns`, else streamed

    @classmethod
    def of_columns(cls, columns: dict) -> "CachedShard":
        """A worker's share handed over whole as numpy columns (raydata.MemoryRows): served from memory from the
        first epoch, reshuffled every epoch like a settled shard."""
        shard = cls(None, 0)
        shard.columns, shard.settled = columns, True
        return shard

    @property
    def in_memory(self) -> bool:
        """Whether this worker holds its whole share (its vote in `settle`, then where batches come from)."""
        return self.columns is not None

    def settle(self, use_memory: bool) -> None:
        """Every worker's vote counted: serve from memory from now on, or stream every epoch (and drop the rows)."""
        self.settled = True
        if not use_memory:
            self.columns = None

    def _record(self, batches: Iterator[dict]) -> Iterator[dict]:
        """Pass `batches` through while keeping their rows (as numpy) unless they grow past the limit."""
        parts, size = [], 0
        for batch in batches:
            if self.fits:
                part = {k: v.numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in batch.items()}
                size += sum(v.nbytes for v in part.values())
                self.fits = size <= self.limit
                if self.fits:
                    parts.append(part)
                else:
                    parts.clear()
            yield batch
        if self.fits and parts:
            self.columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _slices(self, order: np.ndarray, batch_size: int, drop_last: bool) -> Iterator[dict]:
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            rows = order[start : start + batch_size]
            yield {k: v[rows] for k, v in self.columns.items()}

    def iter_torch_batches(
        self,
        *,
        batch_size: int,
        drop_last: bool = False,
        local_shuffle_buffer_size: int | None = None,
        local_shuffle_seed: int | None = None,
        device: str = "cpu",
    ) -> Iterator[dict]:
        if self.in_memory and self.settled:
            n = len(next(iter(self.columns.values())))
            order = (
                np.random.default_rng(local_shuffle_seed).permutation(n) if local_shuffle_buffer_size else np.arange(n)
            )
            for batch in self._slices(order, batch_size, drop_last):
                yield {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            return
        source = self.shard.iter_torch_batches(
            batch_size=batch_size,
            drop_last=drop_last and self.settled,  # while recording, every row is read; the partial batch is held
            local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed,
            device=device,
        )
        if self.settled:
            yield from source
            return
        for batch in self._record(source):
            if not (drop_last and len(next(iter(batch.values()))) < batch_size):
                yield batch

    def iter_batches(self, *, batch_size: int, batch_format: str = "numpy") -> Iterator[dict]:
        if batch_format != "numpy":
            raise ValueError("CachedShard.iter_batches serves numpy batches only")
        if self.in_memory and self.settled:
            n = len(next(iter(self.columns.values())))
            yield from self._slices(np.arange(n), batch_size, drop_last=False)
            return
        source = self.shard.iter_batches(batch_size=batch_size, batch_format="numpy")
        yield from (source if self.settled else self._record(source))
