"""The one training loop (Ray Train + DeepSpeed/DDP) that every model uses, with checkpoints, resume and retries.

A *task* object says what is trained: `build()` the model, `batches(shard, epoch)` its inputs, `on_step(out)` and
`epoch_metrics()` for extra figures, `finish(engine, rank, history)` to save the result. The loop does the rest.
Optional: `lr_lambda()` (a learning-rate schedule), and where `validates` is true, `validate(engine, rank)` ->
metrics identical on every rank, after every epoch, with `monitor` (the metric to maximise), `keep_best(engine,
rank)` (called when it improves) and `patience` (epochs without improvement before training stops; 0: never).

A worker's share of the data streams from Ray Data in the first epoch and, up to `train.cache_mb`, is reshuffled in
memory after that (lmindexer.train.shard). Metrics go to Ray Train only with a checkpoint, or every epoch inside a
Ray Tune trial: each report waits for the controller's next look at its workers.

`fit` runs one task in one TorchTrainer run. A run of several steps (learn-ids: every position's training phases,
k-means and code assignment) calls `run_task` for each of its tasks inside one worker function given to `launch`,
so the workers, their imports and the data shard are set up once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict

import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

from .. import ray_private, storage
from ..config import TrainConfig
from ..paths import RunContext
from ..raydata import MemoryRows
from ..runtime import quiet, worker_threads
from .engine import Engine, engine_kind, zero_stage
from .shard import CachedShard
from .task import TrainingTask

log = logging.getLogger("lmindexer.train")
PROGRESS = "progress.json"


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a CPU tensor over the workers; NCCL only reduces GPU tensors, so it makes the trip there and back."""
    if dist.is_available() and dist.is_initialized():
        on = values.to(ray.train.torch.get_device()) if dist.get_backend() == "nccl" else values
        dist.all_reduce(on)
        return on.cpu()
    return values


def _report(engine: Engine, progress: dict, metrics: dict, checkpoint: bool = True) -> None:
    """Report the metrics to Ray Train, with a checkpoint (every rank saves its part) unless `checkpoint` is
    False; every rank must pass the same `checkpoint`."""
    scalars = {k: v for k, v in progress.items() if k != "history" and v is not None}
    if not checkpoint:
        ray.train.report({**metrics, **scalars})
        return
    with tempfile.TemporaryDirectory() as d:
        engine.save(d)
        if ray.train.get_context().get_world_rank() == 0:
            with open(os.path.join(d, PROGRESS), "w") as f:
                json.dump(progress, f)
        saved = Checkpoint.from_directory(d) if os.listdir(d) else None
        ray.train.report({**metrics, **scalars}, checkpoint=saved)


def say(*parts) -> None:
    """A worker's progress line, printed once: Ray Train patches print() to log through its logger and also tee to
    the (wrapped) stdout, so every line reached the driver twice; the process's own stdout is streamed once."""
    sys.__stdout__.write(" ".join(str(p) for p in parts) + "\n")
    sys.__stdout__.flush()


def time_left(done: int, seconds: float, epoch_steps: int, epochs_after: int) -> str:
    """ ", 12.3 steps/s, 85 s left" for a progress line: `done` steps of this epoch in `seconds`; the time left (this
    epoch and `epochs_after` more) once a whole epoch's `epoch_steps` are known."""
    rate = done / max(seconds, 1e-9)
    if not epoch_steps:
        return f", {rate:.1f} steps/s"
    left = (max(epoch_steps - done, 0) + epochs_after * epoch_steps) / max(rate, 1e-9)
    return f", {rate:.1f} steps/s, {left:.0f} s left"


def quiet_worker() -> None:
    """A worker's log keeps lmindexer's lines: DeepSpeed's per-step torch.distributed deprecation warnings and Ray
    Train's per-report INFO lines ("Reporting training result", "Checkpoint successfully created") are dropped."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed.*")
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.*")
    for name in ["ray.train", *ray_private.quiet_train_context()]:
        logging.getLogger(name).setLevel(logging.WARNING)


def prepare_worker(train) -> None:
    """A worker's logging and torch threads, once per process."""
    quiet_worker()
    if not train.use_gpu:
        torch.set_num_threads(worker_threads(train.cpus_per_worker, train.num_workers, os.cpu_count() or 1))


def train_worker(config: dict) -> None:
    """Runs on every Ray Train worker, given only what it needs: the train section, the seed and its task."""
    prepare_worker(config["train"])
    shard = worker_shard(config)
    run_task(config["task"], config["train"], config["seed"], config["tuned"], shard, ray.train.get_checkpoint())


def worker_shard(config: dict) -> CachedShard:
    """This worker's share of the run's training rows: its Ray Data shard, or its part of the MemoryRows that
    `launch` passed in the config."""
    if config.get("rows") is None:
        return CachedShard(ray.train.get_dataset_shard("train"), config["train"].cache_mb)
    ctx = ray.train.get_context()
    return CachedShard.of_columns(config["rows"].share(ctx.get_world_rank(), ctx.get_world_size()))


def run_task(task, train, seed: int, tuned: bool, shard, checkpoint=None, final_checkpoint: bool = True) -> list:
    """Train `task` on this worker's `shard` (a CachedShard) and call its finish(); the per-epoch history. A
    `checkpoint` of the same task resumes it (one of another task, as in a run of several tasks, is ignored). With
    `final_checkpoint` false the last epoch reports no checkpoint (the caller keeps what finish() saves)."""
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(seed + rank)
    engine = Engine(task.build(), train, task.lr, task.batch_size, task.lr_lambda())
    progress = {"epoch": 0, "step_in_epoch": 0, "step": 0, "resumes": 0, "history": [], "best": None, "since_best": 0}
    progress["task"] = task.name
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, PROGRESS)) as f:
                saved = json.load(f)
            if saved.get("task", task.name) == task.name:
                engine.load(d)
                progress = {**saved, "task": task.name, "resumes": saved["resumes"] + 1}
                if rank == 0:
                    at = f"epoch {progress['epoch'] + 1}, step {progress['step']}"
                    say(f"[{task.name}] resumed from checkpoint at {at}")
    epoch, skip, step = progress["epoch"], progress["step_in_epoch"], progress["step"]
    every = train.checkpoint_every_steps
    saved_at = time.time()
    epoch_steps = 0  # the last whole epoch's steps, for the time left
    while epoch < task.epochs:
        engine.train()
        sums, n, start = defaultdict(float), 0, time.time()
        shown_at = start
        for i, batch in enumerate(task.batches(shard, epoch)):
            if i < skip:
                continue
            out = engine(**batch)
            engine.step(out["loss"])
            task.on_step(out)
            for k, v in out.items():
                if torch.is_tensor(v) and v.dim() == 0:
                    sums[k] += float(v.detach())
            n, step = n + 1, step + 1
            now = time.time()
            if rank == 0 and train.log_every_steps and (step % train.log_every_steps == 0 or now - shown_at >= 30):
                shown_at = now
                say(
                    f"[{task.name}] epoch {epoch + 1}/{task.epochs} step {step}: "
                    + " ".join(f"{k}={v / n:.4f}" for k, v in sorted(sums.items()))
                    + time_left(n, now - start, epoch_steps, task.epochs - epoch - 1)
                )
            if every and step % every == 0:
                progress.update(epoch=epoch, step_in_epoch=i + 1, step=step)
                _report(engine, progress, {})
                saved_at = time.time()
        if not shard.settled:  # one choice for all workers: a streaming split waits for every reader
            votes = all_reduce_sum(torch.tensor([float(shard.in_memory)], dtype=torch.float64))
            shard.settle(int(votes.item()) == ray.train.get_context().get_world_size())
        keys = sorted(sums)
        totals = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [n], dtype=torch.float64))
        metrics = {k: float(totals[j] / max(totals[-1], 1)) for j, k in enumerate(keys)}
        metrics.update(task.epoch_metrics())
        metrics["epoch_seconds"] = round(time.time() - start, 1)
        stop = False
        if task.validates:
            engine.train(False)
            metrics.update(task.validate(engine, rank))
            value = metrics[task.monitor]
            if progress.get("best") is None or value > progress["best"]:
                progress.update(best=value, since_best=0, best_epoch=epoch + 1)
                task.keep_best(engine, rank)
            else:
                progress["since_best"] = progress.get("since_best", 0) + 1
            stop = bool(task.patience) and progress["since_best"] >= task.patience
        shown = (epoch + 1) % max(1, train.log_every_epochs) == 0 or epoch + 1 == task.epochs or stop
        if rank == 0 and shown:
            stopping = (
                f"; early stop: {task.monitor} has not improved for {progress['since_best']} epochs (best "
                f"{progress['best']:.4f} at epoch {progress['best_epoch']})"
                if stop
                else ""
            )
            say(
                f"[{task.name}] epoch {epoch + 1}/{task.epochs} done: "
                + " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
                + stopping
            )
        epoch, skip, epoch_steps = epoch + 1, 0, n if not skip else epoch_steps
        progress.update(epoch=epoch, step_in_epoch=0, step=step)
        progress["history"].append({**metrics, "epoch": epoch, "resumes": progress["resumes"]})
        last = stop or epoch == task.epochs
        due = (last and final_checkpoint) or (not last and time.time() - saved_at >= train.checkpoint_min_seconds)
        due = bool(all_reduce_sum(torch.tensor([float(due)], dtype=torch.float64)).item() > 0)  # one choice for all
        if due or tuned:  # a report waits for the controller's next poll; only Tune reads every epoch's figures
            _report(engine, progress, metrics, checkpoint=due)
        if due:
            saved_at = time.time()
        if stop:
            break
    task.finish(engine, rank, progress["history"])
    return progress["history"]


def shuffled_batches(shard, batch_size: int, seed: int, epoch: int, drop_last: bool = True):
    """Torch batches of a worker's shard, shuffled differently per epoch and rank; a partial last batch is dropped so
    every rank takes the same number of steps. Batches stay on the CPU (tasks index tables with their row numbers);
    the engine moves model inputs to the worker's device."""
    rank = ray.train.get_context().get_world_rank()
    return shard.iter_torch_batches(
        batch_size=batch_size,
        drop_last=drop_last,
        local_shuffle_buffer_size=batch_size * 8,
        local_shuffle_seed=seed + epoch * 1000 + rank,
        device="cpu",
    )


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """`ids` [B, L] right-padded with 0, without the columns that are padding in every row (at least one is kept)."""
    used = (ids != 0).any(0).nonzero()
    return ids[:, : int(used.max()) + 1 if len(used) else 1]


def length_groups(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list:
    """Row indices of `len(lengths) // batch_size` batches that each hold rows of similar length (the rows sorted by
    length, cut into batches), in a random order; rows past the last full batch are left out."""
    order = torch.argsort(lengths, stable=True)
    n = len(order) // batch_size
    groups = [order[i * batch_size : (i + 1) * batch_size] for i in range(n)]
    return [groups[i] for i in torch.randperm(n, generator=generator).tolist()]


def length_grouped_batches(shard, batch_size: int, seed: int, epoch: int, key: str, pool: int = 8):
    """Like shuffled_batches, but each pool of `pool` shuffled batches is regrouped by the length of `key` (0-padded
    token ids) and every batch loses its all-padding columns: a corpus of mostly short inputs padded to a long
    maximum costs its real length, not the maximum (the grouping of fairseq's and Hugging Face's length samplers).
    Every rank takes rows // batch_size steps, as with shuffled_batches (Ray Train's shards hold equal row counts)."""
    rank = ray.train.get_context().get_world_rank()
    generator = torch.Generator().manual_seed(seed + epoch * 1000 + rank)
    for big in shuffled_batches(shard, batch_size * pool, seed, epoch, drop_last=False):
        lengths = (big[key] != 0).sum(1)
        for rows in length_groups(lengths, batch_size, generator):
            yield {name: trim_padding(v[rows]) if name == key else v[rows] for name, v in big.items()}


def _tune_callbacks() -> list:
    """Inside a Ray Tune trial (lmindexer tune), forward every report to Tune so its scheduler sees each epoch."""
    from ray.tune.integration.ray_train import TuneReportCallback

    try:
        return [TuneReportCallback()]
    except RuntimeError:  # not in a Tune session
        return []


def fit(train: TrainConfig, run: RunContext, task: TrainingTask, dataset, fresh: bool = False) -> "ray.train.Result":
    """One TorchTrainer run for `task` with the `train` settings; a run of the same name under the same storage
    (run.layout.ray) resumes where it stopped, unless `fresh` discards that run first."""
    config = {"train": train, "seed": run.seed, "task": task}
    return launch(train, run, task.name, train_worker, config, dataset, fresh, f"{task.epochs} epoch(s)")


def launch(
    train: TrainConfig, run: RunContext, name: str, worker, config: dict, dataset, fresh: bool = False, what: str = ""
) -> "ray.train.Result":
    """One TorchTrainer run named `name` of `worker(config)` (config gains "tuned": whether it runs inside a Ray
    Tune trial, and "rows": `dataset` where it is a raydata.MemoryRows, else None) on `dataset` (a Ray Dataset or
    MemoryRows; `worker_shard` gives each worker its share); a run of the same name under the same storage resumes
    where it stopped, unless `fresh` discards that run first."""
    uri = run.layout.ray
    fs, root = run.filesystem(uri)
    if fresh and storage.exists(fs, storage.join(root, name)):
        fs.delete_dir(storage.join(root, name))
    callbacks = _tune_callbacks()
    in_memory = isinstance(dataset, MemoryRows)
    # by reference: Ray Train's controller keeps the loop config, and unpickling it there would import the worker's
    # modules (torch, transformers, the task's own), ~6 s of one core per run; only the workers open it
    payload = ray.put((worker, {**config, "tuned": bool(callbacks), "rows": dataset if in_memory else None}))
    trainer = ray_private.trainer_class()(
        _open_payload,
        train_loop_config={"payload": payload},
        scaling_config=ScalingConfig(
            num_workers=train.num_workers,
            use_gpu=train.use_gpu,
            resources_per_worker={"CPU": train.cpus_per_worker},
        ),
        torch_config=ray_private.torch_config("nccl" if train.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=root,
            storage_filesystem=fs if storage.is_uri(uri) else None,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING" if quiet() else "INFO"),
        ),
        datasets={"train": dataset} if dataset is not None and not in_memory else None,
    )
    kind = engine_kind(train)
    log.info(
        "%s: %d worker(s), engine=%s%s%s",
        name,
        train.num_workers,
        kind,
        f" ZeRO-{zero_stage(train, train.num_workers)}" if kind == "deepspeed" else "",
        f", {what}" if what else "",
    )
    previous = signal.getsignal(signal.SIGINT)
    try:
        return trainer.fit()
    finally:  # Ray Train's handler would otherwise outlive the run and swallow a later Ctrl-C
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


def _open_payload(config: dict) -> None:
    """Every Ray Train worker's entry point: the worker function and its config that `launch` put in the store."""
    worker, config = ray.get(config["payload"])
    worker(config)
