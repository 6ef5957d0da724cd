"""k-means++ seeding on every point against seeding on a sample (lmindexer.quantizers.kmeans), time and final
inertia side by side, on clustered synthetic data (a mixture of Gaussians, like sentence embeddings' topics).

    .venv/bin/python -m bench.kmeans_init                    # 200,000 x 384, K=256
    .venv/bin/python -m bench.kmeans_init --points 1000000
Prints a table and writes bench/results/kmeans.json (one entry per --points, kept across runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench.provenance import write_result
from lmindexer.quantizers.kmeans import kmeans, nearest

ROOT = Path(__file__).resolve().parents[1]


def data(n: int, d: int, topics: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(topics, d, generator=g) * 3
    sizes = torch.distributions.Dirichlet(torch.ones(topics)).sample() * n
    labels = torch.multinomial(sizes / sizes.sum(), n, replacement=True, generator=g)
    return centres[labels] + torch.randn(n, d, generator=g)


def inertia(x: torch.Tensor, c: torch.Tensor) -> float:
    return float(nearest(x, c)[1].sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    x = data(args.points, args.dim, 2 * args.k)
    rows = []
    for label, seed_points in (("k-means++ on every point", 0), ("k-means++ on a sample (default)", None)):
        start = time.time()
        c = kmeans(x, args.k, iters=args.iters, seed=0, max_points=args.points, seed_points=seed_points)
        seconds = round(time.time() - start, 1)
        rows.append({"init": label, "seconds": seconds, "inertia": round(inertia(x, c) / len(x), 3)})
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{args.points:,} x {args.dim}, K={args.k}, {args.iters} Lloyd iterations at most, torch threads "
        f"{torch.get_num_threads()}\n\n| seeding | seconds | inertia / point |\n|---|---:|---:|"
    )
    for r in rows:
        print(f"| {r['init']} | {r['seconds']} | {r['inertia']} |")
    print(
        f"\nspeed-up {rows[0]['seconds'] / max(rows[1]['seconds'], 1e-9):.1f}x, inertia ratio "
        f"{rows[1]['inertia'] / rows[0]['inertia']:.4f}"
    )
    out = ROOT / "bench" / "results" / "kmeans.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else {}
    runs[str(args.points)] = {"points": args.points, "dim": args.dim, "k": args.k, "iters": args.iters, "rows": rows}
    write_result(out, {"runs": runs})


if __name__ == "__main__":
    main()
