"""ID quality metrics as pure functions: code usage and perplexity, NMI and AMI against labels."""
from __future__ import annotations

import math

import numpy as np
import torch


def code_usage(codes: np.ndarray, size: int) -> dict:
    """Share of the K codes used and the perplexity exp(H) of their frequencies (K means perfectly even)."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {"used": int((counts > 0).sum()), "usage": float((counts > 0).mean()),
            "perplexity": float(math.exp(-(p * np.log(p)).sum()))}


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
        log_p = (math.lgamma(a + 1) + lg(b + 1) + math.lgamma(n - a + 1) + lg(n - b + 1)
                 - math.lgamma(n + 1) - lg(nij + 1) - lg(a - nij + 1) - lg(b - nij + 1)
                 - lg((n - a - b + nij).clamp_min(0) + 1))
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
