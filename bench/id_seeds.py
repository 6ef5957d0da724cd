"""The learned first code over seeds, beside the control a user would run: MiniLM + k-means at the same perplexity.

For each LMIndexer run given (one seed each: learn-ids + assign-ids on the same config), the first code's AMI against
each label field, its perplexity and the share of items that need a suffix. Beside them, MiniLM + hierarchical
k-means (the same T and K as the recipe, K of the first level chosen so that its perplexity matches the learned
first code's mean) on two texts: cut at the recipe's `model.max_length` tokens (what LMIndexer reads) and whole (up
to MiniLM's 256 tokens, what a user's k-means reads), each over the same seeds. Per seed, a paired 95% interval of
the learned first code's AMI minus each control's (the same seed's k-means), by half-sampling the items
(bench/id_quality.py's paired_ami). No Ray: the embeddings are computed in this process and cached under --work.

    .venv/bin/python -m bench.id_seeds        # runs/beauty-minilm (seed 0), runs/beauty-minilm-s1, -s2
    .venv/bin/python -m bench.id_seeds --learn --config configs/X.yaml --runs runs/x-s0,runs/x-s1,runs/x-s2

With --learn, a run folder without a finished ID table is made first: `lmindexer run` on the config with that seed
(about 45 minutes a seed for Beauty on 2 cores), one after another.

Writes bench/results/ids-beauty-seeds.json (RESULTS.md is rendered from it by bench/results.py).
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
from bench.provenance import write_result
from lmindexer.config import load_config
from lmindexer.eval.metrics import ami, code_usage, collision_rate
from lmindexer.ids.infer import EmbedActor
from lmindexer.ids.table import read_id_table
from lmindexer.models.pretrained import resolve
from lmindexer.paths import RunContext
from lmindexer.quantizers.hkmeans import HierarchicalKMeans
from lmindexer.quantizers.kmeans import assign, kmeans
from lmindexer.runtime import setup_logging
from lmindexer.stages.id_report import corpus_labels

ROOT = Path(__file__).resolve().parents[1]
FULL_TEXT = 256  # MiniLM's own limit: the whole text of every Beauty item fits (the longest is about 90 tokens)


def embed(texts: list[str], encoder: str, max_length: int, cache: Path, batch: int = 256) -> np.ndarray:
    """[n, d] mean-pooled embeddings of `texts` at `max_length` tokens (cached at `cache`)."""
    if cache.exists():
        return np.load(cache)
    actor, out, start = EmbedActor("encoder", resolve(encoder), max_length, bf16=False), [], time.time()
    for i in range(0, len(texts), batch):
        out.append(actor({"doc_id": np.arange(i, i + batch), "text": texts[i : i + batch]})["emb"])
        if i // batch % 10 == 0:
            print(f"  embedded {i + batch}/{len(texts)}, {max_length} tokens ({time.time() - start:.0f}s)", flush=True)
    emb = np.concatenate(out).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb


def first_level_k(x: torch.Tensor, perplexity: float, seed: int, iters: int, tries: int = 5) -> tuple[int, np.ndarray]:
    """(K, its k-means codes of x) for the K whose first-level k-means perplexity comes closest to `perplexity`
    (k-means leaves some clusters small, so K must exceed the target): a few multiplicative steps from K =
    perplexity."""
    k, best = round(perplexity), None
    for _ in range(tries):
        codes = assign(x, kmeans(x, k, iters=iters, seed=seed)).numpy()
        got = code_usage(codes, k)["perplexity"]
        if best is None or abs(got - perplexity) < abs(best[1] - perplexity):
            best = (k, got, codes)
        if abs(got - perplexity) / perplexity < 0.03:
            break
        k = max(2, round(k * perplexity / got))
    return best[0], best[2]


def row(codes: np.ndarray, labels: dict[str, np.ndarray], k: int) -> dict:
    """First-code figures of one table: AMI per label field, perplexity, suffix share (all positions)."""
    first = codes[:, 0]
    return {
        "ami": {f: round(ami(y[y != ""], first[y != ""]), 4) for f, y in labels.items()},
        "perplexity": round(code_usage(first, max(k, int(first.max()) + 1))["perplexity"], 1),
        "suffix_share": round(collision_rate(codes), 4),
    }


def spread(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "beauty-minilm.yaml"))
    ap.add_argument(
        "--runs",
        default="runs/beauty-minilm,runs/beauty-minilm-s1,runs/beauty-minilm-s2",
        help="LMIndexer run folders (each with ids/), one per seed; seed i is the i-th",
    )
    ap.add_argument("--encoder", default="minilm-offline", help="the encoder of the k-means controls")
    ap.add_argument("--boot", type=int, default=100, help="random halves per paired AMI difference")
    ap.add_argument("--work", default="runs/id-seeds", help="where the embeddings are cached")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ids-beauty-seeds.json"))
    ap.add_argument("--learn", action="store_true", help="first make the runs that are missing (lmindexer run)")
    args = ap.parse_args()
    if args.learn:
        for seed, run in enumerate(args.runs.split(",")):
            if not (Path(run) / "ids" / "summary.json").exists():
                command = [sys.executable, "-m", "lmindexer.cli", "run", "--config", args.config]
                command += [f"output_dir={run}", f"seed={seed}", "generator.run_tasks=[]"]
                print("learning:", " ".join(command), flush=True)
                subprocess.run(command, check=True)
    setup_logging()
    start = time.time()
    runs = [r for r in args.runs.split(",") if (Path(r) / "ids" / "summary.json").exists()]
    missing = sorted(set(args.runs.split(",")) - set(runs))
    if missing:
        print(f"left out (no finished ID table): {', '.join(missing)}", flush=True)
    cfg = load_config(args.config, [f"output_dir={runs[0]}"])
    corpus, fields = corpus_labels(RunContext.of(cfg), cfg.data.label_fields, cfg.report.key_field)
    docs = pq.read_table(Path(runs[0]) / "corpus" / "docs", columns=["doc_id", "text"])
    doc_ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    by_doc = {f: dict(zip(corpus.column("doc_id").to_pylist(), corpus.column(f).to_pylist())) for f in fields}
    labels = {f: np.array([by_doc[f].get(d) or "" for d in doc_ids], dtype=str) for f in fields}
    finest = fields[-1]
    ic = cfg.indexer

    learned, start_to_trained = {}, {}
    for seed, run in enumerate(runs):
        log_file = Path(run) / "learn_ids" / "progress.json"  # position 1 as learn-ids logged it
        if log_file.exists():
            m = json.loads(log_file.read_text())["metrics"]
            start_to_trained[seed] = {
                "kmeans_start": {k: round(m["1:kmeans"]["start"][k], 4) for k in ("perplexity", "ami")},
                "trained": {k: round(m["1:assign"][k], 4) for k in ("perplexity", "ami")},
                "joint_epochs": len(m.get("1:joint", {}).get("epochs", [])),
            }
        t = read_id_table(str(Path(run) / "ids"))
        position = dict(zip(t.doc_ids.tolist(), range(len(t.doc_ids))))
        learned[seed] = t.codes[[position[d] for d in doc_ids]]
    target = float(np.mean([code_usage(c[:, 0], ic.codebook_size)["perplexity"] for c in learned.values()]))
    print(f"learned first code: mean perplexity {target:.1f} over {len(runs)} seed(s)", flush=True)

    rows = {"lmindexer": {s: row(c, labels, ic.codebook_size) for s, c in learned.items()}}
    controls = {"minilm-hkmeans, cut text": cfg.model.max_length, "minilm-hkmeans, whole text": FULL_TEXT}
    paired, ks = {}, {}
    for name, length in controls.items():
        x = torch.from_numpy(embed(texts, args.encoder, length, Path(args.work) / f"emb-{length}.npy"))
        rows[name], paired[name], ks[name] = {}, {}, {}
        for seed, codes in learned.items():
            k, _ = first_level_k(x, target, seed, ic.kmeans_iters)
            method = HierarchicalKMeans.fit(x, k, ic.num_positions, ic.kmeans_iters, seed)
            control = method.encode(x, 1)[0].numpy()
            rows[name][seed], ks[name][seed] = row(control, labels, k), k
            y, keep = labels[finest], labels[finest] != ""
            paired[name][seed] = {
                "ami_diff": round(ami(y[keep], codes[keep, 0]) - ami(y[keep], control[keep, 0]), 4),
                "ci": paired_ami(y[keep], codes[keep, 0], control[keep, 0], args.boot, seed),
            }
            print(f"{name} seed {seed}: K={k} {rows[name][seed]} paired {paired[name][seed]}", flush=True)
    summary = {
        name: {
            **{f"ami_{f}": spread([r["ami"][f] for r in by_seed.values()]) for f in fields},
            "perplexity": spread([r["perplexity"] for r in by_seed.values()]),
            "suffix_share": spread([r["suffix_share"] for r in by_seed.values()]),
        }
        for name, by_seed in rows.items()
    }
    out = {
        "corpus": cfg.data.input,
        "items": len(doc_ids),
        "labels": fields,
        "label": finest,
        "runs": runs,
        "seeds": len(runs),
        "recipe_max_length": cfg.model.max_length,
        "codebook_size": ic.codebook_size,
        "full_text_max_length": FULL_TEXT,
        "target_perplexity": round(target, 1),
        "control_k": ks,
        "position_1_log": {"label": fields[0], "by_seed": start_to_trained},
        "rows": rows,
        "summary": summary,
        "paired_first_code_ami": paired,
        "boot": args.boot,
        "seconds": round(time.time() - start, 1),
    }
    write_result(args.out, out)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
