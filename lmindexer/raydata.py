"""Ray Data at the edges, in one module: arrays shared through the object store, datasets of row numbers, the
batch-inference actor pool and its helpers. Every stage that streams data or runs an actor pool uses these."""

from __future__ import annotations

import numpy as np
import ray
import ray.data
import torch

from .config import Config


def shared(ref):
    """Arrays put in Ray's object store once and read zero-copy by every worker on a node."""
    return ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref


def rows_dataset(**arrays) -> "ray.data.Dataset":
    """A dataset of row numbers with the rows of each array attached: the arrays (or refs of arrays already in the
    object store) go there once and every read task takes its rows from there."""
    refs = {k: v if isinstance(v, ray.ObjectRef) else ray.put(v) for k, v in arrays.items()}
    n = len(shared(next(iter(refs.values()))))
    return (
        ray.data.from_numpy(np.arange(n))
        .rename_columns({"data": "row"})
        .map_batches(_attach, fn_kwargs={"refs": refs}, batch_format="numpy")
    )


def _attach(batch: dict, refs: dict) -> dict:
    return {"row": batch["row"], **{k: ray.get(r)[batch["row"]] for k, r in refs.items()}}


def inference_device(bf16: bool) -> tuple[str, torch.dtype | None]:
    """(best device, autocast dtype or None): bf16 only on GPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, (torch.bfloat16 if bf16 and device == "cuda" else None)


def actor_pool(cfg: Config, gpu: bool = True) -> dict:
    """map_batches arguments of the autoscaling actor pool every batch-inference step uses (a GPU per actor on
    GPU clusters, half a CPU otherwise so Ray Data's read and write tasks keep running beside it)."""
    gpu = gpu and cfg.train.use_gpu
    most = max(1, cfg.train.inference_actors)
    return {
        "compute": ray.data.ActorPoolStrategy(
            min_size=min(most, max(1, cfg.train.inference_min_actors)), max_size=most
        ),
        "num_cpus": 0 if gpu else 0.5,
        "num_gpus": 1 if gpu else 0,
        "batch_size": cfg.train.inference_batch_size,
        "batch_format": "numpy",
    }


def spread(ds: "ray.data.Dataset", cfg: Config) -> "ray.data.Dataset":
    """Blocks of a few batches each, streamed: Ray Data reads many small files as one block, and a block goes to a
    single actor, so without this one actor of the pool does all the work."""
    return ds.repartition(target_num_rows_per_block=cfg.train.inference_batch_size * 4)


def by_row(ds: "ray.data.Dataset") -> dict:
    """Every column but `row`, gathered on the driver in row order."""
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    order = np.argsort(np.concatenate([p["row"] for p in parts]))
    return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0] if k != "row"}
