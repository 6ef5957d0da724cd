"""Generators at full scale on 2 CPU cores: every training example, every test user or query, next to the reference
methods with 95% bootstrap intervals, and the validation recall@10 of every epoch (the learning curve, drawn to a PNG).

- beauty: sequential recommendation on Amazon Beauty, all 131,413 training examples, all 22,363 test users
  (leave-one-out, full ranking under the ID trie). IDs from `bench/beauty_ids.py --minilm` (LMIndexer on MiniLM,
  MiniLM + RQ-VAE / hierarchical / residual k-means); the generator is TIGER-style (the history as item IDs, newest
  first). About 25 minutes per ID method.
- scifact: retrieval on BEIR SciFact, train queries plus indexing pairs and document-as-query views, all 300 test
  queries; IDs: MiniLM + hierarchical k-means (made here). About 15 minutes.
Both use a tiny T5 built from scratch (d_model 64), without dropout; `key=value` overrides go after the names,
e.g. `generator.epochs=30` on a GPU box. `preset=NAME` starts the generator from a fresh T5 of another shape
(`d128`, `tiger`: see lmindexer/models/backbone.py) and `as=LABEL` keeps the run as a row of its own (its own
generator folder), beside the default one:

    .venv/bin/python -m bench.full_generators beauty:lmindexer-minilm preset=d128 as=d128 generator.epochs=20

    .venv/bin/python -m bench.full_generators beauty                       # lmindexer-minilm, then minilm-rqvae
    .venv/bin/python -m bench.full_generators beauty:lmindexer-minilm generator.epochs=4
    .venv/bin/python -m bench.full_generators scifact
    .venv/bin/python -m bench.full_generators scifact preset=d128 as=minilm-encoder generator.encoder=minilm-offline \
        generator.lr=1e-3 generator.batch_size=256 generator.dropout=0.1 generator.epochs=40 generator.patience=8
    .venv/bin/python -m bench.full_generators scifact preset=d128 as=minilm-encoder-sentences \
        generator.encoder=minilm-offline generator.view_kind=sentences generator.lr=1e-3 generator.batch_size=256 \
        generator.dropout=0.1 generator.epochs=40 generator.patience=8
(the last two: the decoder reads frozen MiniLM embeddings, README "Generative retrieval and recommendation"; the
last with sentences of each document as its pseudo-queries, not word spans).
Rows are kept in runs/bench-full-generators.json (a row run again is replaced), or in the file `rows=PATH` names
(an experiment of its own, a section of its own in RESULTS.md); a trained generator is only evaluated again. The
ID-only softmax against the whole vocabulary on SciFact, both rows in one run (RESULTS.md):

    S="preset=d128 rows=runs/bench-scifact-id-softmax.json generator.encoder=minilm-offline \\
       generator.view_kind=sentences generator.lr=1e-3 generator.batch_size=256 generator.dropout=0.1 \\
       generator.epochs=40 generator.patience=8"
    .venv/bin/python -m bench.full_generators scifact $S as=sentences-id-softmax generator.id_softmax=true
    .venv/bin/python -m bench.full_generators scifact $S as=sentences generator.id_softmax=false
(the `sentences` row of RESULTS.md ran while false was the default, so its settings do not name it). Every row of
runs/bench-full-generators.json ran with the whole-vocabulary softmax, the default then: add
`generator.id_softmax=false` to reproduce one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.results import label
from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.paths import RunContext
from lmindexer.pipeline import baselines, generator
from lmindexer.runtime import setup_logging
from lmindexer.stages.init_model import init_model
from lmindexer.stages.prepare import prepare_once
from lmindexer.train.task import HISTORY_FILE

ROOT = Path(__file__).resolve().parents[1]

BEAUTY = DATA / "amazon_beauty"
SCIFACT = DATA / "scifact" / "derived_beir"
MINILM_IDS = ROOT / "runs" / "bench-beauty-ids-minilm"
SETS = {
    "beauty": {
        "config": "beauty.yaml",
        "data": BEAUTY,
        "methods": ["lmindexer-minilm", "minilm-rqvae"],
        "tables": {
            "lmindexer-minilm": MINILM_IDS / "ids",
            "minilm-rqvae": MINILM_IDS / "ids-minilm-rqvae",
            "minilm-hkmeans": MINILM_IDS / "ids-minilm-hkmeans",
            "minilm-rkmeans": MINILM_IDS / "ids-minilm-rkmeans",
        },
        "base": [
            "output_dir=runs/bench-beauty-rec",
            f"data.input={BEAUTY}/derived/items.jsonl",
            "model.preset=tiny",
            "model.vocab_size=2000",
            "train.num_workers=2",
        ],
        "generator": [
            "generator.task=rec",
            f"generator.data={BEAUTY}/original/CIKM2020-S3Rec/data/Beauty.txt",
            "generator.history=ids",
            "generator.max_history=20",
            "generator.max_source_length=84",
            "generator.epochs=10",
            "generator.lr=3e-3",
            "generator.dropout=0.0",
            "generator.batch_size=256",
            "generator.val_examples=2000",
            "generator.patience=2",
            "evaluate.sasrec_epochs=0",  # bench/reference.py --sasrec trains the SASRec row (50 epochs)
        ],
    },
    "scifact": {
        "config": "scifact.yaml",
        "data": SCIFACT,
        "methods": ["minilm-hkmeans"],
        "tables": {"minilm-hkmeans": ROOT / "runs" / "bench-scifact-gen" / "ids-hkmeans"},
        "make_ids": ["baseline.method=hkmeans", "baseline.encoder=minilm-offline"],
        "base": [
            "output_dir=runs/bench-scifact-gen",
            f"data.input={SCIFACT}",
            "model.preset=tiny",
            "model.vocab_size=8000",
            "model.max_length=128",
            "indexer.num_positions=3",
            "indexer.codebook_size=64",
            "train.num_workers=2",
        ],
        "generator": [
            "generator.task=retrieval",
            f"generator.data={SCIFACT}",
            "generator.max_source_length=64",
            "generator.indexing_views=3",
            "generator.epochs=20",
            "generator.lr=3e-3",
            "generator.dropout=0.0",
            "generator.batch_size=128",
            "generator.patience=4",
        ],
    },
}
EVAL = ["evaluate.ks=[1,5,10]", "evaluate.split=test", "evaluate.max_queries=0"]
OUT = ROOT / "runs" / "bench-full-generators.json"
COLUMNS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]


def cell(metrics: dict, intervals: dict, c: str) -> str:
    lo, hi = intervals.get(c, (None, None))
    return f"{metrics[c]:.4f} [{lo:.4f}, {hi:.4f}]" if lo is not None else f"{metrics[c]:.4f}"


def plot(rows: list, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in rows:
        curve = [e.get("val_recall@10") for e in r["history"] if "val_recall@10" in e]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"{r['set']}: {label(r)}")
    ax.set(xlabel="epoch", ylabel="validation recall@10", title="generator learning curves")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def fresh_start(backbone: str, preset: str) -> str:
    """A T5 of shape `preset` with the backbone's tokenizer, built once beside it: a generator's start model."""
    from transformers import AutoTokenizer

    from lmindexer.models.backbone import build_t5

    out = f"{backbone}-{preset}"
    if not Path(out, "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        build_t5(preset, len(tokenizer), 0.1).save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def run_one(name: str, method: str, extra: list, preset: str = "", variant: str = "") -> dict:
    spec = SETS[name]
    config = ROOT / "configs" / spec["config"]
    base = load_config(config, spec["base"])
    prepare_once(
        base.data, RunContext.of(base), base.demo
    )  # the corpus and the tiny T5, each skipped when already there
    backbone = init_model(base.model, RunContext.of(base))
    if preset:
        extra = [f"generator.init={fresh_start(backbone, preset)}"] + extra
    table = spec["tables"][method]
    if not (table / "summary.json").exists():
        if "make_ids" not in spec:
            sys.exit(f"no {method} IDs at {table}: run .venv/bin/python -m bench.beauty_ids --minilm first")
        baselines(load_config(config, spec["base"] + spec["make_ids"] + [f"baseline.output={table}"]))
    start = time.time()
    cfg = load_config(
        config,
        spec["base"]
        + spec["generator"]
        + EVAL
        + [
            f"generator.ids={table}",
            f"generator.output={base.output_dir}/generator-{method}{variant and '-' + variant}",
        ]
        + extra,
    )
    result = generator(cfg)
    ev = result["eval"]
    history = json.loads((Path(cfg.generator.output) / HISTORY_FILE).read_text())
    return {
        "set": name,
        "ids": method,
        "variant": variant,
        "preset": preset or "tiny",
        "queries": ev["queries"],
        "metrics": ev["metrics"],
        "intervals": ev["intervals"],
        "reference": ev["reference"],
        "history": history,
        "train": result.get("train", {}),
        "trained": "train" in result,
        "seconds": round(time.time() - start),
        "settings": spec["generator"] + extra,
    }


def main() -> None:
    setup_logging()
    names = [a for a in sys.argv[1:] if "=" not in a] or ["beauty", "scifact"]
    own = {k: v for k, _, v in (a.partition("=") for a in sys.argv[1:]) if k in ("preset", "as", "rows")}
    out = ROOT / own["rows"] if "rows" in own else OUT
    extra = [a for a in sys.argv[1:] if "=" in a and a.partition("=")[0] not in own]
    todo = []
    for n in names:
        name, _, method = n.partition(":")
        if name not in SETS or (method and method not in SETS[name]["tables"]):
            sys.exit(
                f"unknown {n}: sets {sorted(SETS)}, methods " + str({k: sorted(v["tables"]) for k, v in SETS.items()})
            )
        if not SETS[name]["data"].exists():
            sys.exit(f"{name}: no data at {SETS[name]['data']}")
        todo += [(name, m) for m in ([method] if method else SETS[name]["methods"])]
    rows = json.loads(out.read_text()) if out.exists() else []
    for name, method in todo:
        row = run_one(name, method, extra, own.get("preset", ""), own.get("as", ""))
        key = (name, method, row["variant"])
        rows = [r for r in rows if (r["set"], r["ids"], r.get("variant", "")) != key] + [row]
        out.write_text(json.dumps(rows, indent=2))  # after every row: a stopped run keeps what it measured
        print(json.dumps({k: row[k] for k in ("set", "ids", "queries", "metrics", "seconds")}), flush=True)
    for name in sorted({r["set"] for r in rows}):
        mine = [r for r in rows if r["set"] == name]
        print(f"\n{name}\n| method | queries | " + " | ".join(COLUMNS) + " | seconds |")
        print("|---|---:|" + "---:|" * len(COLUMNS) + "---:|")
        for r in mine:
            print(
                f"| {label(r)} | {r['queries']} | "
                + " | ".join(cell(r["metrics"], r["intervals"], c) for c in COLUMNS)
                + f" | {r['seconds']} |"
            )
        for ref, v in mine[-1]["reference"].items():
            print(
                f"| {ref} | {mine[-1]['queries']} | "
                + " | ".join(cell(v["metrics"], v["intervals"], c) for c in COLUMNS)
                + " | |"
            )
    plot(rows, out)
    print(f"\n(rows in {out}, learning curves in {out.with_suffix('.png')})")


if __name__ == "__main__":
    main()
