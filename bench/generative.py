"""Generative retrieval (SciFact) and sequential recommendation (Amazon Beauty): the same generator trained on
LMIndexer IDs, hierarchical k-means, RQ-VAE and random IDs (with --minilm, also the MiniLM-based baselines of the
[minilm] extra), printed as one table.

The ID tables come from the same commands as bench/beauty_ids.py (which they share, and reuse when present):
SciFact's are made here under runs/bench-scifact-ids, Beauty's under runs/bench-beauty-ids. Every generator starts
from the same untrained tiny T5 with the corpus tokenizer (LMIndexer's ID tokens from its codebooks), at a scale
a 2-core CPU finishes in well under an hour; the figures are far below a GPU run with t5-base and say which IDs a
generator learns to use, not how good generative retrieval can be.

    .venv/bin/python -m bench.generative                    # both
    .venv/bin/python -m bench.generative scifact            # one of them
    .venv/bin/python -m bench.generative --minilm           # plus MiniLM + k-means / RQ-VAE IDs, and on Beauty
                                                            # LMIndexer on MiniLM (bench/beauty_ids.py --minilm)
Rows of a set not run this time are kept in runs/bench-generative.json; generators already trained are only
evaluated again.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.beauty_ids import BEAUTY, baseline_runs, make_tables
from bench.beauty_ids import OVERRIDES as BEAUTY_OVERRIDES
from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.pipeline import generator
from lmindexer.runtime import setup_logging

ROOT = Path(__file__).resolve().parents[1]

SCIFACT = DATA / "scifact" / "derived_beir"
MINILM = "--minilm" in sys.argv  # also the MiniLM-based baselines (the [minilm] extra)
OUT = ROOT / "runs" / "bench-generative.json"
COLUMNS = ["recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10"]

SETS = {
    "scifact": {
        "config": ROOT / "configs" / "scifact.yaml",
        "data": SCIFACT,
        "ids": [
            "output_dir=runs/bench-scifact-ids",
            f"data.input={SCIFACT}",
            "model.preset=tiny",
            "model.vocab_size=8000",
            "model.max_length=64",
            "indexer.num_positions=3",
            "indexer.codebook_size=256",
            "indexer.continuous_epochs=1",
            "indexer.joint_epochs=2",
            "indexer.batch_size=32",
        ],
        "generator": [
            "generator.task=retrieval",
            f"generator.data={SCIFACT}",
            "generator.max_source_length=64",
            "generator.epochs=10",
            "generator.lr=3e-3",
            "generator.batch_size=128",
            "evaluate.ks=[1,5,10]",
            "evaluate.split=test",
        ],
    },
    "beauty": {
        "config": ROOT / "configs" / "beauty.yaml",
        "data": BEAUTY,
        "ids": BEAUTY_OVERRIDES,
        "generator": [
            "generator.task=rec",
            f"generator.data={BEAUTY}/original/CIKM2020-S3Rec/data/Beauty.txt",
            "generator.history=ids",
            "generator.max_history=15",
            "generator.max_source_length=64",
            "generator.max_train_examples=12000",
            "generator.epochs=3",
            "generator.lr=3e-3",
            "generator.batch_size=256",
            "evaluate.max_queries=2000",
            "evaluate.ks=[1,5,10]",
            "evaluate.split=test",
            "evaluate.sasrec_epochs=0",  # bench/reference.py --sasrec trains the SASRec row
        ],
    },
}


def run_set(name: str, done: list) -> list:
    spec = SETS[name]
    if not Path(spec["data"]).exists():
        sys.exit(f"{name}: data not found at {spec['data']}")
    runs = [
        r
        for r in baseline_runs(load_config(spec["config"], spec["ids"]), methods=("hkmeans", "rqvae"))
        if MINILM or not r[0].startswith("minilm-")
    ]
    tables, _ = make_tables(spec["config"], spec["ids"], runs, rebalance=False)
    if MINILM and name == "beauty":  # LMIndexer on the MiniLM backbone, from `bench/beauty_ids.py --minilm`
        minilm = ROOT / "runs" / "bench-beauty-ids-minilm" / "ids"
        if not (minilm / "summary.json").exists():
            sys.exit(f"no MiniLM LMIndexer IDs at {minilm}: run .venv/bin/python -m bench.beauty_ids --minilm first")
        tables["lmindexer-minilm"] = str(minilm)
    rows = []
    outputs = {"lmindexer-minilm": ["generator.output=runs/bench-beauty-ids/generator-rec-lmindexer-minilm"]}
    for method, table in tables.items():
        start = time.time()
        result = generator(
            load_config(
                spec["config"], spec["ids"] + spec["generator"] + [f"generator.ids={table}"] + outputs.get(method, [])
            )
        )
        ev = result["eval"]
        rows.append(
            {
                "set": name,
                "ids": method,
                "queries": ev["queries"],
                **{c: ev["metrics"][c] for c in COLUMNS},
                "train_examples": result.get("train", {}).get("examples", ""),
                "trained": "train" in result,  # False: an earlier run's generator, only evaluated here
                "seconds": round(time.time() - start),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        OUT.write_text(json.dumps(done + rows, indent=2))  # after every row: a stopped run keeps what it measured
    return rows


def main() -> None:
    setup_logging()
    names = [a for a in sys.argv[1:] if a in SETS] or list(SETS)
    rows = [r for r in json.loads(OUT.read_text()) if r["set"] not in names] if OUT.exists() else []  # other sets
    for n in names:
        rows += run_set(n, rows)
    print("\n| set | IDs | queries | " + " | ".join(COLUMNS) + " | train examples | seconds |")
    print("|---|---|---:|" + "---:|" * len(COLUMNS) + "---:|---:|")
    for r in rows:
        print(
            f"| {r['set']} | {r['ids']} | {r['queries']} | "
            + " | ".join(f"{r[c]:.4f}" for c in COLUMNS)
            + f" | {r['train_examples']} | {r['seconds']} |"
        )
    print(f"\n(rows also in {OUT})")


if __name__ == "__main__":
    main()
