"""Amazon Beauty: first-position AMI of LMIndexer IDs against category_l2, next to two-stage baselines.

Trains the indexer (Ray Train, 2 CPU workers by default) on the 12,101 Beauty items, then compares its first code
with k-means (same K) on embeddings of the same model: the mean-pooled encoder of the trained model (the two-stage
baseline), the untrained model (a floor), and the codebook k-means gave before joint training. The published peer
ID sets in ../shared/data (RQ-VAE as in TIGER, RK-means, LETTER) are scored the same way.

    .venv/bin/python bench/beauty_ids.py                      # preset small, K=256
    .venv/bin/python bench/beauty_ids.py model.preset=mini indexer.joint_epochs=3
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmindexer.config import load_config  # noqa: E402
from lmindexer.data.prepare import prepare  # noqa: E402
from lmindexer.eval.metrics import ami, code_usage, nmi  # noqa: E402
from lmindexer.ids.kmeans import assign, kmeans  # noqa: E402
from lmindexer.ids.learn import indexer_dir, learn_ids, work_dir  # noqa: E402
from lmindexer.models.indexer import SemanticIndexer  # noqa: E402
from lmindexer.runtime import ensure_ray, setup_logging  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
PEERS = BEAUTY / "original" / "CollisionGenRec" / "data" / "Beauty" / "indexes"


@torch.no_grad()
def encoder_means(model: SemanticIndexer, ids: np.ndarray, batch: int = 256) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(ids), batch):
        x = torch.from_numpy(ids[i:i + batch].astype(np.int64))
        mask = (x != 0).float()
        h = model.t5.encoder(input_ids=x, attention_mask=mask.long()).last_hidden_state
        out.append((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    return torch.cat(out)


@torch.no_grad()
def first_codes(model: SemanticIndexer, ids: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(ids.astype(np.int64))
    return np.concatenate([model.generate_codes(x[i:i + batch], (x[i:i + batch] != 0).long(), 1)[:, 0].numpy()
                           for i in range(0, len(x), batch)])


def row(name: str, labels: np.ndarray, codes: np.ndarray, k: int) -> dict:
    usage = code_usage(codes, k)
    return {"ids": name, "AMI": round(ami(labels, codes), 4), "NMI": round(nmi(labels, codes), 4),
            "codes used": usage["used"], "perplexity": round(usage["perplexity"], 1)}


def main() -> None:
    if not BEAUTY.exists():
        sys.exit(f"Amazon Beauty is not at {BEAUTY}")
    setup_logging()
    overrides = ["output_dir=runs/bench-beauty", f"data.input={BEAUTY}/derived/items.jsonl", "model.preset=small",
                 "model.vocab_size=8000", "model.max_length=32", "indexer.num_positions=1",
                 "indexer.codebook_size=256", "indexer.lr=1e-3", "indexer.continuous_epochs=1",
                 "indexer.joint_epochs=1", "indexer.batch_size=32", *sys.argv[1:]]
    cfg = load_config(ROOT / "configs" / "beauty.yaml", overrides)
    ensure_ray(cfg)
    start = time.time()
    if not os.path.exists(os.path.join(cfg.output_dir, "corpus", "summary.json")):
        prepare(cfg)
    summary = learn_ids(cfg)
    train_seconds = time.time() - start
    tokens = np.load(os.path.join(work_dir(cfg), "tokens.npz"), allow_pickle=True)
    ids, labels = tokens["input_ids"], tokens["label"].astype(str)
    k = cfg.indexer.codebook_size
    learned = np.load(os.path.join(work_dir(cfg), "codes.npy"))[:, 0]
    final = SemanticIndexer.from_pretrained(indexer_dir(cfg))
    init = SemanticIndexer.from_pretrained(os.path.join(work_dir(cfg), "snapshot-0-init"))
    before_joint = SemanticIndexer.from_pretrained(os.path.join(work_dir(cfg), "snapshot-1-kmeans"))
    rows = [row("LMIndexer, first code (trained jointly)", labels, learned, k),
            row("codebook from k-means before joint training", labels, first_codes(before_joint, ids), k)]
    for name, model in (("two-stage: k-means on the trained encoder (mean-pooled)", final),
                        ("floor: k-means on the untrained encoder (mean-pooled)", init)):
        emb = encoder_means(model, ids)
        rows.append(row(name, labels, assign(emb, kmeans(emb, k, seed=cfg.seed)).numpy(), k))
    letter_ids = tokens["doc_id"].astype(int) - 1  # peers key items by 0-based id; ours are the 1-based item_id
    for peer in ("rqvae", "rkmeans", "letter"):
        path = PEERS / f"{peer}_native" / "Beauty.index.json"
        if path.exists():
            table = json.loads(path.read_text())
            codes = np.array([int(table[str(i)][0].split("_")[1].rstrip(">")) for i in letter_ids])
            rows.append(row(f"published {peer} IDs (CollisionGenRec), first code", labels, codes, 256))
    print(f"\nAmazon Beauty, {len(labels)} items, labels = category_l2 ({len(set(labels))} classes), K={k}, "
          f"preset={cfg.model.preset}, epochs continuous/joint = {cfg.indexer.continuous_epochs}/"
          f"{cfg.indexer.joint_epochs}, {cfg.train.num_workers} workers ({cfg.train.engine}), "
          f"training {train_seconds / 60:.1f} min\n")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r.values()) + " |")
    with open(os.path.join(cfg.output_dir, "bench_beauty_ids.json"), "w") as f:
        json.dump({"rows": rows, "train_seconds": round(train_seconds), "learn_ids": summary}, f, indent=2,
                  default=str)


if __name__ == "__main__":
    main()
