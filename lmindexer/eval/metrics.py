"""ID quality metrics as pure functions: code usage and perplexity, NMI and AMI against labels."""

from __future__ import annotations

import math

import numpy as np
import torch


def code_usage(codes: np.ndarray, size: int) -> dict:
    """Share of the K codes used and the perplexity exp(H) of their frequencies (K means perfectly even)."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {
        "used": int((counts > 0).sum()),
        "usage": float((counts > 0).mean()),
        "perplexity": float(math.exp(-(p * np.log(p)).sum())),
    }


def _contingency(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(non-zero cell counts, row sums, column sums): sparse, so millions of distinct IDs fit in memory."""
    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    ia, ib = ia.reshape(-1).astype(np.int64), ib.reshape(-1).astype(np.int64)
    _, cells = np.unique(ia * (ib.max() + 1) + ib, return_counts=True)
    return cells, np.bincount(ia), np.bincount(ib)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_info(cells: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> float:
    return _entropy(ra) + _entropy(rb) - _entropy(cells)


def _expected_mutual_info(ra: np.ndarray, rb: np.ndarray, n: int) -> float:
    """E[MI] under the hypergeometric model of random labelings with the same cluster sizes. It depends only on
    the sizes, so equal sizes are summed once with their multiplicity (one row size at a time bounds memory)."""
    ub, cb = np.unique(rb, return_counts=True)
    b = torch.tensor(ub, dtype=torch.float64)[:, None]
    weight_b = torch.tensor(cb, dtype=torch.float64)[:, None]
    lg, total = torch.lgamma, 0.0
    ua, ca = np.unique(ra, return_counts=True)
    for a_size, a_count in zip(ua.tolist(), ca.tolist()):
        a = float(a_size)
        nij = torch.arange(1, min(a_size, int(ub.max())) + 1, dtype=torch.float64)[None, :]
        valid = (nij >= (a + b - n).clamp_min(1)) & (nij <= torch.clamp(b, max=a))
        log_p = (
            math.lgamma(a + 1)
            + lg(b + 1)
            + math.lgamma(n - a + 1)
            + lg(n - b + 1)
            - math.lgamma(n + 1)
            - lg(nij + 1)
            - lg(a - nij + 1)
            - lg(b - nij + 1)
            - lg((n - a - b + nij).clamp_min(0) + 1)
        )
        term = nij / n * (torch.log(n * nij) - torch.log(a * b)) * torch.exp(log_p)
        total += a_count * float((torch.where(valid, term, torch.zeros_like(term)) * weight_b).sum())
    return total


def nmi(labels, codes) -> float:
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn's default)."""
    cells, ra, rb = _contingency(labels, codes)
    ha, hb = _entropy(ra), _entropy(rb)
    if ha == 0 or hb == 0:
        return 1.0 if ha == hb else 0.0
    return _mutual_info(cells, ra, rb) / ((ha + hb) / 2)


def ami(labels, codes) -> float:
    """Adjusted mutual information: 0 for chance agreement, 1 for identical partitions."""
    cells, ra, rb = _contingency(labels, codes)
    n = int(ra.sum())
    ha, hb = _entropy(ra), _entropy(rb)
    if (len(ra) == len(rb) == 1) or (len(ra) == len(rb) == n):
        return 1.0
    emi = _expected_mutual_info(ra, rb, n)
    denom = (ha + hb) / 2 - emi
    return float((_mutual_info(cells, ra, rb) - emi) / denom) if abs(denom) > 1e-12 else 0.0


def collision_rate(codes: np.ndarray) -> float:
    """Share of documents that need a non-zero suffix: 1 - distinct code tuples / documents. (A group of m documents
    with the same T codes keeps one at suffix 0 and moves m - 1 to suffixes 1..m-1.)"""
    codes = np.asarray(codes).reshape(len(codes), -1)
    return 1.0 - len(np.unique(codes, axis=0)) / max(len(codes), 1)


def _groups(codes: np.ndarray, length: int) -> np.ndarray:
    """A group number per row for its prefix of `length` codes (all rows in group 0 for length 0)."""
    if length == 0:
        return np.zeros(len(codes), dtype=np.int64)
    return np.unique(codes[:, :length], axis=0, return_inverse=True)[1].reshape(-1)


def split_stats(codes: np.ndarray) -> list[dict]:
    """For each position t: how the code at t splits the documents that share the codes before it.

    `cond_entropy` is H(c_t | c_<t) in nats (= H(c_<=t) - H(c_<t), from the empirical counts), `cond_perplexity`
    its exp (the number of equally used child codes it is worth; 1 means c_t is a function of the earlier codes),
    `children` the mean / median / max number of distinct codes at t under one prefix of length t-1 and `one_child`
    the share of those prefixes with a single child. `cond_perplexity_max` is the most it can be: exp H(document |
    c_<t), reached when every document of a prefix gets a code of its own (a prefix of m documents has at most m
    children, so deep positions of a small corpus cannot reach K). At t=1 the "prefix" is the whole corpus."""
    codes = np.asarray(codes).reshape(len(codes), -1)
    out = []
    for t in range(1, codes.shape[1] + 1):
        parent, child = _groups(codes, t - 1), _groups(codes, t)
        h_parent = _entropy(np.bincount(parent))
        h = _entropy(np.bincount(child)) - h_parent
        pairs = np.unique(np.stack([parent, child], 1), axis=0)
        kids = np.bincount(pairs[:, 0])
        out.append(
            {
                "position": t,
                "cond_entropy": round(h, 4),
                "cond_perplexity": round(math.exp(h), 2),
                "cond_perplexity_max": round(math.exp(math.log(len(codes)) - h_parent), 2),
                "children_mean": round(float(kids.mean()), 2),
                "children_median": float(np.median(kids)),
                "children_max": int(kids.max()),
                "one_child": round(float((kids == 1).mean()), 4),
                "prefixes": int(len(kids)),
            }
        )
    return out


def conditional_perplexity(pairs: np.ndarray) -> float:
    """exp H(code | parent) from a [parents, K] count matrix."""
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.sum() == 0:
        return 0.0
    return round(math.exp(_entropy(pairs.reshape(-1)) - _entropy(pairs.sum(1))), 2)


def label_scores(labels: np.ndarray, codes: np.ndarray) -> dict:
    """AMI and NMI of the code tuples `codes` [N, t] against `labels` [N] (None, NaN or "" where missing: those
    documents are left out); {} when no document has a label."""
    has = np.array([x is not None and x == x and x != "" for x in labels])  # "" is how a missing label is read
    if not has.any():
        return {}
    keys = ["-".join(map(str, c)) for c in codes[has]]
    return {"ami": round(ami(labels[has].astype(str), keys), 4), "nmi": round(nmi(labels[has].astype(str), keys), 4)}


def position_figures(codes: np.ndarray, labels: np.ndarray, size: int) -> dict:
    """What learn-ids reports once every document has codes 1..t (`codes` [N, t]): code t's usage and perplexity,
    the t-code prefixes' AMI/NMI against the labels, how many distinct prefixes there are, how code t splits its
    parents (conditional perplexity, children per parent) and the share of documents that would need a suffix."""
    split = split_stats(codes)[-1]
    return {
        **code_usage(codes[:, -1], size),
        **label_scores(labels, codes),
        "distinct_prefixes": int(len(np.unique(codes, axis=0))),
        "cond_perplexity": split["cond_perplexity"],
        "children_mean": split["children_mean"],
        "suffix_share": round(collision_rate(codes), 4),
    }
