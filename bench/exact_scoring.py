"""Exact scoring of every ID at scale: how long the one-pass generator (`generator.kind=seqrec`) takes to rank a
table of 10,000 to 1,000,000 IDs for a batch of users, beside the plain baseline of the same ranking from a
ready-made item matrix (SASRec's way: one stored vector per item, one matrix product, one top-k).

The generator composes each item's vector from its ID's code embeddings (T=3, K=256, plus the collision suffix)
once per call, then scores items in chunks (models.seqrec.top_k), so no [users, items] matrix is ever held. The
ratio is the baseline's time over ours (1.0: the composition and chunking cost nothing).

    .venv/bin/python -m bench.exact_scoring                         # 10k, 100k and 1M IDs, 256 users
    .venv/bin/python -m bench.exact_scoring --sizes 10000 --users 256

Writes bench/results/exact-scoring.json (RESULTS.md is rendered from it by bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.provenance import write_result
from lmindexer.models.seqrec import SeqRec, SeqRecConfig, item_rows, top_k

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results" / "exact-scoring.json"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def one_size(n: int, users: int, k: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (n, 3))
    _, first = np.unique(codes, axis=0, return_index=True)
    suffix = np.zeros(n, dtype=np.int64)
    suffix[np.setdiff1d(np.arange(n), first)] = 1  # a repeated code tuple takes a suffix (enough for timing)
    rows, n_rows = item_rows("codes", codes, suffix)
    torch.manual_seed(0)
    model = SeqRec(SeqRecConfig(items=n, rows=n_rows, compose="codes"), torch.from_numpy(rows)).eval()
    states = torch.randn(users, model.cfg.dim)
    exclude = [rng.choice(n, size=9, replace=False).tolist() for _ in range(users)]  # a Beauty-sized history

    def ours():
        with torch.no_grad():
            return top_k(states, model.item_table(), k, exclude)

    matrix = model.item_table().detach().clone()

    def plain():
        with torch.no_grad():
            scores = states @ matrix.T
            for b, items in enumerate(exclude):
                scores[b, items] = float("-inf")
            return scores.topk(k, dim=1)

    (mine, _), theirs = ours(), plain()
    agree = torch.allclose(mine, theirs.values, rtol=1e-5, atol=1e-5)  # the same top-k scores (ties may swap items)
    t_ours, t_plain = best_of(ours, repeats), best_of(plain, repeats)
    return {
        "ids": n,
        "users": users,
        "seconds": round(t_ours, 4),
        "plain_seconds": round(t_plain, 4),
        "users_per_second": round(users / t_ours, 1),
        "ratio": round(t_plain / t_ours, 3),
        "same_top_k_scores": bool(agree),
        "plain_matrix_mib": round(users * n * 4 / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        rows.append(one_size(n, args.users, args.k, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    data = {
        "rows": rows,
        "threads": torch.get_num_threads(),
    }
    write_result(args.out, data)
    from bench.results import exact_scoring_section

    print(exact_scoring_section(data))


if __name__ == "__main__":
    main()
