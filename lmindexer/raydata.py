"""Ray Data at the edges, in one module: arrays shared through the object store, datasets of row numbers, the
batch-inference actor pool and its helpers. Every stage that streams data or runs an actor pool uses these.

Small inputs skip Ray Data (`RunContext.in_process`): a pipeline's start-up (read tasks, an actor pool whose
processes import torch, a shuffle's sampling and reduce rounds) costs 5-25 s on 2 CPU cores whatever the input, so a
step over at most `ray.in_process_rows` rows runs the same functions in the calling process."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data
import torch

from . import ray_private, storage
from .config import InferenceConfig
from .paths import RunContext
from .runtime import Progress, worker_threads


def shared(ref):
    """Arrays put in Ray's object store once and read zero-copy by every worker on a node."""
    return ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref


def _put(arrays: dict) -> tuple[dict, int]:
    """(refs of the arrays, put in the object store unless they are refs already; their row count)."""
    refs = {k: v if isinstance(v, ray.ObjectRef) else ray.put(v) for k, v in arrays.items()}
    return refs, len(shared(next(iter(refs.values()))))


def rows_dataset(**arrays) -> "ray.data.Dataset":
    """A dataset of row numbers with the rows of each array attached: the arrays (or refs of arrays already in the
    object store) go there once and every read task takes its rows from there."""
    refs, n = _put(arrays)
    return (
        ray.data.from_numpy(np.arange(n))
        .rename_columns({"data": "row"})
        .map_batches(_attach, fn_kwargs={"refs": refs}, batch_format="numpy")
    )


class MemoryRows:
    """Training rows kept as arrays in the object store, for a Ray Train run without a Ray Data pipeline: each worker
    takes its share itself (`share`). Ray Data's streaming split cost a training run ~10 s before its first batch on
    2 CPU cores; for at most ray.in_process_rows rows this does the same job."""

    def __init__(self, refs: dict, n: int, seed: int):
        self.refs, self.n, self.seed = refs, n, seed

    def share(self, rank: int, world: int) -> dict:
        """Worker `rank`'s rows of a seeded permutation, as Ray Train's equal split gives them: n // world rows each
        (every worker takes as many steps), with their `row` numbers."""
        order = np.random.default_rng(self.seed).permutation(self.n)
        mine = order[rank::world][: self.n // world]
        return {"row": mine, **{k: shared(r)[mine] for k, r in self.refs.items()}}


def train_rows(run: RunContext, shuffle: bool = False, **arrays):
    """What a Ray Train run trains on (lmindexer.train.loop.launch): a dataset of row numbers with the `arrays`
    attached (`rows_dataset`; `shuffle`: fully shuffled), or for at most ray.in_process_rows rows a `MemoryRows`."""
    refs, n = _put(arrays)
    if run.in_process(n):
        return MemoryRows(refs, n, run.seed)
    ds = rows_dataset(**refs)
    return ds.random_shuffle() if shuffle else ds


def _attach(batch: dict, refs: dict) -> dict:
    return {"row": batch["row"], **{k: ray.get(r)[batch["row"]] for k, r in refs.items()}}


def inference_device(bf16: bool) -> tuple[str, torch.dtype | None]:
    """(best device, autocast dtype or None): bf16 only on GPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, (torch.bfloat16 if bf16 and device == "cuda" else None)


CPU_ACTOR = 0.5  # CPUs a CPU inference actor reserves: Ray Data's read and write tasks keep running beside it


def actor_pool(run: RunContext, gpu: bool = True) -> dict:
    """map_batches arguments of the autoscaling actor pool every batch-inference step uses: a GPU per actor on
    GPU clusters; otherwise CPU_ACTOR CPUs and `actor_threads` torch threads (Ray would give a fractional CPU one
    thread, so a single actor on a many-core machine used one core)."""
    gpu = gpu and run.use_gpu
    most = max(1, run.inference.actors)
    pool = {
        "compute": ray.data.ActorPoolStrategy(min_size=min(most, max(1, run.inference.min_actors)), max_size=most),
        "num_cpus": 0 if gpu else CPU_ACTOR,
        "num_gpus": 1 if gpu else 0,
        "batch_size": run.inference.batch_size,
        "batch_format": "numpy",
    }
    if not gpu:  # torch takes its intra-op threads from OMP_NUM_THREADS; Ray merges env_vars with the job's own
        pool["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(actor_threads(run.inference, os.cpu_count() or 1))}}
    return pool


def actor_threads(inference: InferenceConfig, cores: int) -> int:
    """torch threads of each CPU inference actor: inference.threads, or (0) the `cores` shared by the pool's
    most actors."""
    return inference.threads or worker_threads(CPU_ACTOR, inference.actors, cores)


def spread(ds: "ray.data.Dataset", run: RunContext) -> "ray.data.Dataset":
    """Blocks of a few batches each, streamed: Ray Data reads many small files as one block, and a block goes to a
    single actor, so without this one actor of the pool does all the work."""
    return ds.repartition(target_num_rows_per_block=run.inference.batch_size * 4)


def map_files(run: RunContext, files: list, fs, columns: list | None, actor, kwargs: dict, out: str, out_fs, gpu=True):
    """`actor(**kwargs)` over batches of the `columns` (None: all) of the parquet `files`, its outputs written to the
    folder `out` (replaced): an autoscaling Ray Data actor pool, or for at most ray.in_process_rows rows one instance
    in this process, fed and written with Ray Data's own batch conversions. Returns the rows read."""
    from ray.data.block import BlockAccessor

    rows = storage.count_rows(fs, files)
    if not run.in_process(rows):
        ds = ray.data.read_parquet(files, filesystem=fs)
        ds = spread(ds.select_columns(columns) if columns else ds, run)
        ds = ds.map_batches(actor, fn_constructor_kwargs=kwargs, **actor_pool(run, gpu=gpu))
        with rows_written(Progress(f"{getattr(actor, '__name__', 'batch step')} (Ray Data)", rows), out_fs, out):
            ds.write_parquet(out, filesystem=out_fs, mode="overwrite")
        return rows
    model, parts = actor(**kwargs), []
    progress = Progress(f"{getattr(actor, '__name__', 'batch step')} (in process)", rows)
    for batch in storage.read_batches(fs, files, columns, run.inference.batch_size):
        parts.append(BlockAccessor.batch_to_block(model(as_numpy(pa.Table.from_batches([batch])))))
        progress.update(batch.num_rows)
    if parts:
        storage.write_table(out_fs, out, pa.concat_tables(parts))
    return rows


def written_rows(fs, folder: str) -> int:
    """Rows in the parquet files under `folder` whose footers are written (a file still being written counts 0)."""
    total = 0
    for info in fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            try:
                with fs.open_input_file(info.path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, pa.ArrowInvalid):
                pass
    return total


@contextmanager
def rows_written(progress: Progress, fs, folder: str):
    """While the block runs (a Ray Data write, which returns only at its end), `progress` logs the rows written
    under `folder` so far every `progress.every` seconds, from a thread that reads the files' footers; once more at
    the end."""
    stop = threading.Event()

    def watch():
        while not stop.wait(progress.every):
            progress.update(written_rows(fs, folder) - progress.done)

    thread = threading.Thread(target=watch, name="rows-written", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    progress.update(written_rows(fs, folder) - progress.done)


def as_numpy(table: pa.Table) -> dict:
    """A table as the numpy batch Ray Data would hand to a function (tensor columns as arrays, lists as objects)."""
    from ray.data.block import BlockAccessor

    return BlockAccessor.for_block(table).to_batch_format("numpy")


def read_numpy(fs, path: str, columns: list | None = None) -> dict:
    """The `columns` of the parquet files under `path`, read in this process, as one numpy batch (`as_numpy`)."""
    return as_numpy(pa.Table.from_batches(list(storage.read_batches(fs, path, columns))))


def map_groups(table: pa.Table, key: str, fn) -> pa.Table:
    """`groupby(key).map_groups(fn, batch_format="numpy")` in this process: `fn` gets each group's rows as the
    numpy batch Ray Data would give it, groups in key order; its outputs are converted as Ray Data converts them."""
    from ray.data.block import BlockAccessor

    if table.num_rows == 0:
        return table
    cols = as_numpy(table.sort_by(key))
    keys = cols[key]
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    parts = [
        BlockAccessor.batch_to_block(fn({k: v[a:b] for k, v in cols.items()}))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(keys)])
    ]
    return ray_private.concat_blocks(parts)  # unifies tensor columns' shapes, as Ray Data does


def map_rows(run: RunContext, actor, kwargs: dict, order_by: str = "row", gpu: bool = True, **arrays) -> dict:
    """`actor(**kwargs)` over batches of the rows of `arrays` (numpy arrays or their refs; each batch also holds its
    `row` numbers), every output column but `order_by` gathered here in row order (`order_by`: the output column that
    holds the row's number). A Ray Data actor pool, or for at most ray.in_process_rows rows one instance here."""
    arrays = {k: shared(v) for k, v in arrays.items()}
    n = len(next(iter(arrays.values())))
    here = run.in_process(n)
    progress = Progress(f"{getattr(actor, '__name__', 'batch step')} ({'in process' if here else 'Ray Data'})", n)
    parts = []
    if not here:
        ds = spread(rows_dataset(**arrays), run).map_batches(
            actor, fn_constructor_kwargs=kwargs, **actor_pool(run, gpu)
        )
        for part in ds.iter_batches(batch_size=None, batch_format="numpy"):  # the outputs come here: count them
            parts.append(part)
            progress.update(len(part[order_by]))
    else:
        model, size = actor(**kwargs), max(1, run.inference.batch_size)
        for i in range(0, n, size):
            parts.append(
                model({"row": np.arange(i, min(n, i + size)), **{k: v[i : i + size] for k, v in arrays.items()}})
            )
            progress.update(len(parts[-1][order_by]))
    if not parts:
        return {}
    order = np.argsort(np.concatenate([p[order_by] for p in parts]), kind="stable")
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0] if k != order_by}
