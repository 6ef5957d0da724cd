"""What LMIndexer's training does to its first code: the k-means start against the codes after the joint epoch.

learn-ids starts codebook 1 from k-means on the model's own (untrained) states and then trains the encoder, the
codebook and the reconstructor jointly. This reads, for finished learn-ids runs, the first code of every document
under the k-means start (snapshot-1-kmeans; recomputed here for runs made before learn-ids recorded it in
progress.json) and after training (progress.json's `1:assign`), each with its codes in use, perplexity and AMI against
the corpus's first label field, and beside them MiniLM + k-means at the same first-level perplexity (linear between
the two nearest of the k-means tables found in the runs' report.json files and the extra ones given): a positive
`vs k-means` means the code agrees with the labels better than two-stage k-means as even.

    .venv/bin/python -m bench.position1_start NAME=RUN_DIR ... [--curve REPORT.json ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lmindexer.eval.metrics import code_usage, label_scores
from lmindexer.ids.infer import indexer_outputs, load_for_inference

ROOT = Path(__file__).resolve().parents[1]


def start_figures(run: Path) -> dict:
    """The k-means start's first code of every document: codes in use, perplexity, AMI against the stored labels."""
    data = np.load(run / "learn_ids" / "tokens.npz", allow_pickle=True)
    tokens, labels = data["input_ids"], data["label"]
    model, dtype = load_for_inference(str(run / "learn_ids" / "snapshot-1-kmeans"), False)
    codes = indexer_outputs(
        model, tokens, np.zeros((len(tokens), 0), np.int64), np.arange(len(tokens)), 1, "assign", 256
    )
    usage = code_usage(codes, model.codebooks[0].weight.shape[0])
    return {**usage, "ami": label_scores(labels, codes[:, None])["ami"]}


def kmeans_points(reports: list[Path]) -> list[tuple[float, float]]:
    """(first-level perplexity, first-code AMI against the first label field) of every k-means table in `reports`."""
    points = {}
    for path in reports:
        for name, f in json.loads(path.read_text()).items():
            if "kmeans" in name and "rkmeans" not in name and f.get("labels"):
                first = next(iter(f["labels"].values()))["ami"][0]
                points[round(f["code_usage"][0]["perplexity"], 2)] = first
    return sorted(points.items())


def at_perplexity(points: list[tuple[float, float]], perplexity: float) -> float | None:
    """AMI of k-means at `perplexity`, linear between the two nearest points that bracket it (None outside)."""
    for (p0, a0), (p1, a1) in zip(points, points[1:]):
        if p0 <= perplexity <= p1:
            return round(a0 + (a1 - a0) * (perplexity - p0) / (p1 - p0), 4)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR (a learn-ids output_dir)")
    ap.add_argument("--curve", nargs="*", default=[], help="more report.json files with k-means tables")
    ap.add_argument("--json", default=str(ROOT / "runs" / "bench-position1-start.json"))
    args = ap.parse_args()
    out = Path(args.json)
    rows = json.loads(out.read_text()) if out.exists() else {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        run = Path(run)
        progress = json.loads((run / "learn_ids" / "progress.json").read_text())["metrics"]
        start = progress.get("1:kmeans", {}).get("start") or start_figures(run)
        learned = {k: progress["1:assign"][k] for k in ("used", "perplexity", "ami")}
        reports = [p for p in [run / "report" / "report.json", *map(Path, args.curve)] if p.exists()]
        points = kmeans_points(reports)
        row = {"run": str(run), "start": start, "learned": learned}
        for key in ("start", "learned"):
            ref = at_perplexity(points, row[key]["perplexity"])
            row[key]["kmeans_at_same_perplexity"] = ref
            row[key]["vs_kmeans"] = None if ref is None else round(row[key]["ami"] - ref, 4)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
