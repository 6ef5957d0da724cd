"""Ranking metrics for generative retrieval and recommendation: Recall, NDCG, MRR and hit at K.

NDCG's ideal DCG is computed over *all* relevant documents of a query, not over the retrieved list (the original
LMIndexer code did the latter, which inflates NDCG). Gains are the relevance grades (linear, as trec_eval);
`ndcg_binary` counts every relevant document as 1.
"""

from __future__ import annotations

import math

import numpy as np


def _dcg(gains) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def query_metrics(ranked: list, relevant: dict, ks) -> dict:
    """Metrics of one ranked list against {doc: grade > 0}; a document listed twice counts at its first place only."""
    ranked = list(dict.fromkeys(ranked))
    rel = {d: g for d, g in relevant.items() if g > 0}
    if not rel:
        raise ValueError("a query needs at least one relevant document")
    out = {}
    grades = sorted(rel.values(), reverse=True)
    first = next((i for i, d in enumerate(ranked) if d in rel), None)
    for k in ks:
        top = ranked[:k]
        found = [d for d in top if d in rel]
        out[f"recall@{k}"] = len(found) / len(rel)
        out[f"hit@{k}"] = float(bool(found))
        out[f"mrr@{k}"] = 1.0 / (first + 1) if first is not None and first < k else 0.0
        out[f"ndcg@{k}"] = _dcg([rel.get(d, 0) for d in top]) / _dcg(grades[:k])
        out[f"ndcg_binary@{k}"] = _dcg([float(d in rel) for d in top]) / _dcg([1.0] * min(k, len(rel)))
    return out


def mean_metrics(ranked_lists: list, relevant: list, ks) -> dict:
    """Each metric averaged over queries (a query counts once, however many relevant documents it has)."""
    if len(ranked_lists) != len(relevant):
        raise ValueError(f"{len(ranked_lists)} ranked lists for {len(relevant)} queries")
    if not ranked_lists:
        raise ValueError("no queries to evaluate")
    per = [query_metrics(r, rel, ks) for r, rel in zip(ranked_lists, relevant)]
    return {k: float(np.mean([p[k] for p in per])) for k in per[0]}


def per_query(ranked_lists: list, relevant: list, ks) -> dict[str, np.ndarray]:
    """Each metric per query, as arrays (for means and bootstrap intervals)."""
    per = [query_metrics(r, rel, ks) for r, rel in zip(ranked_lists, relevant)]
    return {k: np.array([p[k] for p in per]) for k in per[0]}


def bootstrap_ci(values: np.ndarray, samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-query values (queries resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for s in range(0, samples, 100):  # 100 resamples at a time bound the memory for large query sets
        n = min(100, samples - s)
        means[s : s + n] = values[rng.integers(0, len(values), size=(n, len(values)))].mean(1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, 95% percentile interval): per-query values of two methods on the same queries, the same
    resampled queries for both, so the interval holds the difference's own noise, not the sum of two intervals."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same queries: {a.shape} against {b.shape}")
    lo, hi = bootstrap_ci(a - b, samples, seed)
    return float((a - b).mean()), lo, hi


def seed_verdict(paired: tuple, seeds_a: list, seeds_b: list) -> str:
    """'above', 'below' or 'not separated': A ranks above B only where the paired interval of A - B lies above 0
    *and* every training seed of A scores above every seed of B (below: the mirror); otherwise the test sampling
    or the spread between training runs can explain the difference."""
    _, lo, hi = paired
    if lo > 0 and min(seeds_a) > max(seeds_b):
        return "above"
    if hi < 0 and max(seeds_a) < min(seeds_b):
        return "below"
    return "not separated"
