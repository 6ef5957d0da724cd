"""An embedding table of which only some rows train: the same lookups as the full table, with a gradient and
optimizer state for those rows alone.

Training the indexer on a CPU, the word-embedding table (30k+ rows for MiniLM, plus the ID tokens) took about a
third of every step: its dense gradient is zeroed and filled and AdamW updates all of it, though only the corpus's
tokens and the ID tokens ever get a gradient. With weight decay 0 a row without a gradient never moves, so training
the rows that can get one and keeping the others fixed reaches the same weights (tests/test_row_embedding.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RowSubsetEmbedding(nn.Module):
    """`full`'s table, with the rows `rows` as a trainable parameter and the others a fixed buffer; `to_embedding()`
    gives the whole table back as an nn.Embedding."""

    def __init__(self, full: nn.Embedding, rows: torch.Tensor):
        super().__init__()
        weight = full.weight.detach()
        rows = torch.unique(rows.long().to(weight.device))
        self.padding_idx = full.padding_idx
        self.trained = nn.Parameter(weight[rows].clone())
        self.register_buffer("fixed", weight.clone())
        index = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        index[rows] = torch.arange(len(rows), device=weight.device)
        self.register_buffer("index", index)
        self.register_buffer("rows", rows)

    @property
    def num_embeddings(self) -> int:
        return self.fixed.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = self.index[ids]
        trained = F.embedding(pos.clamp(min=0), self.trained)
        return torch.where((pos >= 0)[..., None], trained, self.fixed[ids].to(trained.dtype))

    @torch.no_grad()
    def to_embedding(self) -> nn.Embedding:
        full = self.fixed.clone()
        full[self.rows] = self.trained.detach().to(full.dtype)
        out = nn.Embedding(full.shape[0], full.shape[1], padding_idx=self.padding_idx, device=full.device)
        out.weight.data.copy_(full)
        return out
