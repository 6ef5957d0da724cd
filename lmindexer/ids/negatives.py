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


def prefix_ids(prefixes: np.ndarray) -> np.ndarray:
    """A group number per row, equal for rows with the same ID prefix (all 0 for an empty prefix)."""
    if prefixes.shape[1] == 0:
        return np.zeros(len(prefixes), dtype=np.int64)
    return np.unique(prefixes, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def prefix_batches(
    rows: np.ndarray, groups: np.ndarray, batch_size: int, group_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of `rows` made of same-prefix pieces: each prefix group's rows (in random order) are cut into pieces
    of up to `group_size`, the pieces are shuffled and laid end to end, and the result is cut into len(rows) //
    batch_size batches (the same count on every worker with equal shards; a piece may straddle two batches)."""
    rows = rng.permutation(rows)
    g = groups[rows]
    order = np.argsort(g, kind="stable")
    rows, g = rows[order], g[order]
    first = np.r_[True, g[1:] != g[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    piece = np.cumsum(first | ((np.arange(len(g)) - start) % max(group_size, 1) == 0)) - 1
    rank = rng.permutation(piece[-1] + 1 if len(piece) else 0)
    rows = rows[np.argsort(rank[piece], kind="stable")]
    n = len(rows) // batch_size
    return [rows[i * batch_size : (i + 1) * batch_size] for i in range(n)]
