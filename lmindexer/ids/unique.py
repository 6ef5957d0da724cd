"""Unique IDs: collisions get a suffix position; optionally, an over-full last level first moves documents to their
next-nearest free code. Pure functions on one group of documents; Ray Data groups the corpus by prefix.
"""

from __future__ import annotations

import numpy as np


def sid(codes, suffix: int) -> str:
    """The printed ID, e.g. codes [12, 7, 103] with suffix 0 -> '12-7-103-0'."""
    return "-".join(str(int(c)) for c in codes) + f"-{int(suffix)}"


def suffix_group(doc_ids: np.ndarray, old_suffix: np.ndarray) -> np.ndarray:
    """Suffixes for documents sharing all codes. Old documents (suffix >= 0) keep theirs; new ones (-1) take the
    next free numbers in doc_id order, so a re-run gives the same IDs."""
    out = old_suffix.astype(np.int64).copy()
    new = np.flatnonzero(out < 0)
    start = out.max() + 1 if (out >= 0).any() else 0
    out[new[np.argsort(doc_ids[new], kind="stable")]] = np.arange(start, start + len(new))
    return out


def rebalance_group(
    doc_ids: np.ndarray, candidates: np.ndarray, scores: np.ndarray, taken: np.ndarray | None = None
) -> np.ndarray:
    """Last-level codes for documents sharing a prefix: each takes its best candidate code not yet used in the
    group (greedy, most confident documents first); one with no free candidate keeps its best code (and gets a
    suffix later). `taken` marks codes already held by old documents, which never move."""
    used = set() if taken is None else {int(c) for c in taken}
    chosen = candidates[:, 0].astype(np.int64).copy()
    order = np.lexsort((doc_ids, -scores[:, 0]))
    for i in order:
        for c in candidates[i]:
            if int(c) not in used:
                chosen[i] = int(c)
                used.add(int(c))
                break
    return chosen
