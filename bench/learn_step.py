"""What a learn-ids training step costs on a CPU, before and after training only the word-embedding rows that get a
gradient, and with bf16 autocast on top.

The model is the recipe's own indexer as learn-ids starts a joint epoch (an LMIndexer run's k-means snapshot of
position 1 and of position 3: MiniLM, 32 tokens, 4 frozen layers), the batches are the run's tokenised items (32 a
batch; at position 3 same-prefix groups, as learn-ids makes them). Each setting trains its own copy with AdamW from
the same weights and the same seed, the settings taking turns step by step (so a slower moment of the machine falls
on all of them); seconds per step are the median over the timed steps. "rows with a gradient" must reach the same
weights as "every row" (the largest difference is reported), and the same codes for the batches' items.

    .venv/bin/python -m bench.learn_step                      # runs/beauty-minilm (a finished learn-ids run)
    .venv/bin/python -m bench.learn_step --run runs/x --steps 20

Writes bench/results/learn-step.json (RESULTS.md is rendered from it by bench/results.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.provenance import write_result
from lmindexer.ids.negatives import prefix_batches, prefix_ids
from lmindexer.models.indexer import SemanticIndexer

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name: (train only the rows with a gradient, bf16 autocast)
    "every row (before)": (False, False),
    "rows with a gradient": (True, False),
    "rows with a gradient, bf16 autocast": (True, True),
}


def batches(work: Path, position: int, count: int, size: int, seed: int) -> list[dict]:
    """`count` batches of the run's tokens, with the stored earlier codes and same-prefix groups from position 2."""
    tokens = np.load(work / "tokens.npz", allow_pickle=True)["input_ids"]
    codes = np.load(work / "codes.npy")[:, : position - 1].astype(np.int64)
    rng = np.random.default_rng(seed)
    groups = prefix_ids(codes)
    if position > 1:
        rows = prefix_batches(np.arange(len(tokens)), groups, size, 5, rng)[:count]
    else:
        rows = [rng.choice(len(tokens), size, replace=False) for _ in range(count)]
    out = []
    for r in rows:
        ids = torch.from_numpy(tokens[r].astype(np.int64))
        batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "prefix": torch.from_numpy(codes[r])}
        if position > 1:
            batch["group"] = torch.from_numpy(groups[r])
        out.append(batch)
    return out


def measure(snapshot: Path, position: int, data: list[dict], warm: int, seed: int) -> dict:
    models, optims, times = {}, {}, {name: [] for name in SETTINGS}
    for name, (rows_only, _) in SETTINGS.items():
        model = SemanticIndexer.from_pretrained(str(snapshot), dropout=0.1)
        if rows_only:
            model.train_rows_only()
        model.set_phase("joint", position)
        model.train()
        models[name] = model
        optims[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    trained = {name: sum(p.numel() for p in optims[name].param_groups[0]["params"]) for name in SETTINGS}
    for i, batch in enumerate(data):
        for name, (_, bf16) in SETTINGS.items():
            torch.manual_seed(seed + i)  # the same dropout and reconstruction masks for every setting
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                out = models[name](**batch)
            out["loss"].backward()
            optims[name].step()
            optims[name].zero_grad()
            if i >= warm:
                times[name].append(time.perf_counter() - start)
    before, after = models["every row (before)"], models["rows with a gradient"]
    after.full_embeddings()
    a, b = before.state_dict(), after.state_dict()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    before.eval(), after.eval()
    same = None
    if position == 1:  # code 1 of the batches' items from either copy (later codes need the earlier positions)
        first = [
            torch.cat([m.generate_codes(x["input_ids"], x["attention_mask"], 1) for x in data]) for m in (before, after)
        ]
        same = round(float((first[0] == first[1]).float().mean()), 4)
    base = statistics.median(times["every row (before)"])
    return {
        "position": position,
        "snapshot": str(snapshot),
        "timed_steps": len(data) - warm,
        "rows": [
            {
                "setting": name,
                "seconds_per_step": round(statistics.median(t), 4),
                "speedup": round(base / statistics.median(t), 2),
                "trained_parameters": trained[name],
            }
            for name, t in times.items()
        ],
        "max_weight_difference": diff,
        "same_codes": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/beauty-minilm", help="a finished learn-ids run (its learn_ids/ folder)")
    ap.add_argument("--positions", default="1,3")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    ap.add_argument("--warm", type=int, default=2, help="untimed first steps")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "learn-step.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.run) / "learn_ids"
    start, rows = time.time(), []
    for position in map(int, args.positions.split(",")):
        data = batches(work, position, args.warm + args.steps, args.batch_size, args.seed)
        rows.append(measure(work / f"snapshot-{position}-kmeans", position, data, args.warm, args.seed))
        print(json.dumps(rows[-1], indent=1), flush=True)
    out = {
        "run": args.run,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "positions": rows,
        "seconds": round(time.time() - start, 1),
    }
    write_result(args.out, out)


if __name__ == "__main__":
    main()
