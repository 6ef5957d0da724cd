"""Codebook selection with a straight-through estimator: hard codes forward, soft gradients backward."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def code_logits(h: torch.Tensor, codebook: torch.Tensor, selection: str = "dot") -> torch.Tensor:
    """Scores of each code for each h: h.E (the paper) or minus the squared L2 distance."""
    if selection == "dot":
        return h @ codebook.T
    return -(h.pow(2).sum(-1, keepdim=True) - 2 * h @ codebook.T + codebook.pow(2).sum(-1))


def straight_through(logits: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0,
                     gumbel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized vectors, codes): the one-hot argmax forward, softmax(logits/tau) gradients backward."""
    if gumbel:
        logits = logits - torch.empty_like(logits).exponential_().log()
    soft = F.softmax(logits / temperature, dim=-1)
    codes = soft.argmax(-1)
    hard = F.one_hot(codes, logits.shape[-1]).to(soft.dtype)
    return (hard - soft.detach() + soft) @ codebook, codes


class Codebook(nn.Module):
    """K code vectors for one ID position; called as a module so ZeRO-3 gathers its weight."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, dim) * dim ** -0.5)

    def forward(self, h: torch.Tensor | None = None, codes: torch.Tensor | None = None, selection: str = "dot",
                temperature: float = 1.0, gumbel: bool = False):
        """codes -> their vectors; h -> (logits, quantized h, codes)."""
        if codes is not None:
            return self.weight[codes]
        logits = code_logits(h, self.weight, selection)
        z, chosen = straight_through(logits, self.weight, temperature, gumbel)
        return logits, z, chosen
