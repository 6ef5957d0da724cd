"""An embedding table of which only some rows train: the same lookups as the full table, with a gradient and
optimizer state for those rows alone.

Training the indexer, the word-embedding table (30k+ rows for MiniLM, plus the ID tokens) has its dense gradient
zeroed and filled and AdamW updates all of it every step, though only the corpus's tokens and the ID tokens ever get
a gradient. With weight decay 0 a row without a gradient never moves, so training the rows that can get one and
keeping the others fixed reaches the same weights up to float rounding (tests/test_id_split.py); what it saves a
step is in RESULTS.md (bench/learn_step.py).
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
        # the padding row takes no gradient from lookups, as in nn.Embedding (but does as a row of weight_rows)
        pad = -1 if self.padding_idx is None else int(index[self.padding_idx])
        self._pad = pad if pad >= 0 else None

    @property
    def num_embeddings(self) -> int:
        return self.fixed.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = self.index[ids]
        trained = F.embedding(pos.clamp(min=0), self.trained, padding_idx=self._pad)
        return torch.where((pos >= 0)[..., None], trained, self.fixed[ids].to(trained.dtype))

    def weight_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The table's rows `ids` (each one that trains), as `weight[ids]` of an nn.Embedding: every row takes its
        gradient, the padding row included."""
        pos = self.index[ids]
        if (pos < 0).any():
            raise ValueError("weight_rows: some rows asked for do not train")
        return self.trained[pos]

    @torch.no_grad()
    def to_embedding(self) -> nn.Embedding:
        full = self.fixed.clone()
        full[self.rows] = self.trained.detach().to(full.dtype)
        out = nn.Embedding(full.shape[0], full.shape[1], padding_idx=self.padding_idx, device=full.device)
        out.weight.data.copy_(full)
        return out
