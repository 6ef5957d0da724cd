"""Hard negatives as row indices: for each document, another one with the same ID prefix, drawn anew each epoch."""
from __future__ import annotations

import numpy as np


def prefix_groups(prefixes: np.ndarray) -> dict[str, np.ndarray]:
    """Index arrays that let any worker draw a same-prefix row in O(1): rows sorted by prefix, and per row its
    group's start in that order, the group size and its own place in the group."""
    _, group = np.unique(prefixes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    place = np.empty(len(group), dtype=np.int64)
    place[order] = np.arange(len(group)) - starts[group[order]]
    return {"order": order, "start": starts[group], "size": sizes[group], "place": place}


def sample_negatives(rows: np.ndarray, groups: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A different row with the same prefix for each row; a random other row where the prefix is unique."""
    size, start, place = groups["size"][rows], groups["start"][rows], groups["place"][rows]
    n = len(groups["order"])
    k = rng.integers(0, np.maximum(size - 1, 1))
    k = k + (k >= place)  # skip the row itself
    same = groups["order"][start + np.minimum(k, size - 1)]
    other = (rows + rng.integers(1, max(n, 2), size=len(rows))) % n
    return np.where(size > 1, same, other)
