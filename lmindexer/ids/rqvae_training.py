"""RQ-VAE training on the shared Ray Train loop: the task and its k-means start (the model is
lmindexer/quantizers/rqvae.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import storage
from ..config import BaselineConfig, IndexerConfig
from ..quantizers import save_method
from ..quantizers.rqvae import RQVAE
from ..train.loop import shuffled_batches
from ..train.task import TaskDefaults


@dataclass
class RqvaeTask(TaskDefaults):
    """One RQ-VAE training run over the `emb` column of a Ray Data dataset."""

    init: dict  # meta and initial state (codebooks from k-means)
    out_dir: str  # method folder (local path or URI)
    storage: object  # StorageConfig for out_dir
    epochs: int
    lr: float
    batch_size: int
    seed: int = 0
    name: str = "baseline-rqvae"

    def build(self) -> RQVAE:
        return RQVAE.from_tensors(self.init["state"], self.init["meta"]).train()

    def batches(self, shard, epoch: int):
        for b in shuffled_batches(shard, self.batch_size, self.seed, epoch):
            yield {"x": b["emb"].float()}

    def finish(self, engine, rank: int, history: list) -> None:
        with engine.full_weights() as model:
            if rank == 0:
                fs, path = storage.filesystem(self.out_dir, self.storage)
                save_method(fs, path, model, {**model.meta, "history": history})


def init_state(sample: torch.Tensor, b: BaselineConfig, ic: IndexerConfig, seed: int) -> dict:
    """A seeded RQ-VAE (the `b` settings, the ID shape of `ic`) with k-means codebooks, as plain tensors for the
    training task."""
    torch.manual_seed(seed)
    model = RQVAE(sample.shape[1], b.rqvae_hidden, b.rqvae_latent, ic.codebook_size, ic.num_positions, b.rqvae_beta)
    model.init_codebooks(sample, ic.kmeans_iters, seed)
    return {"meta": model.meta, "state": {k: v.clone() for k, v in model.state_dict().items()}}
