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


def straight_through(
    logits: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0, gumbel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized vectors, codes): the one-hot argmax forward, softmax(logits/tau) gradients backward."""
    if gumbel:
        logits = logits - torch.empty_like(logits).exponential_().log()
    soft = F.softmax(logits / temperature, dim=-1)
    codes = soft.argmax(-1)
    hard = F.one_hot(codes, logits.shape[-1]).to(soft.dtype)
    return (hard - soft.detach() + soft) @ codebook, codes


def fit_offsets(h: torch.Tensor, prefix: torch.Tensor, size: int) -> torch.Tensor:
    """[P, K, d] offsets o such that h ~ sum_s o[s, prefix[:, s]] (one backfitting pass: o[0] is the mean of h per
    first code, o[1] the mean of what is left per second code, ...); codes no row holds get 0."""
    h = h.float()
    offsets = torch.zeros(prefix.shape[1], size, h.shape[1])
    left = h.clone()
    for s in range(prefix.shape[1]):
        codes = prefix[:, s].long()
        sums = torch.zeros(size, h.shape[1]).index_add_(0, codes, left)
        counts = torch.bincount(codes, minlength=size).clamp_min(1).float()[:, None]
        offsets[s] = sums / counts
        left = left - offsets[s][codes]
    return offsets


class Codebook(nn.Module):
    """K code vectors for one ID position; called as a module so ZeRO-3 gathers its weights.

    With `prefix_offsets` = P > 0 (indexer.residual at position P + 1) it also holds one offset vector per earlier
    (position, code) and scores h minus the offsets of the document's earlier codes: h centred on its prefix, so the
    codebook splits the documents of a prefix instead of telling prefixes apart again."""

    def __init__(self, size: int, dim: int, prefix_offsets: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, dim) * dim**-0.5)
        self.offsets = nn.Parameter(torch.zeros(prefix_offsets, size, dim)) if prefix_offsets else None

    def centre(self, h: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
        if self.offsets is None:
            return h
        shift = sum(self.offsets[s][prefix[:, s].long()].float() for s in range(self.offsets.shape[0]))
        return h - shift.to(h.dtype)

    def forward(
        self,
        h: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        selection: str = "dot",
        temperature: float = 1.0,
        gumbel: bool = False,
        prefix: torch.Tensor | None = None,
        query: bool = False,
    ):
        """codes -> their vectors; h (+ prefix) -> (logits, quantized query, codes), or the query alone.

        Selection runs in fp32 whatever the autocast or weight dtype (in bf16 close codes swap: at d=768 a third of
        the argmaxes changed); the query and quantized vectors come back in h's dtype."""
        if codes is not None:
            return self.weight[codes]
        with torch.autocast(h.device.type, enabled=False):
            q = self.centre(h.float(), prefix)
            if query:
                return q.to(h.dtype)
            weight = self.weight.float()
            logits = code_logits(q, weight, selection)
            z, chosen = straight_through(logits, weight, temperature, gumbel)
        return logits, z.to(h.dtype), chosen
