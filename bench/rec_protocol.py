"""Sequential recommendation on Amazon Beauty under one protocol, with training seeds and paired verdicts.

The protocol, the same for every row: leave-one-out (a user's last item is the test target, the one before it the
validation target); every model and every count table learns from the same interactions, each user's items before
the validation target; the candidates are all 12,101 items of the ID table; the user's own history is never
recommended; all 22,363 test users. Rows:
- the one-pass ID generator (`generator.kind=seqrec`, the `lmindexer train-generator` code path on Ray Train) on
  each ID table given, once per seed;
- SASRec (the same network with one free vector per item instead of vectors composed from IDs), once per seed;
- most-popular, last-item transitions and co-occurrence (no training, so no seeds); the count tables are also
  fitted the other way (on the test histories, which hold every validation item) to show what that changes.
A table's figures are the means over users of the per-user mean over seeds; the spread is the lowest and highest
seed's mean; a paired bootstrap of the per-user differences (the same resampled users for both rows) gives each
verdict, and a rank is claimed only where the paired interval and every seed agree (eval.ranking.seed_verdict).

    .venv/bin/python -m bench.rec_protocol --baselines                     # MiniLM + k-means / RQ-VAE / random IDs
    .venv/bin/python -m bench.rec_protocol --seeds 0,1,2 --sasrec          # every table, 3 seeds, SASRec beside
    .venv/bin/python -m bench.rec_protocol --tables lmindexer --seeds 0 --users 3000 generator.epochs=5  # a slice
    .venv/bin/python -m bench.rec_protocol --tables lmindexer,lmindexer:codes@0,random --sasrec   # per-table seeds

ID tables (`--tables`, names or name=folder): lmindexer (`configs/beauty-minilm.yaml`: learn-ids + assign-ids into
runs/beauty-minilm/ids) and the baselines `--baselines` builds with baseline-ids on the same MiniLM into
runs/beauty-minilm/ids-<name>: minilm-rkmeans, minilm-rqvae, minilm-hkmeans-p (hierarchical k-means whose K is
LMIndexer's first-level perplexity) and random. Trained models and per-user values stay under runs/bench-rec/
(a finished run is not trained again); the summary goes to bench/results/rec-beauty.json, which RESULTS.md is
rendered from (bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.provenance import write_result
from bench.results import rec_protocol_section
from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.data.generator_data import read_sequences
from lmindexer.downstream.reference import rec_baselines
from lmindexer.downstream.seqrec_training import sasrec_reference, sasrec_settings
from lmindexer.downstream.splits import sample, split_sequences
from lmindexer.eval.ranking import bootstrap_ci, paired_bootstrap, per_query, seed_verdict
from lmindexer.ids.table import read_id_table
from lmindexer.paths import RunContext
from lmindexer.pipeline import generator
from lmindexer.runtime import ensure_ray, setup_logging

ROOT = Path(__file__).resolve().parents[1]

BEAUTY = DATA / "amazon_beauty"
SEQUENCES = BEAUTY / "original" / "CIKM2020-S3Rec" / "data" / "Beauty.txt"
CONFIG = ROOT / "configs" / "beauty-minilm.yaml"
IDS = ROOT / "runs" / "beauty-minilm"
WORK = ROOT / "runs" / "bench-rec"
OUT = ROOT / "bench" / "results" / "rec-beauty.json"
KS = [5, 10]
METRICS = ["recall@10", "ndcg@10", "recall@5", "ndcg@5"]
# The generator's settings (RESULTS.md names them); `key=value` arguments override them.
GENERATOR = [
    "generator.task=rec",
    "generator.kind=seqrec",
    f"generator.data={SEQUENCES}",
    "generator.max_history=50",
    "generator.epochs=30",
    "generator.lr=1e-3",
    "generator.batch_size=128",
    "generator.dropout=0.2",
    "generator.val_examples=2000",  # validation recall@10 after every epoch, the best epoch kept
    "generator.patience=5",
    "evaluate.sasrec_epochs=0",  # SASRec is a row of its own here, once per seed, with the same validation
    "evaluate.ks=[5,10]",
    "evaluate.split=test",
    "train.log_every_steps=0",
]
SASREC_EPOCHS, SASREC_DROPOUT = 50, 0.5


def table_folder(name: str) -> Path:
    return IDS / "ids" if name == "lmindexer" else IDS / f"ids-{name}"


def make_baselines() -> None:
    """MiniLM + residual k-means, RQ-VAE and hierarchical k-means at LMIndexer's first-level perplexity, and random
    IDs, with baseline-ids on configs/beauty-minilm.yaml's corpus (T=3, K=256)."""
    from lmindexer.eval.metrics import code_usage
    from lmindexer.pipeline import baselines

    first = read_id_table(str(table_folder("lmindexer"))).codes[:, 0]
    k = round(code_usage(first, int(first.max()) + 1)["perplexity"])
    runs = {
        "minilm-rkmeans": ["baseline.method=rkmeans", "baseline.encoder=minilm-offline"],
        "minilm-rqvae": ["baseline.method=rqvae", "baseline.encoder=minilm-offline"],
        "minilm-hkmeans-p": [
            "baseline.method=hkmeans",
            "baseline.encoder=minilm-offline",
            f"indexer.codebook_size={k}",
        ],
        "random": ["baseline.method=random"],
    }
    for name, extra in runs.items():
        if not (table_folder(name) / "summary.json").exists():
            baselines(load_config(CONFIG, extra + [f"baseline.output={table_folder(name)}"]))
            print(f"{name}: {table_folder(name)}", flush=True)


def per_user(ranked: list, targets: list) -> dict:
    per = per_query(ranked, [{t: 1} for t in targets], KS)
    return {m: per[m] for m in METRICS}


def generator_row(name: str, seed: int, data: Path, extra: list, tag: str) -> tuple[dict, dict]:
    """(ranked items per user, run facts) of the one-pass generator on table `name` with `seed`."""
    out = WORK / f"gen{tag and '-' + tag}-{name}-{data.stem}-seed{seed}"
    overrides = GENERATOR + [
        f"seed={seed}",
        f"generator.data={data}",
        f"generator.ids={table_folder(name)}",
        f"generator.output={out}",
        *extra,
    ]
    cfg = load_config(CONFIG, overrides)
    start = time.time()
    generator(cfg)
    preds = pq.read_table(out / "eval-test" / "predictions.parquet").to_pydict()
    order = {u: i for i, u in enumerate(preds["key"])}
    history = json.loads((out / "train_history.json").read_text())
    facts = {
        "seconds": round(time.time() - start, 1),
        "train_seconds": round(sum(e.get("epoch_seconds", 0) for e in history), 1),
        "epochs": len(history),
        "final_loss": round(history[-1]["loss"], 4),
    }
    return {"order": order, "ranked": preds["ranked"]}, facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tables",
        default="lmindexer,minilm-rkmeans,minilm-rqvae,minilm-hkmeans-p,random",
        help="ID tables, each NAME[:COMPOSE][@SEED+SEED]: compose codes or prefixes (default --compose), seeds "
        "(default --seeds)",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sasrec", action="store_true", help="SASRec beside the generators, once per seed")
    ap.add_argument(
        "--sasrec-patience",
        default="",
        help="SASRec rows by early-stopping patience, each PATIENCE[@SEED+SEED] (0: all SASREC_EPOCHS); the default "
        "'' is the generator's patience, e.g. ',0@0' adds one seed without early stopping",
    )
    ap.add_argument("--baselines", action="store_true", help="build the baseline ID tables first")
    ap.add_argument("--users", type=int, default=0, help="a seeded sample of users for training and test (0: all)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--compose", default="prefixes", help="generator.compose of tables named without :COMPOSE")
    ap.add_argument("--variant", default="", help="a name for the key=value settings given (folders and rows)")
    args, extra = ap.parse_known_args()
    setup_logging()
    ensure_ray(load_config(CONFIG, []).ray)
    if args.baselines:
        make_baselines()
    seeds = [int(s) for s in args.seeds.split(",")]
    sequences, data = read_sequences(str(SEQUENCES)), SEQUENCES
    if args.users:  # a seeded sample of users, written once, so that every row reads the same ones
        keep = sample(sorted(sequences), args.users, 0)
        data = WORK / f"Beauty-{args.users}.txt"
        WORK.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(f"{u} {' '.join(sequences[u])}\n" for u in keep))
        sequences = read_sequences(str(data))
    table = read_id_table(str(table_folder("lmindexer")))
    parts, skipped = split_sequences(sequences, table.row)
    test = parts["test"]
    train = [h for _, h, _ in parts["valid"]]
    users = [u for u, _, _ in test]
    histories, targets = [h for _, h, _ in test], [t for _, _, t in test]
    rows: dict = {}  # name -> {"kind", "ids", "seeds": {seed: per-user}, "facts": {seed: facts}}

    def add(name, kind, seed, values, facts=None, ids=""):
        row = rows.setdefault(name, {"kind": kind, "ids": ids, "seeds": {}, "facts": {}})
        row["seeds"][seed] = values
        if facts:
            row["facts"][seed] = facts

    for method, ranked in rec_baselines(histories, max(KS), train).items():
        add(method, "count table", 0, per_user(ranked, targets))
    for method, ranked in rec_baselines(histories, max(KS), histories).items():
        add(f"{method}, counts from the test histories", "count table (other fit)", 0, per_user(ranked, targets))
    if args.sasrec:
        number = {d: i + 1 for i, d in enumerate(table.doc_ids)}
        for spec in args.sasrec_patience.split(","):  # PATIENCE[@SEED+SEED...]; "" is the generator's patience
            patience, _, only = spec.partition("@")
            for seed in [int(x) for x in only.split("+")] if only else seeds:
                saved = sasrec_row(seed, int(patience) if patience else None, data, parts, number, train, histories)
                order = {u: i for i, u in enumerate(saved["users"])}
                ranked = [saved["ranked"][order[u]] for u in users]
                name = "SASRec" if not patience else f"SASRec (patience {patience if int(patience) else 'none'})"
                add(name, "SASRec", seed, per_user(ranked, targets), saved["facts"])
    runs = []  # (seed index, table order, name, compose, seed): every table's first seed before any second seed
    for order, spec in enumerate([t for t in args.tables.split(",") if t]):  # NAME[:COMPOSE][@SEED+SEED...]
        spec, _, only = spec.partition("@")
        name, _, compose = spec.partition(":")
        for i, seed in enumerate([int(x) for x in only.split("+")] if only else seeds):
            runs.append((i, order, name, compose or args.compose, seed))
    for _, _, name, compose, seed in sorted(runs):
        tag = compose + (f"-{args.variant}" if args.variant else "")
        got, facts = generator_row(name, seed, data, extra + [f"generator.compose={compose}"], tag)
        ranked = [got["ranked"][got["order"][u]] for u in users]
        add(f"one-pass generator ({tag}) on {name} IDs", "generator", seed, per_user(ranked, targets), facts, name)
        write(rows, args, extra, data, table, train, users, skipped, seeds)  # a partial table survives a stop
    print(rec_protocol_section(write(rows, args, extra, data, table, train, users, skipped, seeds)))


def sasrec_row(seed: int, patience: int | None, data: Path, parts: dict, number: dict, train: list, histories: list):
    """{users, ranked, facts} of SASRec trained with `seed` (patience None: the generator's), cached in WORK."""
    users = [u for u, _, _ in parts["test"]]
    folder = WORK / f"sasrec{'' if patience is None else f'-p{patience}'}-{data.stem}-seed{seed}"
    path = folder.with_suffix(".json")
    if path.exists():
        return json.loads(path.read_text())
    cfg = load_config(CONFIG, GENERATOR + [f"seed={seed}", f"evaluate.sasrec_epochs={SASREC_EPOCHS}"])
    settings = sasrec_settings(cfg.generator, cfg.evaluate)
    settings.dropout = SASREC_DROPOUT
    held = sample(parts["valid"], cfg.generator.val_examples, seed)  # the generator's validation users
    validation = (
        [[number[i] for i in h] for _, h, _ in held],
        [number[t] for _, _, t in held],
        max(KS),
        cfg.generator.patience if patience is None else patience,
    )
    ranked, facts = sasrec_reference(
        cfg.train, RunContext.of(cfg), str(folder), number, train, histories, max(KS), settings, validation
    )
    history = json.loads((folder / "train_history.json").read_text())
    facts["train_seconds"] = round(sum(e.get("epoch_seconds", 0) for e in history), 1)
    facts["epochs_run"] = len(history)
    saved = {"users": users, "ranked": ranked, "facts": facts}
    path.write_text(json.dumps(saved))
    return saved


def write(rows, args, extra, data, table, train, users, skipped, seeds) -> dict:
    """Summarise the rows so far into args.out; returns the summary."""
    summary = summarise(rows, len(users))
    summary.update(
        protocol={
            "data": f"Amazon Beauty ({data.name}), leave-one-out",
            "users": len(users),
            "items": len(table.doc_ids),
            "training_sequences": len(train),
            "training_interactions": sum(len(h) for h in train),
            "history_excluded": True,
            "skipped": dict(skipped),
        },
        generator_settings=GENERATOR + extra,
        sasrec_settings={
            "epochs": SASREC_EPOCHS,
            "dropout": SASREC_DROPOUT,
            "lr": 1e-3,
            "batch_size": 128,
            "validation": "as the generator's, the best epoch kept",
            "patience": "the generator's unless the row names one (none: every epoch runs)",
        },
        seeds=seeds,
    )
    write_result(args.out, summary)
    return summary


def summarise(rows: dict, n_users: int) -> dict:
    """Every row's means, intervals and seed spread, and each row's paired verdicts against the reference rows and
    the first generator row."""
    seeded = {}
    for name, row in rows.items():
        per_seed = row["seeds"]
        mean = {m: np.mean([v[m] for v in per_seed.values()], 0) for m in METRICS}  # per user, over seeds
        seeded[name] = mean
        row["summary"] = {
            m: {
                "mean": round(float(mean[m].mean()), 4),
                "ci": [round(x, 4) for x in bootstrap_ci(mean[m])],
                "seeds": [round(float(v[m].mean()), 4) for v in per_seed.values()],
            }
            for m in METRICS
        }
    anchors = [n for n in rows if rows[n]["kind"] in ("SASRec", "count table")]
    generators = [n for n in rows if rows[n]["kind"] == "generator"]
    out_rows = []
    for name, row in rows.items():
        versus = {}
        others = anchors + generators[:1] if row["kind"] == "generator" else []
        for other in others:
            if other == name:
                continue
            d = paired_bootstrap(seeded[name]["recall@10"], seeded[other]["recall@10"])
            verdict = seed_verdict(
                d, row["summary"]["recall@10"]["seeds"], rows[other]["summary"]["recall@10"]["seeds"]
            )
            versus[other] = {"recall@10_diff": [round(x, 4) for x in d], "verdict": verdict}
        out_rows.append(
            {
                "name": name,
                "kind": row["kind"],
                "ids": row["ids"],
                "metrics": row["summary"],
                "versus": versus,
                "facts": {str(s): f for s, f in row["facts"].items()},
            }
        )
    return {"rows": out_rows, "users": n_users}


if __name__ == "__main__":
    main()
