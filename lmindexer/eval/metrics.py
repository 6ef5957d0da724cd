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


def _contingency(a, b) -> np.ndarray:
    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia.reshape(-1), ib.reshape(-1)), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_info(table: np.ndarray) -> float:
    n = table.sum()
    nz = table > 0
    outer = np.outer(table.sum(1), table.sum(0))
    return float((table[nz] / n * (np.log(table[nz] * n) - np.log(outer[nz]))).sum())


def _expected_mutual_info(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """E[MI] under the hypergeometric model of random labelings with the same cluster sizes."""
    a = torch.tensor(a, dtype=torch.float64)[:, None, None]
    b = torch.tensor(b, dtype=torch.float64)[None, :, None]
    nij = torch.arange(1, int(min(a.max(), b.max())) + 1, dtype=torch.float64)[None, None, :]
    valid = (nij >= (a + b - n).clamp_min(1)) & (nij <= torch.minimum(a, b))
    lg = torch.lgamma
    log_p = (lg(a + 1) + lg(b + 1) + lg(n - a + 1) + lg(n - b + 1) - lg(torch.tensor(n + 1.0)) - lg(nij + 1)
             - lg(a - nij + 1) - lg(b - nij + 1) - lg(n - a - b + nij + 1))
    term = nij / n * (torch.log(n * nij) - torch.log(a * b)) * torch.exp(log_p)
    return float(torch.where(valid, term, torch.zeros_like(term)).sum())


def nmi(labels, codes) -> float:
    """Normalised mutual information (arithmetic mean of the entropies, as scikit-learn's default)."""
    t = _contingency(labels, codes)
    ha, hb = _entropy(t.sum(1)), _entropy(t.sum(0))
    if ha == 0 or hb == 0:
        return 1.0 if ha == hb else 0.0
    return _mutual_info(t) / ((ha + hb) / 2)


def ami(labels, codes) -> float:
    """Adjusted mutual information: 0 for chance agreement, 1 for identical partitions."""
    t = _contingency(labels, codes)
    n = int(t.sum())
    ra, rb = t.sum(1), t.sum(0)
    ha, hb = _entropy(ra), _entropy(rb)
    if (len(ra) == len(rb) == 1) or (len(ra) == len(rb) == n):
        return 1.0
    emi = _expected_mutual_info(ra, rb, n)
    denom = (ha + hb) / 2 - emi
    return float((_mutual_info(t) - emi) / denom) if abs(denom) > 1e-12 else 0.0
