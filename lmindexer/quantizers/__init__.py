"""ID methods behind one interface, one module each, in one registry (METHODS, by name): hierarchical k-means
(hkmeans), residual k-means (rkmeans), RQ-VAE (rqvae) and random IDs: the methods that are math on tensors.
lmindexer/ids/methods.py puts LMIndexer (a model over texts, fitted by learn-ids) behind the same encode interface
and loads either kind of saved method.

A method is fitted (`fit` on a sample in-process; RQ-VAE, marked `trained`, by a Ray Train run in
lmindexer/ids/rqvae_training.py), maps what it `reads` (embeddings [n, d], or doc_ids for random IDs) to codes
[n, T] in 0..K-1 plus the k best last-level codes and their scores (minus squared distance) that rebalancing uses,
and saves as method.json + method.safetensors (save_method / load_method), so actors on any node can load it.
"""

from __future__ import annotations

from typing import Protocol

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .. import storage
from .hkmeans import HierarchicalKMeans
from .random import RandomIds, random_codes
from .rkmeans import ResidualKMeans
from .rqvae import RQVAE

METHODS = {m.name: m for m in (HierarchicalKMeans, ResidualKMeans, RQVAE, RandomIds)}
__all__ = [
    "IdMethod",
    "METHODS",
    "HierarchicalKMeans",
    "ResidualKMeans",
    "RQVAE",
    "RandomIds",
    "random_codes",
    "save_method",
    "load_method",
]


class IdMethod(Protocol):
    name: str
    reads: str  # the batch column encode takes: "emb" (vectors) or "doc_id"

    @classmethod
    def fit(cls, x: torch.Tensor, codebook_size: int, num_positions: int, iters: int, seed: int) -> "IdMethod":
        """The method fitted on a sample x [n, d] (methods marked `trained` are fitted by a training run)."""
        ...

    def encode(self, x, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes [n, T], the k best last-level codes [n, k], their scores [n, k])."""
        ...

    def tensors(self) -> dict: ...

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "IdMethod": ...


def save_method(fs, path: str, method, meta: dict) -> None:
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(storage.join(path, "method.safetensors")) as f:
        f.write(save_tensors({k: v.detach().cpu().contiguous() for k, v in method.tensors().items()}))
    storage.write_json(fs, storage.join(path, "method.json"), {**meta, "method": method.name})


def load_method(fs, path: str):
    """(method, meta) saved by save_method."""
    meta = storage.read_json(fs, storage.join(path, "method.json"))
    with fs.open_input_stream(storage.join(path, "method.safetensors")) as f:
        tensors = load_tensors(f.read())
    return METHODS[meta["method"]].from_tensors(tensors, meta), meta
