"""The interface every training run on the shared Ray Train loop (lmindexer.train.loop) implements: ID learning,
RQ-VAE, the generator and SASRec. A task is a small picklable object built on the driver; on each worker the loop
calls build() once, batches() every epoch, on_step() after every optimizer step, epoch_metrics() and (when the task
validates) validate() / keep_best() after every epoch, and finish() at the end. TaskDefaults gives the optional
hooks their no-op defaults, so a task writes only what it does."""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator, Protocol, runtime_checkable

from torch import nn

HISTORY_FILE = "train_history.json"


@runtime_checkable
class TrainingTask(Protocol):
    name: str  # the Ray Train run name (a run of the same name under the same storage resumes)
    epochs: int
    lr: float
    batch_size: int  # per worker
    seed: int
    validates: bool  # validate() and keep_best() run after every epoch
    patience: int  # epochs without a better `monitor` before training stops (0: never)

    def build(self) -> nn.Module: ...
    def batches(self, shard, epoch: int) -> Iterator[dict]: ...
    def lr_lambda(self) -> Callable[[int], float] | None: ...
    def on_step(self, out: dict) -> None: ...
    def epoch_metrics(self) -> dict: ...
    def finish(self, engine, rank: int, history: list) -> None: ...


class TaskDefaults:
    """No-op defaults of the optional hooks, and the usual finish: rank 0 saves the whole model to `out_dir`
    (model.save_pretrained) with the per-epoch history beside it."""

    validates = False
    patience = 0

    def lr_lambda(self) -> Callable[[int], float] | None:
        return None  # a constant learning rate

    def on_step(self, out: dict) -> None:
        pass

    def epoch_metrics(self) -> dict:
        return {}

    def finish(self, engine, rank: int, history: list) -> None:
        with engine.full_weights() as model:  # every rank enters (ZeRO-3 gathers), rank 0 writes
            if rank == 0:
                model.save_pretrained(self.out_dir)
                with open(os.path.join(self.out_dir, HISTORY_FILE), "w") as f:
                    json.dump(history, f, indent=2)


class ValidatedByRecall:
    """For a task with `val` ({..., "ks": [K, ...]} or None): it validates when `val` is given, and the epoch with
    the best recall at the largest K is kept."""

    val: dict | None
    out_dir: str

    @property
    def validates(self) -> bool:
        return self.val is not None

    @property
    def monitor(self) -> str:
        return f"val_recall@{max(self.val['ks'])}"

    def keep_best(self, engine, rank: int) -> None:
        """The best epoch's weights go to <out_dir>/best (the task's finish() makes them the result)."""
        with engine.full_weights() as model:
            if rank == 0:
                model.save_pretrained(os.path.join(self.out_dir, "best"))
