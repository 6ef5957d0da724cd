"""Pure-torch k-means: k-means++ init, batched distances, deterministic by seed, CPU or GPU.

Fits on at most `max_points` rows (a seeded sample) so it scales to corpora larger than memory; `assign` then
labels any number of rows in batches. The k-means++ seeding, k sequential passes over the points, runs on a seeded
sample of `seed_points` rows (default 50 per centre, at least 10,000): at 200,000 x 384 and K=256 it was 92 of
112 s on every point, and the Lloyd passes on all points make up the difference (bench/kmeans_init.py).
"""

from __future__ import annotations

import torch


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)).clamp_min_(0)


def nearest(x: torch.Tensor, centres: torch.Tensor, batch_size: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of each row's nearest centre, its squared distance), in batches of rows: memory stays at
    batch_size x k distances however many rows there are."""
    parts = [_sq_dist(x[i : i + batch_size], centres).min(1) for i in range(0, len(x), batch_size)]
    return torch.cat([p.indices for p in parts]), torch.cat([p.values for p in parts])


def assign(x: torch.Tensor, centres: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    return nearest(x, centres, batch_size)[0]


def kmeans_pp(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre drawn with probability proportional to its squared distance."""
    n = len(x)
    norms = x.pow(2).sum(1)  # once: each pass then costs one matrix-vector product

    def to(i: torch.Tensor) -> torch.Tensor:
        return (norms - 2 * (x @ x[i].squeeze(0)) + norms[i]).clamp_min_(0)

    idx = torch.randint(n, (1,), generator=g).to(x.device)
    chosen, d2 = [idx], to(idx)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        idx = torch.multinomial(probs.cpu(), 1, generator=g).to(x.device)
        chosen.append(idx)
        d2 = torch.minimum(d2, to(idx))
    return x[torch.cat(chosen)].clone()


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 50,
    seed: int = 0,
    max_points: int = 200000,
    tol: float = 1e-6,
    seed_points: int | None = None,
) -> torch.Tensor:
    """Centres [k, d] of x [n, d] after at most `iters` Lloyd iterations (fewer once the inertia changes by at most
    `tol`, relative). Empty clusters are re-seeded at the points farthest from their centre.
    `seed_points`: rows the k-means++ seeding samples (None: max(50 k, 10,000); 0: all)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = x.float()
    if len(x) > max_points:
        x = x[torch.randperm(len(x), generator=g)[:max_points].to(x.device)]
    n = len(x)
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    m = max(50 * k, 10_000) if seed_points is None else (seed_points or n)
    pool = x if n <= m else x[torch.randperm(n, generator=g)[:m].to(x.device)]
    centres = kmeans_pp(pool, k, g)
    prev = None
    for _ in range(iters):  # one pass over the distances per iteration: the labels and the inertia come from it
        labels, d2 = nearest(x, centres)
        inertia = float(d2.sum())
        if prev is not None and abs(prev - inertia) <= tol * max(prev, 1.0):
            break
        prev = inertia
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp_min(1)[:, None])
        if empty.any():  # re-seeded at the points farthest from the centre they had
            centres[empty] = x[d2.topk(int(empty.sum())).indices]
    return centres


def top_codes(dist: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest codes (padded with the nearest when fewer exist) and minus their squared distances."""
    top = (-dist).topk(min(k, dist.shape[1]), dim=1)
    codes, scores = top.indices, top.values
    if codes.shape[1] < k:
        pad = k - codes.shape[1]
        codes = torch.cat([codes, codes[:, :1].expand(-1, pad)], 1)
        scores = torch.cat([scores, scores[:, -1:].expand(-1, pad)], 1)
    return codes, scores


def residual_fit(z: torch.Tensor, codebook_size: int, num_positions: int, iters: int, seed: int) -> list[torch.Tensor]:
    """One k-means codebook per position, each fitted on what the earlier positions left unexplained."""
    books, r = [], z.float()
    for t in range(num_positions):
        c = kmeans(r, codebook_size, iters=iters, seed=seed + t)
        books.append(c)
        r = r - c[assign(r, c)]
    return books


def residual_encode(z: torch.Tensor, books: list[torch.Tensor], k: int):
    codes, r = [], z.float()
    for c in books:
        dist = _sq_dist(r, c)
        codes.append(dist.argmin(1))
        r = r - c[codes[-1]]
    cand, score = top_codes(dist, k)
    return torch.stack(codes, 1), cand, score
