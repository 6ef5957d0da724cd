"""RQ-VAE semantic IDs (TIGER): MLP encoder -> residual quantizer (K codes per level) -> MLP decoder.

Loss = reconstruction MSE + per level ||sg(r) - e||^2 + beta ||r - sg(e)||^2, with a straight-through estimator
across the quantizer. Codebooks start from residual k-means on the untrained encoder's outputs (as TIGER does on
its first batch). Trained by the shared Ray Train loop (train/loop.py) through `RqvaeTask`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import storage
from ..train.loop import shuffled_batches
from ..train.task import TaskDefaults
from .baselines import residual_encode, residual_fit, save_method
from .kmeans import _sq_dist


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    name = "rqvae"

    def __init__(self, dim: int, hidden: list[int], latent: int, size: int, levels: int, beta: float = 0.25):
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.meta = {"dim": dim, "hidden": hidden, "latent": latent, "size": size, "levels": levels,
                     "beta": beta}
        self.encoder = _mlp([dim, *hidden, latent])
        self.decoder = _mlp([latent, *reversed(hidden), dim])
        self.books = nn.Parameter(torch.randn(levels, size, latent) * latent ** -0.5)
        self.beta = beta

    def init_codebooks(self, x: torch.Tensor, iters: int, seed: int) -> None:
        with torch.no_grad():
            self.books.copy_(torch.stack(residual_fit(self.encoder(x.float()), self.books.shape[1],
                                                      self.books.shape[0], iters, seed)))

    def forward(self, x: torch.Tensor) -> dict:
        z = self.encoder(x)
        r, quantized, quant_loss = z, torch.zeros_like(z), 0.0
        for book in self.books:
            e = book[_sq_dist(r.detach(), book).argmin(1)]
            quant_loss = quant_loss + F.mse_loss(e, r.detach()) + self.beta * F.mse_loss(r, e.detach())
            quantized, r = quantized + e, r - e.detach()
        z_q = z + (quantized - z).detach()
        recon = F.mse_loss(self.decoder(z_q), x)
        return {"loss": recon + quant_loss, "recon": recon, "quant": quant_loss}

    @torch.no_grad()
    def encode(self, x: torch.Tensor, k: int):
        return residual_encode(self.encoder(x.float()), list(self.books), k)

    def tensors(self) -> dict:
        return self.state_dict()

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "RQVAE":
        model = cls(meta["dim"], meta["hidden"], meta["latent"], meta["size"], meta["levels"], meta["beta"])
        model.load_state_dict(tensors)
        return model.eval()


@dataclass
class RqvaeTask(TaskDefaults):
    """One RQ-VAE training run over the `emb` column of a Ray Data dataset."""
    init: dict             # meta and initial state (codebooks from k-means)
    out_dir: str           # method folder (local path or URI)
    storage: object        # StorageConfig for out_dir
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


def init_state(sample: torch.Tensor, cfg) -> dict:
    """A seeded RQ-VAE with k-means codebooks, as plain tensors for the training task."""
    torch.manual_seed(cfg.seed)
    b, ic = cfg.baseline, cfg.indexer
    model = RQVAE(sample.shape[1], b.rqvae_hidden, b.rqvae_latent, ic.codebook_size, ic.num_positions, b.rqvae_beta)
    model.init_codebooks(sample, ic.kmeans_iters, cfg.seed)
    return {"meta": model.meta, "state": {k: v.clone() for k, v in model.state_dict().items()}}

