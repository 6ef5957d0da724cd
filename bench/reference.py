"""Reference figures a generator must beat, in the harness and metrics the generators use: Amazon Beauty next-item
recommendation by most popular, last-item transition counts and recent-item co-occurrence, on every test user
(leave-one-out, full ranking over all items, the user's history left out), with 95% bootstrap intervals.

    .venv/bin/python bench/reference.py                 # test split (last item); --split valid for the one before

No Ray and no training: seconds on 2 cores. Writes runs/bench-reference.json (bench/results.py puts it in RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmindexer.data.loaders import read_sequences  # noqa: E402
from lmindexer.downstream.baselines import rec_baselines  # noqa: E402
from lmindexer.downstream.tasks import split_sequences  # noqa: E402
from lmindexer.eval.ranking import bootstrap_ci, per_query  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty" / "original" / "CIKM2020-S3Rec" / "data" / "Beauty.txt"
OUT = ROOT / "runs" / "bench-reference.json"
KS = [5, 10]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["test", "valid"], default="test")
    args = ap.parse_args()
    if not BEAUTY.exists():
        sys.exit(f"Amazon Beauty sequences are not at {BEAUTY}")
    start = time.time()
    sequences = read_sequences(str(BEAUTY))
    items = {i for s in sequences.values() for i in s}
    split, skipped = split_sequences(sequences, items)
    examples = split[args.split]
    histories = [h for _, h, _ in examples]
    relevant = [{target: 1} for _, _, target in examples]
    rows = []
    for method, ranked in rec_baselines(histories, max(KS)).items():
        per = per_query(ranked, relevant, KS)
        row = {"method": method, "users": len(examples)}
        for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
            lo, hi = bootstrap_ci(per[k])
            row[k] = [round(float(per[k].mean()), 4), round(lo, 4), round(hi, 4)]
        rows.append(row)
    data = {"data": "Amazon Beauty (CIKM2020-S3Rec Beauty.txt)", "split": args.split, "users": len(examples),
            "items": len(items), "skipped": dict(skipped), "rows": rows, "seconds": round(time.time() - start, 1)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1))
    sys.path.insert(0, str(ROOT / "bench"))
    from results import reference_section

    print(reference_section(data))


if __name__ == "__main__":
    main()
