"""Which change makes LMIndexer's later ID positions split their parents: an ablation on a labelled corpus.

Every row runs the real commands (prepare, learn-ids, assign-ids with suffixes, no rebalancing) with the pretrained
all-MiniLM-L6-v2 as an encoder-only backbone, every position trained, and one change switched off against `all`: the
same-prefix contrastive loss (-> in-batch negatives + one hard negative, the landed behaviour), residual scoring, L2
code selection (-> dot), the code-usage term, training of positions 2..T (-> k-means only), the staged encoders (->
one encoder computes every code, so training later positions can move earlier codes), and the landed recipe of the
first MiniLM table with all of them off. Two-stage rows embed with the same MiniLM: hierarchical k-means, residual
k-means and RQ-VAE at the same T and K. Then id-report over all of them, and one line per row with the figures that
say whether later positions split (collision rate = share of documents that need a suffix; conditional perplexity
exp H(c_t | c_<t); distinct prefixes; first-level perplexity and AMI against the labels).

    .venv/bin/python -m bench.id_ablation                       # Beauty, 2,000 seeded items, T=3, K=32
    .venv/bin/python -m bench.id_ablation --corpus agnews       # AG News train (4,000), T=3, K=32
    .venv/bin/python -m bench.id_ablation --only all,landed-recipe --baselines hkmeans   # a subset (other rows of
                                                                                  # an earlier run are kept)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from bench.beauty_ids import make_tables
from bench.results import split_section
from bench.shared_data import DATA
from lmindexer import pipeline
from lmindexer.config import load_config
from lmindexer.runtime import ensure_ray, setup_logging

ROOT = Path(__file__).resolve().parents[1]

# the recipe under test: every position trained, 2 of MiniLM's 6 layers trained (the lower 4 frozen, run once per
# batch), one joint epoch per position at a fine-tuning learning rate
ALL = [
    "indexer.contrastive=prefix",
    "indexer.prefix_similarity=cos",
    "indexer.residual=true",
    "indexer.selection=l2",
    "indexer.usage_weight=0.1",
    "indexer.usage_from=1",  # configs/beauty-minilm.yaml's recipe has 2 and the collision term: `all` keeps both off
    "indexer.collision_weight=0",
    "indexer.trained_positions=0",
    "indexer.frozen_layers=4",
    "indexer.staged_encoders=true",
]
VARIANTS = {
    "all": [],
    "no-prefix-contrast": ["indexer.contrastive=inbatch"],
    "no-residual": ["indexer.residual=false"],
    "dot-selection": ["indexer.selection=dot"],
    "no-usage-term": ["indexer.usage_weight=0"],
    "usage-from-2": ["indexer.usage_from=2"],
    "usage-from-2-collision-5": ["indexer.usage_from=2", "indexer.collision_weight=5"],
    # the same with 16 same-prefix documents per batch piece instead of 5: more of a prefix group's documents meet
    # the collision term (and the same-prefix contrast) together
    "usage-from-2-collision-5-group-16": [
        "indexer.usage_from=2",
        "indexer.collision_weight=5",
        "indexer.prefix_group=16",
    ],
    "only-position-1-trained": ["indexer.trained_positions=1"],
    "commitment-5": ["indexer.commitment_weight=5"],
    "no-staged-encoders": ["indexer.staged_encoders=false"],
    "plus-collision-term": ["indexer.collision_weight=1"],
    "plus-collision-term-5": ["indexer.collision_weight=5"],
    "codebook-only-later": ["indexer.collision_weight=5", "indexer.later_positions=codebook"],
    "landed-recipe": [
        "indexer.contrastive=inbatch",
        "indexer.residual=false",
        "indexer.selection=dot",
        "indexer.usage_weight=0",
        "indexer.trained_positions=1",
    ],
}
BASELINES = [
    ("minilm-hkmeans", "hkmeans", "minilm-offline"),
    ("minilm-rkmeans", "rkmeans", "minilm-offline"),
    ("minilm-rqvae", "rqvae", "minilm-offline"),
]


def corpus(name: str, size: int) -> tuple[Path, list]:
    """(config file, overrides) of the corpus; Beauty is cut to a seeded sample of `size` items, AG News is its
    4,000-document train file."""
    if name == "beauty":
        items = DATA / "amazon_beauty" / "derived" / "items.jsonl"
        sample = ROOT / "runs" / "data" / f"beauty-{size}.jsonl"
        if not sample.exists():
            rows = items.read_text().splitlines()
            random.Random(0).shuffle(rows)
            sample.parent.mkdir(parents=True, exist_ok=True)
            sample.write_text("\n".join(rows[:size]) + "\n")
        return ROOT / "configs" / "beauty-minilm.yaml", [f"data.input={sample}"]
    return ROOT / "configs" / "ag_news.yaml", [
        "model.backbone=encoder",
        "model.name_or_path=minilm-offline",
        "model.max_length=48",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=1",
        "indexer.lr=1e-4",
        "train.num_workers=1",
        "train.cpus_per_worker=2",
    ]


def kept(run_dir: Path) -> float:
    """Share of documents whose codes at the end of learn-ids (each position assigned right after its training) are
    the codes the final indexer gives them (assign-ids): how well training later positions kept the earlier codes."""
    import numpy as np
    import pyarrow.parquet as pq

    learned = pq.read_table(run_dir / "learn_ids" / "codes.parquet").to_pandas().set_index("doc_id")
    final = pq.read_table(run_dir / "ids" / "table").to_pandas().set_index("doc_id").loc[learned.index]
    return round(float((np.stack(learned.codes.values) == np.stack(final.codes.values)).all(1).mean()), 4)


def learn_seconds(run_dir: Path, positions: int) -> float:
    """learn-ids time from its first snapshot to the last position's assignment (right for a resumed run too)."""
    snap = run_dir / "learn_ids"
    return (snap / f"snapshot-{positions}-assign" / "indexer.json").stat().st_mtime - (
        snap / "snapshot-0-init" / "indexer.json"
    ).stat().st_mtime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", choices=["beauty", "agnews"], default="beauty")
    ap.add_argument("--size", type=int, default=2000, help="Beauty items in the sample")
    ap.add_argument("--only", default="", help="comma-separated variants (default: all of them)")
    ap.add_argument(
        "--baselines",
        default="hkmeans,rkmeans,rqvae",
        help="two-stage methods on MiniLM to add (comma-separated; empty: none)",
    )
    ap.add_argument(
        "--tag",
        default="",
        help="write to runs/ablation-<corpus>-<tag>/ (its own table in RESULTS.md) instead of the main ablation",
    )
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    setup_logging()
    config, base = corpus(args.corpus, args.size)
    base += ["indexer.num_positions=3", "indexer.codebook_size=32", *ALL, *args.overrides]
    root = ROOT / "runs" / "-".join(x for x in ("ablation", args.corpus, args.tag) if x)
    chosen = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
    ensure_ray(load_config(config, base).ray)
    tables, seconds, stable = {}, {}, {}
    for i, name in enumerate(chosen):
        wanted = [m for m in args.baselines.split(",") if m]
        runs = [b for b in BASELINES if b[1] in wanted] if i == 0 else []
        start = time.time()
        made, steps = make_tables(config, base + VARIANTS[name] + [f"output_dir={root / name}"], runs, rebalance=False)
        tables[name] = made.pop("lmindexer")
        seconds[name] = learn_seconds(root / name, 3)
        stable[name] = kept(root / name)
        tables.update(made)
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    specs = [f"{n}={p}" for n, p in tables.items()]
    report = load_config(
        config,
        base
        + [f"output_dir={root / chosen[0]}", f"report.tables=[{', '.join(specs)}]", f"report.output={root / 'report'}"],
    )
    out = pipeline.report(report)
    results = json.load(open(out["json"]))
    cfg = load_config(config, base)
    first = next(iter(results.values()))
    labels = list(first["labels"])
    title = (
        f"**{args.corpus}**: {first['documents']:,} documents, T={cfg.indexer.num_positions}, "
        f"K={cfg.indexer.codebook_size}, MiniLM backbone, one joint epoch per trained position, 1 worker with 2 "
        f"CPUs; AMI of the first code against `{labels[0]}`, of the 2-code prefix against `{labels[-1]}`."
    )
    data = {"title": title, "results": results, "seconds": seconds, "kept": stable}
    saved = root / "ablation.json"
    if args.only and saved.exists():  # rows of earlier runs that this one did not redo stay in the table
        old = json.load(open(saved))
        for key in ("results", "seconds", "kept"):
            data[key] = {**{k: v for k, v in old.get(key, {}).items() if k not in data[key]}, **data[key]}
    print("\n" + split_section(data))
    print(f"full report: {out['report']}")
    os.makedirs(root, exist_ok=True)
    json.dump(data, open(saved, "w"), indent=1)


if __name__ == "__main__":
    main()
