"""The learned first code over joint epochs, beside MiniLM + k-means at the same perplexity, over seeds.

Each run folder holds position 1 of the recipe trained for several joint epochs with `indexer.epoch_figures=true`
(after every epoch, code 1 of every item with dropout off, and its AMI against the corpus's first label field).
Point 0 is the k-means start on the model's own states. Beside every point: MiniLM (whole text, up to 256 tokens,
what a user's k-means reads) + k-means with K chosen so its perplexity matches the point's, the same seed. Where the
run also assigned code 1 after its last epoch (`--phase 1:assign`), a paired 95% interval of the last epoch's AMI
minus the control's, by half-sampling the items (bench/id_quality.py's paired_ami). No Ray.

Make the runs (about 30 minutes a seed for Beauty on 2 CPU cores), then this:

    for seed in 0 1 2; do a="output_dir=runs/curve-s$seed seed=$seed data.label_fields=[category_l3,category_l2] \\
        indexer.joint_epochs=5 indexer.epoch_figures=true"
      lmindexer prepare --config configs/beauty-minilm.yaml $a
      for step in 1:kmeans 1:joint 1:assign; do lmindexer learn-ids --config configs/beauty-minilm.yaml --phase $step $a
      done; done
    .venv/bin/python -m bench.id_curves

Writes bench/results/ids-beauty-curves.json (RESULTS.md is rendered from it by bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.id_quality import paired_ami
from bench.id_seeds import FULL_TEXT, embed, first_level_k, spread
from bench.provenance import provenance
from lmindexer.config import load_config
from lmindexer.eval.metrics import ami, code_usage
from lmindexer.eval.report import corpus_labels

ROOT = Path(__file__).resolve().parents[1]
SEEDS_TABLE = ROOT / "bench" / "results" / "ids-beauty-seeds.json"  # the one-epoch runs, for the check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "beauty-minilm.yaml"))
    ap.add_argument("--runs", default="runs/curve-s0,runs/curve-s1,runs/curve-s2", help="one run per seed, in order")
    ap.add_argument(
        "--label-fields",
        default="category_l3,category_l2",
        help="the runs' data.label_fields, in their order: their codes are scored against the first",
    )
    ap.add_argument("--encoder", default="minilm-offline", help="the encoder of the k-means control")
    ap.add_argument("--boot", type=int, default=100, help="random halves per paired AMI difference")
    ap.add_argument("--work", default="runs/id-seeds", help="where the embeddings are cached")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ids-beauty-curves.json"))
    args = ap.parse_args()
    start = time.time()
    runs = [r for r in args.runs.split(",") if (Path(r) / "learn_ids" / "progress.json").exists()]
    label = args.label_fields.split(",")[0]
    cfg = load_config(args.config, [f"output_dir={runs[0]}", f"data.label_fields=[{args.label_fields}]"])
    corpus, _ = corpus_labels(cfg)
    docs = pq.read_table(Path(runs[0]) / "corpus" / "docs", columns=["doc_id", "text", "label"])
    doc_ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    by_doc = dict(zip(corpus.column("doc_id").to_pylist(), corpus.column(label).to_pylist()))
    y = np.array([by_doc.get(d) or "" for d in doc_ids], dtype=str)
    if list(y) != [x or "" for x in docs.column("label").to_pylist()]:  # learn-ids scored against `label`
        raise SystemExit(f"{runs[0]} was not prepared with data.label_fields=[{args.label_fields}]")
    keep = y != ""
    x = torch.from_numpy(embed(texts, args.encoder, FULL_TEXT, Path(args.work) / f"emb-{FULL_TEXT}.npy"))
    iters, size = cfg.indexer.kmeans_iters, cfg.indexer.codebook_size
    one_epoch = {}
    if SEEDS_TABLE.exists():
        table = json.loads(SEEDS_TABLE.read_text())["rows"]["lmindexer"]
        one_epoch = {int(s): r["ami"].get(label) for s, r in table.items()}

    by_seed = {}
    for seed, run in enumerate(runs):
        m = json.loads((Path(run) / "learn_ids" / "progress.json").read_text())["metrics"]
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
            print(f"seed {seed} epoch {p['epoch']}: {p}", flush=True)
        result = {"run": run, "points": points, "one_epoch_run_ami": one_epoch.get(seed)}
        codes_file = Path(run) / "learn_ids" / "codes.npy"
        if "1:assign" in m and codes_file.exists():  # code 1 after the last epoch, for a paired interval
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
        keys = ("ami", "perplexity", "control_ami", "lead")
        summary.append({"epoch": i, "seeds": len(at), **{k: spread([p[k] for p in at]) for k in keys}})
    out = {
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
        **provenance(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
