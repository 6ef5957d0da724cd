"""RQ-VAE semantic IDs (TIGER): MLP encoder -> residual quantizer (K codes per level) -> MLP decoder.

Loss = reconstruction MSE + per level ||sg(r) - e||^2 + beta ||r - sg(e)||^2, with a straight-through estimator
across the quantizer. Codebooks start from residual k-means on the untrained encoder's outputs (as TIGER does on
its first batch). Trained by the shared Ray Train loop through `RqvaeTask` (lmindexer/ids/rqvae_training.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .codes import positions_of, size_of
from .kmeans import _sq_dist, residual_encode, residual_fit


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    name = "rqvae"
    reads = "emb"
    trained = True  # fitted by a training run (lmindexer/ids/rqvae_training.py on Ray Train), not by `fit`

    def __init__(
        self, dim: int, hidden: list[int], latent: int, codebook_size: int, num_positions: int, beta: float = 0.25
    ):
        super().__init__()
        hidden = [int(h) for h in hidden]
        self.meta = {
            "dim": dim,
            "hidden": hidden,
            "latent": latent,
            "codebook_size": codebook_size,
            "num_positions": num_positions,
            "beta": beta,
        }
        self.encoder = _mlp([dim, *hidden, latent])
        self.decoder = _mlp([latent, *reversed(hidden), dim])
        self.books = nn.Parameter(torch.randn(num_positions, codebook_size, latent) * latent**-0.5)
        self.beta = beta

    def init_codebooks(self, x: torch.Tensor, iters: int, seed: int) -> None:
        with torch.no_grad():
            self.books.copy_(
                torch.stack(
                    residual_fit(self.encoder(x.float()), self.books.shape[1], self.books.shape[0], iters, seed)
                )
            )

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
        model = cls(meta["dim"], meta["hidden"], meta["latent"], size_of(meta), positions_of(meta), meta["beta"])
        model.load_state_dict(tensors)
        return model.eval()
