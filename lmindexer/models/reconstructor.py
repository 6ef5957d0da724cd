"""The shallow reconstructor: rebuild every document token from the ID vectors and a masked view of the context.

Each target position i has its own key mask: the ID slots, plus context tokens kept by a random mask (ratio rho
hidden), never token i itself. So the ID has to carry what the visible context does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reconstruction_mask(
    valid: torch.Tensor, num_slots: int, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[B, L, S+L] bool: which keys (S ID slots, then L context tokens) target position i may attend to."""
    b, n = valid.shape
    keep = torch.rand(b, n, n, generator=generator, device=valid.device) >= mask_ratio
    keep &= valid[:, None, :].bool()
    keep &= ~torch.eye(n, dtype=torch.bool, device=valid.device)
    slots = torch.ones(b, n, num_slots, dtype=torch.bool, device=valid.device)
    return torch.cat([slots, keep], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class CrossAttentionLayer(nn.Module):
    """T5-style pre-norm layer: cross-attention from the queries to the keys, then a ReLU feed-forward."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_kv, self.norm_ff = RMSNorm(dim), RMSNorm(dim), RMSNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.ff = nn.Sequential(
            nn.Linear(dim, ff, bias=False), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, dim, bias=False)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, kv, mask):
        b, n, d = x.shape
        split = lambda t: t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, kvn = self.norm_q(x), self.norm_kv(kv)
        att = F.scaled_dot_product_attention(
            split(self.q(q)), split(self.k(kvn)), split(self.v(kvn)), attn_mask=mask[:, None]
        )
        x = x + self.dropout(self.o(att.transpose(1, 2).reshape(b, n, d)))
        return x + self.dropout(self.ff(self.norm_ff(x)))


class Reconstructor(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, layers: int, max_length: int, dropout: float):
        super().__init__()
        self.positions = nn.Embedding(max_length, dim)
        self.layers = nn.ModuleList(CrossAttentionLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.norm = RMSNorm(dim)

    def forward(self, id_query: torch.Tensor, slots: torch.Tensor, context: torch.Tensor, mask: torch.Tensor):
        """id_query [B, d], slots [B, S, d], context [B, L, d] token embeddings, mask [B, L, S+L] -> [B, L, d]."""
        pos = self.positions(torch.arange(context.shape[1], device=context.device))
        x = id_query[:, None, :] + pos[None]
        kv = torch.cat([slots, context + pos[None]], dim=1)
        for layer in self.layers:
            x = layer(x, kv, mask)
        return self.norm(x)
