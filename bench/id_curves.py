"""The learned first code over joint epochs, beside MiniLM + k-means at the same perplexity, over seeds and corpora.

Each run folder holds position 1 of configs/beauty-minilm.yaml's recipe trained for several joint epochs with
`indexer.epoch_figures=true` (after every epoch, code 1 of every item with dropout off, its AMI against the corpus's
first label field, and the codes themselves). Point 0 is the k-means start on the model's own states. Beside every
point: MiniLM (whole text, up to 256 tokens, what a user's k-means reads) + k-means with K chosen so its perplexity
matches the point's, the same seed (and the same on the text cut where the recipe cuts it: what the cut costs k-means);
where the run saved that epoch's codes, a paired 95% interval of the point's AMI minus the whole-text control's, by
half-sampling the items (bench/id_quality.py's paired_ami). No Ray here; `--make` first runs
the missing runs with the lmindexer commands (prepare, then learn-ids --phase 1:kmeans and 1:joint), one after another.

    .venv/bin/python -m bench.id_curves --corpus dbpedia --make 2   # 3 seeds, 2 joint epochs each, then the table
    .venv/bin/python -m bench.id_curves --corpus ag_news --make 2
    .venv/bin/python -m bench.id_curves                              # Amazon Beauty, runs/curve-s0..s2
    .venv/bin/python -m bench.id_curves --corpus ag_news --make 2 --variant nb1 indexer.neighbour_weight=1

About 30 minutes a seed for 5 epochs on Beauty (12,101 items), 16 for 2 on DBpedia-14 (14,000), 6 for 2 on AG News
(4,000), on 2 CPU cores. Writes bench/results/ids-<corpus>-curves.json (RESULTS.md is rendered from it by
bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.id_quality import paired_ami
from bench.id_seeds import FULL_TEXT, embed, first_level_k, spread
from bench.provenance import write_result
from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.eval.metrics import ami, code_usage
from lmindexer.paths import RunContext
from lmindexer.stages.id_report import corpus_labels

ROOT = Path(__file__).resolve().parents[1]
SEEDS_TABLE = ROOT / "bench" / "results" / "ids-beauty-seeds.json"  # Beauty's one-epoch runs, for the check


def _csv(path: Path) -> list[str]:
    """A header-less `label,text` CSV of ../shared/data/text_labeled: ids are <file>:<line>, one label level."""
    return [
        f"data.input={path}",
        "data.csv_columns=[label, text]",
        "data.id_field='@row'",
        "data.text_fields=[text]",
        "data.label_fields=[label]",
    ]


# each corpus: the overrides of configs/beauty-minilm.yaml that read it, its label fields (scored against the
# first), its runs' folder prefix (seed i is <prefix>-si) and where its MiniLM embeddings are cached
CORPORA = {
    "beauty": {
        "overrides": ["data.label_fields=[category_l3,category_l2]"],
        "label_fields": "category_l3,category_l2",
        "runs": "runs/curve",
        "work": "runs/id-seeds",
    },
    "dbpedia": {
        "overrides": _csv(DATA / "text_labeled" / "dbpedia14" / "train.csv"),
        "label_fields": "label",
        "runs": "runs/curve-dbpedia",
        "work": "runs/id-seeds-dbpedia",
    },
    "ag_news": {
        "overrides": _csv(DATA / "text_labeled" / "ag_news" / "train.csv"),
        "label_fields": "label",
        "runs": "runs/curve-ag_news",
        "work": "runs/id-seeds-ag_news",
    },
}


def make_run(config: str, overrides: list[str], run: str, seed: int, epochs: int) -> None:
    """Position 1 of the recipe with `epochs` joint epochs and their figures, into `run` (the lmindexer commands)."""
    extra = [f"output_dir={run}", f"seed={seed}", f"indexer.joint_epochs={epochs}", "indexer.epoch_figures=true"]
    base = [sys.executable, "-m", "lmindexer.cli"]
    for command in (["prepare"], ["learn-ids", "--phase", "1:kmeans"], ["learn-ids", "--phase", "1:joint"]):
        command = base + command + ["--config", config] + overrides + extra
        print("running:", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def epoch_codes(run: str, epoch: int) -> np.ndarray | None:
    """Code 1 of every document after joint epoch `epoch`, where the run saved it (indexer.epoch_figures)."""
    path = Path(run) / "learn_ids" / "snapshot-1-joint" / f"epoch-{epoch}-code.npy"
    return np.load(path) if path.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="beauty", help="which labelled corpus")
    ap.add_argument("--config", default=str(ROOT / "configs" / "beauty-minilm.yaml"), help="the recipe")
    ap.add_argument("--seeds", type=int, default=3, help="runs, one per seed (0, 1, ...)")
    ap.add_argument(
        "--variant",
        default="",
        help="a name for the overrides that follow (e.g. --variant l64 model.max_length=64): its own runs "
        "(runs/curve-<corpus>-<variant>-s<seed>) and table (ids-<corpus>-<variant>-curves.json)",
    )
    ap.add_argument("overrides", nargs="*", help="config overrides of the variant (key=value)")
    ap.add_argument("--make", type=int, default=0, metavar="EPOCHS", help="first make the missing runs, EPOCHS each")
    ap.add_argument("--encoder", default="minilm-offline", help="the encoder of the k-means control")
    ap.add_argument("--boot", type=int, default=100, help="random halves per paired AMI difference")
    args = ap.parse_args()
    corpus_set = CORPORA[args.corpus]
    if bool(args.variant) != bool(args.overrides):
        raise SystemExit("--variant NAME and its overrides go together")
    overrides, tag = corpus_set["overrides"] + args.overrides, f"-{args.variant}" if args.variant else ""
    all_runs = [f"{corpus_set['runs']}{tag}-s{seed}" for seed in range(args.seeds)]
    if args.make:
        for seed, run in enumerate(all_runs):
            if not _progress(run).exists() or "1:joint" not in json.loads(_progress(run).read_text())["metrics"]:
                make_run(args.config, overrides, run, seed, args.make)
    start = time.time()
    runs = [r for r in all_runs if _progress(r).exists()]
    if not runs:
        raise SystemExit(f"no run of {args.corpus} yet ({', '.join(all_runs)}): make them with --make EPOCHS")
    label_fields = corpus_set["label_fields"]
    label = label_fields.split(",")[0]
    cfg = load_config(args.config, overrides + [f"output_dir={runs[0]}"])
    corpus, _ = corpus_labels(RunContext.of(cfg), cfg.data.label_fields, cfg.report.key_field)
    docs = pq.read_table(Path(runs[0]) / "corpus" / "docs", columns=["doc_id", "text", "label"])
    doc_ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    by_doc = dict(zip(corpus.column("doc_id").to_pylist(), corpus.column(label).to_pylist()))
    y = np.array([by_doc.get(d) or "" for d in doc_ids], dtype=str)
    if list(y) != [x or "" for x in docs.column("label").to_pylist()]:  # learn-ids scored against `label`
        raise SystemExit(f"{runs[0]} was not prepared with data.label_fields=[{label_fields}]")
    keep = y != ""
    work, cut = Path(corpus_set["work"]), cfg.model.max_length
    x = torch.from_numpy(embed(texts, args.encoder, FULL_TEXT, work / f"emb-{FULL_TEXT}.npy"))
    x_cut = torch.from_numpy(embed(texts, args.encoder, cut, work / f"emb-{cut}.npy"))  # what the recipe reads
    iters, size = cfg.indexer.kmeans_iters, cfg.indexer.codebook_size
    one_epoch = {}
    if SEEDS_TABLE.exists() and args.corpus == "beauty" and not args.variant:
        table = json.loads(SEEDS_TABLE.read_text())["rows"]["lmindexer"]
        one_epoch = {int(s): r["ami"].get(label) for s, r in table.items()}

    by_seed = {}
    for seed, run in enumerate(runs):
        m = json.loads(_progress(run).read_text())["metrics"]
        begin = m["1:kmeans"]["start"]
        points = [{"epoch": 0, "ami": begin["ami"], "perplexity": round(begin["perplexity"], 1)}]
        for e in m.get("1:joint", {}).get("epochs", []):
            points.append(
                {
                    "epoch": e["epoch"],
                    "ami": e["assign_ami"],
                    "perplexity": round(e["assign_perplexity"], 1),
                    "recon": round(e["recon"], 4),
                    "train_perplexity": round(e["code_perplexity"], 1),
                    "epoch_seconds": e["epoch_seconds"],
                }
            )
        for p in points:
            k, codes = first_level_k(x, p["perplexity"], seed, iters)
            p.update(control_k=k, control_ami=round(ami(y[keep], codes[keep]), 4))
            p["lead"] = round(p["ami"] - p["control_ami"], 4)
            _, cut_codes = first_level_k(x_cut, p["perplexity"], seed, iters)
            p["control_cut_ami"] = round(ami(y[keep], cut_codes[keep]), 4)
            ours = epoch_codes(run, p["epoch"]) if p["epoch"] else None
            if ours is not None:
                p["ci"] = paired_ami(y[keep], ours[keep], codes[keep], args.boot, seed)
            print(f"seed {seed} epoch {p['epoch']}: {p}", flush=True)
        result = {"run": run, "points": points, "one_epoch_run_ami": one_epoch.get(seed)}
        codes_file = Path(run) / "learn_ids" / "codes.npy"
        if "ci" not in points[-1] and "1:assign" in m and codes_file.exists():  # code 1 after the last epoch
            ours = np.load(codes_file)[:, 0]
            last = points[-1]
            perplexity = code_usage(ours, size)["perplexity"]
            k, theirs = first_level_k(x, perplexity, seed, iters)
            result["last_epoch_paired"] = {
                "epoch": last["epoch"],
                "control_k": k,
                "ami_diff": round(ami(y[keep], ours[keep]) - ami(y[keep], theirs[keep]), 4),
                "ci": paired_ami(y[keep], ours[keep], theirs[keep], args.boot, seed),
            }
            print(f"seed {seed} last epoch paired: {result['last_epoch_paired']}", flush=True)
        by_seed[seed] = result
    epochs = max(len(r["points"]) for r in by_seed.values())
    summary = []
    for i in range(epochs):  # every point over the seeds that reached it
        at = [r["points"][i] for r in by_seed.values() if len(r["points"]) > i]
        keys = ("ami", "perplexity", "control_ami", "lead") + (
            ("control_cut_ami",) if "control_cut_ami" in at[0] else ()
        )
        summary.append({"epoch": i, "seeds": len(at), **{k: spread([p[k] for p in at]) for k in keys}})
    out = {
        "corpus_name": args.corpus,
        "variant": args.variant,
        "overrides": args.overrides,
        "corpus": cfg.data.input,
        "items": len(doc_ids),
        "label": label,
        "runs": runs,
        "seeds": len(runs),
        "recipe_max_length": cfg.model.max_length,
        "full_text_max_length": FULL_TEXT,
        "codebook_size": size,
        "by_seed": by_seed,
        "summary": summary,
        "boot": args.boot,
        "seconds": round(time.time() - start, 1),
    }
    target = ROOT / "bench" / "results" / f"ids-{args.corpus.replace('_', '-')}{tag}-curves.json"
    write_result(target, out)
    print(json.dumps(summary, indent=1))


def _progress(run: str) -> Path:
    return Path(run) / "learn_ids" / "progress.json"


if __name__ == "__main__":
    main()
