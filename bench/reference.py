"""Reference figures a generator must beat, in the harness and metrics the generators use: Amazon Beauty next-item
recommendation by most popular, last-item transition counts and recent-item co-occurrence, on every test user
(leave-one-out, full ranking over all items, the user's history left out), and SciFact retrieval by BM25 on every
test query, with 95% bootstrap intervals.

    .venv/bin/python -m bench.reference                 # test split (last item); --split valid for the one before
    .venv/bin/python -m bench.reference --sasrec        # plus SASRec trained with Ray Train (minutes)

Without --sasrec: no Ray and no training, seconds on 2 cores. Writes runs/bench-reference.json (bench/results.py
puts it in RESULTS.md). SASRec and the count tables learn from every user's sequence without its last two items
(validation and test targets held out), as the SASRec paper trains. bench/rec_protocol.py runs these rows with
seeds and paired verdicts beside the one-pass generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.shared_data import DATA
from lmindexer.data.generator_data import read_qrels, read_queries, read_sequences
from lmindexer.downstream.reference import bm25_rank, rec_baselines
from lmindexer.downstream.splits import split_sequences
from lmindexer.eval.ranking import bootstrap_ci, per_query

ROOT = Path(__file__).resolve().parents[1]

BEAUTY = DATA / "amazon_beauty" / "original" / "CIKM2020-S3Rec" / "data" / "Beauty.txt"
SCIFACT = DATA / "scifact" / "derived_beir"
OUT = ROOT / "runs" / "bench-reference.json"
KS = [5, 10]


def row(method: str, ranked: list, relevant: list) -> dict:
    """Mean and 95% bootstrap interval of each metric."""
    per = per_query(ranked, relevant, KS)
    out = {"method": method, "queries": len(ranked)}
    for k in ("recall@5", "ndcg@5", "recall@10", "ndcg@10"):
        lo, hi = bootstrap_ci(per[k])
        out[k] = [round(float(per[k].mean()), 4), round(lo, 4), round(hi, 4)]
    return out


def sasrec(split: dict, items: set, args) -> tuple[list, dict]:
    """(ranked item lists for the evaluated examples, settings): SASRec as `lmindexer evaluate` trains it, on the
    shared Ray Train loop (1 DDP worker with both cores)."""
    from lmindexer.config import load_config
    from lmindexer.downstream.seqrec_training import SeqRecSettings, sasrec_reference
    from lmindexer.paths import RunContext
    from lmindexer.runtime import ensure_ray

    run = load_config(
        overrides=[
            f"output_dir={ROOT / 'runs' / 'bench-sasrec'}",
            "train.num_workers=1",
            "train.cpus_per_worker=2",
            "train.engine=ddp",
            "train.log_every_steps=0",
        ]
    )
    ensure_ray(run.ray)
    return sasrec_reference(
        run.train,
        RunContext.of(run),
        str(ROOT / "runs" / "bench-sasrec" / "sasrec"),
        {i: n for n, i in enumerate(sorted(items, key=int), 1)},
        [h for _, h, _ in split["valid"]],  # each user's items before the validation target
        [h for _, h, _ in split[args.split]],
        max(KS),
        SeqRecSettings(args.sasrec_epochs, dropout=args.sasrec_dropout),
    )


def scifact(split: str) -> dict:
    """BM25 over the 5,183 abstracts (title + text) for every query of the split's qrels."""
    start = time.time()
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries, qrels = read_queries(str(SCIFACT)), read_qrels(str(SCIFACT), split)
    keys = [q for q in qrels if q in queries]
    ranked = bm25_rank(
        [d["_id"] for d in docs],
        [f"{d.get('title', '')} {d['text']}" for d in docs],
        [queries[q] for q in keys],
        max(KS),
    )
    return {
        "data": "BEIR SciFact (claims -> abstracts)",
        "split": split,
        "queries": len(keys),
        "documents": len(docs),
        "rows": [row("BM25 (bm25s)", ranked, [qrels[q] for q in keys])],
        "seconds": round(time.time() - start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["test", "valid"], default="test")
    ap.add_argument("--sasrec", action="store_true", help="also train and evaluate SASRec (Ray Train)")
    ap.add_argument("--sasrec-epochs", type=int, default=50)
    ap.add_argument("--sasrec-dropout", type=float, default=0.5)
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
    train = [h for _, h, _ in split["valid"]]  # the interactions every trained model learns from
    rows = [row(method, ranked, relevant) for method, ranked in rec_baselines(histories, max(KS), train).items()]
    if args.sasrec:
        ranked, settings = sasrec(split, items, args)
        rows.append({**row(f"SASRec ({settings['epochs']} epochs, Ray Train)", ranked, relevant), "settings": settings})
    data = {
        "beauty": {
            "data": "Amazon Beauty (CIKM2020-S3Rec Beauty.txt)",
            "split": args.split,
            "users": len(examples),
            "items": len(items),
            "skipped": dict(skipped),
            "rows": rows,
            "seconds": round(time.time() - start, 1),
        }
    }
    if SCIFACT.exists():
        data["scifact"] = scifact("test")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1))
    from bench.results import reference_section

    print(reference_section(data))


if __name__ == "__main__":
    main()
