"""Random IDs: the floor every learned method must clear."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from .codes import positions_of, size_of


def random_codes(doc_ids, codebook_size: int, num_positions: int, seed: int) -> np.ndarray:
    """Codes drawn from a hash of (seed, doc_id): the same document always gets the same random ID."""
    out = np.empty((len(doc_ids), num_positions), dtype=np.int64)
    for i, d in enumerate(doc_ids):
        digest = hashlib.blake2b(f"{seed}:{d}".encode(), digest_size=8 * num_positions).digest()
        out[i] = np.frombuffer(digest, dtype=np.uint64) % codebook_size
    return out


class RandomIds:
    """random_codes behind the methods' interface: it reads doc_ids, not vectors, and fitting it keeps the seed."""

    name = "random"
    reads = "doc_id"

    def __init__(self, codebook_size: int, num_positions: int, seed: int):
        self.codebook_size, self.num_positions, self.seed = codebook_size, num_positions, seed

    @classmethod
    def fit(cls, x, codebook_size: int, num_positions: int, iters: int = 50, seed: int = 0) -> "RandomIds":
        return cls(codebook_size, num_positions, seed)

    def encode(self, doc_ids, k: int):
        """(codes, the last code as the only candidate, score 0): a random ID has no nearer alternative."""
        codes = torch.from_numpy(random_codes(doc_ids, self.codebook_size, self.num_positions, self.seed))
        return codes, codes[:, -1:], torch.zeros(len(codes), 1)

    def tensors(self) -> dict:
        return {"seed": torch.tensor([self.seed], dtype=torch.long)}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "RandomIds":
        return cls(size_of(meta), positions_of(meta), int(tensors["seed"][0]))
