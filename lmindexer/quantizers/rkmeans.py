"""Residual k-means (RK-means): one k-means codebook per level, each fitted on what the earlier levels left."""

from __future__ import annotations

import torch

from .codes import positions_of
from .kmeans import residual_encode, residual_fit


class ResidualKMeans:
    name = "rkmeans"
    reads = "emb"

    def __init__(self, books: list[torch.Tensor]):
        self.books = books

    @classmethod
    def fit(
        cls, x: torch.Tensor, codebook_size: int, num_positions: int, iters: int = 50, seed: int = 0
    ) -> "ResidualKMeans":
        return cls(residual_fit(x, codebook_size, num_positions, iters, seed))

    def encode(self, x: torch.Tensor, k: int):
        return residual_encode(x, self.books, k)

    def tensors(self) -> dict:
        return {f"book.{t}": b for t, b in enumerate(self.books)}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "ResidualKMeans":
        return cls([tensors[f"book.{t}"] for t in range(positions_of(meta))])
