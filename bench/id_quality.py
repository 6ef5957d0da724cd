"""ID quality of finished ID tables on one labelled corpus, with paired intervals, into a committed JSON.

Reads tables that already exist (learn-ids + assign-ids, baseline-ids: bench/rec_protocol.py --baselines builds
Beauty's) and the run's prepared corpus, and runs id-report over them. Beside each table's figures it writes a
paired 95% interval of the first code's AMI difference from the first table's, by half-sampling the items (the
same items for both tables; paired_ami says how), so a verdict says whether a lead is larger than the noise of
which items the corpus happens to hold. It is one training run per
table: the spread between training seeds is not in the interval.

    .venv/bin/python -m bench.id_quality                        # Amazon Beauty: runs/beauty-minilm's tables
    .venv/bin/python -m bench.id_quality --boot 50 --tables lmindexer=runs/beauty-minilm/ids,random=...

Writes bench/results/ids-beauty.json (RESULTS.md is rendered from it by bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.provenance import write_result
from bench.shared_data import DATA
from lmindexer.config import load_config
from lmindexer.eval.metrics import ami
from lmindexer.paths import RunContext
from lmindexer.pipeline import report as id_report
from lmindexer.runtime import setup_logging
from lmindexer.stages.id_report import corpus_labels, read_table

ROOT = Path(__file__).resolve().parents[1]

CONFIG = ROOT / "configs" / "beauty-minilm.yaml"
RUN = ROOT / "runs" / "beauty-minilm"
PEERS = DATA / "amazon_beauty" / "original" / "CollisionGenRec" / "data" / "Beauty" / "indexes"
TABLES = {
    "lmindexer": RUN / "ids",
    "minilm-hkmeans-p": RUN / "ids-minilm-hkmeans-p",
    "minilm-rkmeans": RUN / "ids-minilm-rkmeans",
    "minilm-rqvae": RUN / "ids-minilm-rqvae",
    "random": RUN / "ids-random",
    "published-rqvae": PEERS / "rqvae_native" / "Beauty.index.json",
    "published-rkmeans": PEERS / "rkmeans_native" / "Beauty.index.json",
    "published-letter": PEERS / "letter_native" / "Beauty.index.json",
}


def paired_ami(labels: np.ndarray, first: np.ndarray, other: np.ndarray, boot: int, seed: int = 0) -> list[float]:
    """95% interval of AMI(labels, first) - AMI(labels, other) by half-sampling: random halves of the items without
    replacement, the same half for both tables. A half drawn without replacement varies as much as the whole
    corpus would between draws (the finite-population factor 1 - 1/2 cancels the halved size), so the halves'
    spread, centred on the whole corpus' difference, is the interval. Not a bootstrap: a resample that repeats
    items inflates the mutual information of fine partitions past AMI's chance correction (random IDs gain 0.54),
    and a half's AMI is a little lower than the whole's, hence the centring."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    whole = ami(labels, first) - ami(labels, other)
    diffs = []
    for _ in range(boot):
        i = rng.permutation(n)[: n // 2]
        diffs.append(ami(labels[i], first[i]) - ami(labels[i], other[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5]) - np.mean(diffs) + whole
    return [round(float(lo), 4), round(float(hi), 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default="", help="NAME=PATH,... (default: Beauty's, the first is the reference)")
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--boot", type=int, default=100, help="random halves per paired AMI difference")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ids-beauty.json"))
    args, extra = ap.parse_known_args()
    setup_logging()
    tables = dict(t.split("=", 1) for t in args.tables.split(",")) if args.tables else TABLES
    tables = {n: str(p) for n, p in tables.items() if Path(p).exists()}
    missing = set(TABLES if not args.tables else ()) - set(tables)
    if missing:
        print(f"left out (not built on this machine): {', '.join(sorted(missing))}", flush=True)
    keyed = ["report.key_field=letter_item_id"] if any(p.endswith(".json") for p in tables.values()) else []
    specs = ", ".join(f"{n}={p}" for n, p in tables.items())
    cfg = load_config(args.config, extra + keyed + [f"report.tables=[{specs}]"])
    start = time.time()
    report = json.loads(Path(id_report(cfg)["json"]).read_text())
    corpus, fields = corpus_labels(RunContext.of(cfg), cfg.data.label_fields, cfg.report.key_field)
    keymap = (
        {k: d for k, d in zip(corpus.column("key").to_pylist(), corpus.column("doc_id").to_pylist()) if k is not None}
        if keyed
        else None
    )
    label = fields[-1]  # the finest label level
    by_doc = dict(zip(corpus.column("doc_id").to_pylist(), corpus.column(label).to_pylist()))
    firsts = {}
    for name, path in tables.items():
        t = read_table(f"{name}={path}", cfg.storage, keymap if path.endswith(".json") else None, cfg.report.key_field)
        firsts[name] = dict(zip(t.doc_ids.astype(str).tolist(), t.prefix_groups[0].tolist()))
    docs = sorted(d for d in set.intersection(*(set(f) for f in firsts.values())) if by_doc.get(d))
    y = np.array([by_doc[d] for d in docs], dtype=str)
    codes = {n: np.array([f[d] for d in docs]) for n, f in firsts.items()}
    reference = next(iter(tables))
    paired = {
        other: {
            "ami_diff": round(ami(y, codes[reference]) - ami(y, codes[other]), 4),
            "ci": paired_ami(y, codes[reference], codes[other], args.boot),
        }
        for other in tables
        if other != reference
    }
    out = {
        "corpus": cfg.data.input,
        "label": label,
        "labels": fields,
        "reference": reference,
        "paired_items": len(docs),
        "boot": args.boot,
        "tables": {n: report[n] for n in tables},
        "paired_first_code_ami": paired,
        "seconds": round(time.time() - start, 1),
    }
    write_result(args.out, out)
    for other, p in paired.items():
        print(f"{reference} - {other}: first-code AMI vs {label} {p['ami_diff']:+.4f} {p['ci']}")


if __name__ == "__main__":
    main()
