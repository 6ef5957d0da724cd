"""Sequential recommendation on Amazon Beauty with the generator on ALL training examples, evaluated on ALL 22,363
test users (leave-one-out, full ranking under the ID trie), next to the reference recommenders with 95% bootstrap
intervals, and the validation recall@10 of every epoch (the learning curve, also drawn to a PNG).

The ID tables come from `bench/beauty_ids.py --minilm` (LMIndexer on MiniLM, and MiniLM + RQ-VAE / hierarchical
k-means); the generator is TIGER-style (the history as item IDs, newest first) on a tiny T5 built from scratch, sized
for a background run on 2 CPU cores (about an hour per ID method; `generator.*` overrides after the methods, e.g.
`generator.epochs=30 train.num_workers=1` on a GPU box).

    .venv/bin/python bench/beauty_rec.py                          # lmindexer-minilm, then minilm-rqvae
    .venv/bin/python bench/beauty_rec.py lmindexer-minilm generator.epochs=4
Rows are kept in runs/bench-beauty-rec.json (a method run again replaces its row); a trained generator is only
evaluated again.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmindexer.config import load_config  # noqa: E402
from lmindexer.downstream.train import HISTORY_FILE, train_generator  # noqa: E402
from lmindexer.data.prepare import prepare  # noqa: E402
from lmindexer.models.bootstrap import init_model  # noqa: E402
from lmindexer.runtime import setup_logging  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
IDS = ROOT / "runs" / "bench-beauty-ids-minilm"
TABLES = {"lmindexer-minilm": IDS / "ids", "minilm-rqvae": IDS / "ids-minilm-rqvae",
          "minilm-hkmeans": IDS / "ids-minilm-hkmeans", "minilm-rkmeans": IDS / "ids-minilm-rkmeans"}
OUT = ROOT / "runs" / "bench-beauty-rec.json"
BASE = ["output_dir=runs/bench-beauty-rec", f"data.input={BEAUTY}/derived/items.jsonl", "model.preset=tiny",
        "model.vocab_size=2000", "train.num_workers=2"]
GENERATOR = ["generator.task=rec", f"generator.data={BEAUTY}/original/CIKM2020-S3Rec/data/Beauty.txt",
             "generator.history=ids", "generator.max_history=20", "generator.max_source_length=84",
             "generator.epochs=10", "generator.lr=3e-3", "generator.dropout=0.0", "generator.batch_size=256",
             "generator.val_examples=2000", "generator.patience=2", "generator.ks=[1,5,10]",
             "generator.eval_split=test", "generator.max_eval=0"]
COLUMNS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]


def cell(metrics: dict, intervals: dict, c: str) -> str:
    lo, hi = intervals.get(c, (None, None))
    return f"{metrics[c]:.4f} [{lo:.4f}, {hi:.4f}]" if lo is not None else f"{metrics[c]:.4f}"


def plot(rows: list) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in rows:
        curve = [e.get("val_recall@10") for e in r["history"] if "val_recall@10" in e]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=r["ids"])
    ax.set_xlabel("epoch"), ax.set_ylabel("validation recall@10"), ax.set_title("Beauty generator learning curves")
    ax.legend(), fig.tight_layout(), fig.savefig(OUT.with_suffix(".png"), dpi=120)


def main() -> None:
    setup_logging()
    methods = [a for a in sys.argv[1:] if "=" not in a] or ["lmindexer-minilm", "minilm-rqvae"]
    extra = [a for a in sys.argv[1:] if "=" in a]
    unknown = [m for m in methods if m not in TABLES]
    if unknown or not BEAUTY.exists():
        sys.exit(f"unknown ID methods {unknown} (known: {sorted(TABLES)})" if unknown else f"no Beauty at {BEAUTY}")
    base = load_config(ROOT / "configs" / "beauty.yaml", BASE)
    prepare(base), init_model(base)  # the corpus and the tiny T5 (each skipped when already there)
    rows = json.loads(OUT.read_text()) if OUT.exists() else []
    for method in methods:
        if not (TABLES[method] / "summary.json").exists():
            sys.exit(f"no {method} IDs at {TABLES[method]}: run .venv/bin/python bench/beauty_ids.py --minilm first")
        start = time.time()
        cfg = load_config(ROOT / "configs" / "beauty.yaml", BASE + GENERATOR + [
            f"generator.ids={TABLES[method]}", f"generator.output=runs/bench-beauty-rec/generator-{method}"] + extra)
        result = train_generator(cfg)
        ev = result["eval"]
        history = json.loads((Path(cfg.generator.output) / HISTORY_FILE).read_text())
        row = {"ids": method, "users": ev["queries"], "metrics": ev["metrics"], "intervals": ev["intervals"],
               "reference": ev["reference"], "history": history, "train_examples": result.get("train", {}).get(
                   "examples", ""), "trained": "train" in result, "seconds": round(time.time() - start),
               "settings": GENERATOR + extra}
        rows = [r for r in rows if r["ids"] != method] + [row]
        OUT.write_text(json.dumps(rows, indent=2))  # after every method: a stopped run keeps what it measured
        print(json.dumps({k: row[k] for k in ("ids", "users", "metrics", "seconds")}), flush=True)
    print("\n| method | users | " + " | ".join(COLUMNS) + " | seconds |")
    print("|---|---:|" + "---:|" * len(COLUMNS) + "---:|")
    for r in rows:
        print(f"| generator on {r['ids']} IDs | {r['users']} | "
              + " | ".join(cell(r["metrics"], r["intervals"], c) for c in COLUMNS) + f" | {r['seconds']} |")
    for name, ref in (rows[-1]["reference"].items() if rows else []):
        print(f"| {name} | {rows[-1]['users']} | " + " | ".join(cell(ref["metrics"], ref["intervals"], c)
                                                            for c in COLUMNS) + " | |")
    plot(rows)
    print(f"\n(rows in {OUT}, learning curves in {OUT.with_suffix('.png')})")


if __name__ == "__main__":
    main()
