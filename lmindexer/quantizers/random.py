"""Random IDs: the floor every learned method must clear."""

from __future__ import annotations

import hashlib

import numpy as np


def random_codes(doc_ids, codebook_size: int, num_positions: int, seed: int) -> np.ndarray:
    """Codes drawn from a hash of (seed, doc_id): the same document always gets the same random ID."""
    out = np.empty((len(doc_ids), num_positions), dtype=np.int64)
    for i, d in enumerate(doc_ids):
        digest = hashlib.blake2b(f"{seed}:{d}".encode(), digest_size=8 * num_positions).digest()
        out[i] = np.frombuffer(digest, dtype=np.uint64) % codebook_size
    return out
