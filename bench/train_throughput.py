"""Training throughput of the shared Ray Train loop against a plain single-process PyTorch loop, same model and data.

The model is the generator (a `tiny` T5 with ID tokens) on random source/target token rows; the same batch size,
optimizer (AdamW) and steps go through (a) a plain loop: one process, no Ray, and (b) `train.loop.fit` with 1 and 2
Ray Train workers, DeepSpeed (ZeRO-2; a single fp32 worker runs stage 0) and DDP, fed as the commands feed them
(`raydata.train_rows`: in memory up to ray.in_process_rows rows, else a Ray Dataset). Examples/s of the Ray runs come
from the loop's own `epoch_seconds` of the last epoch (warm; start-up is reported apart), so the ratio compares
steady-state training.

    .venv/bin/python -m bench.train_throughput                    # 8,192 examples, 3 epochs per run
    .venv/bin/python -m bench.train_throughput --examples 2048
    python -m bench.train_throughput --gpu --preset base --examples 32768   # one GPU: bf16, 1 worker per run

With --gpu the plain loop runs on the GPU under bf16 autocast and each Ray run has one GPU worker (bf16): DeepSpeed
at ZeRO-2 and at ZeRO-3, and DDP. Each run's model FLOP utilisation (MFU) is its examples/s times an example's
FLOPs (forward and backward, counted by torch's FlopCounterMode on a few examples) over the device's dense bf16 peak
(bench/gpu_throughput.py: PEAK_BF16_TFLOPS, or --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.gpu_throughput import COUNTED, counted_flops, peak_flops
from bench.provenance import write_result
from lmindexer.config import load_config
from lmindexer.downstream.generator_training import GeneratorTask
from lmindexer.models.backbone import build_t5
from lmindexer.models.generator import build_generator
from lmindexer.models.tokenizer import train_tokenizer
from lmindexer.paths import RunContext
from lmindexer.quantizers.codes import IdSpec
from lmindexer.raydata import MemoryRows, train_rows
from lmindexer.runtime import ensure_ray, setup_logging
from lmindexer.train.engine import zero_stage
from lmindexer.train.loop import fit

ROOT = Path(__file__).resolve().parents[1]

VOCAB, SOURCE, TARGET, BATCH, EPOCHS = 2000, 64, 5, 64, 3


def plain(init: str, sources: np.ndarray, labels: np.ndarray, device: str) -> float:
    """Examples/s of one process (CPU: one thread per core, torch's default; GPU: bf16 autocast), last of EPOCHS."""
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(0)
    model = T5ForConditionalGeneration.from_pretrained(init).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for epoch in range(EPOCHS):
        order = np.random.default_rng(epoch).permutation(len(sources))
        start = time.perf_counter()
        for i in range(0, len(order) - BATCH + 1, BATCH):
            rows = order[i : i + BATCH]
            ids = torch.from_numpy(sources[rows]).long().to(device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(
                    input_ids=ids,
                    attention_mask=(ids != 0).long(),
                    labels=torch.from_numpy(labels[rows]).long().to(device),
                ).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return (len(order) // BATCH * BATCH) / seconds


def example_flops(init: str, sources: np.ndarray, labels: np.ndarray) -> float:
    """FLOPs of one training example (forward and backward), counted over the first COUNTED rows."""
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(init).train()
    ids = torch.from_numpy(sources[:COUNTED]).long()
    step = (
        lambda: model(  # noqa: E731
            input_ids=ids, attention_mask=(ids != 0).long(), labels=torch.from_numpy(labels[:COUNTED]).long()
        ).loss.backward()
    )
    return counted_flops(step) / COUNTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--preset", default="tiny", help="T5 shape (tiny, mini, small, base)")
    parser.add_argument("--gpu", action="store_true", help="one GPU: bf16, one worker per Ray run")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak (default: by name)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train-throughput.json"))
    args = parser.parse_args()
    n = args.examples
    setup_logging()
    rng = np.random.default_rng(0)
    sources = rng.integers(3, VOCAB, size=(n, SOURCE)).astype(np.int32)
    labels = np.concatenate([rng.integers(3, VOCAB, size=(n, TARGET - 1)), np.ones((n, 1))], 1).astype(np.int32)
    work = tempfile.mkdtemp(prefix="bench-train-")
    base, init = os.path.join(work, "t5"), os.path.join(work, "init")
    tokenizer = train_tokenizer((f"w{i} w{i * 7 % 997} w{i * 13 % 991}" for i in range(20000)), VOCAB)
    build_t5(args.preset, len(tokenizer), 0.1).save_pretrained(base)
    tokenizer.save_pretrained(base)
    build_generator(base, IdSpec(TARGET - 1, 64, 1), init)  # the generator's start folder, as train-generator makes it
    device = "cuda" if args.gpu else "cpu"
    peak = peak_flops(torch.cuda.get_device_name(), args.peak_tflops) if args.gpu else None
    flops = example_flops(init, sources, labels)
    results = {
        "examples": n,
        "batch_size": BATCH,
        "preset": args.preset,
        "device": device,
        "gpu": torch.cuda.get_device_name() if args.gpu else None,
        "flops_per_example": flops,
        "peak_bf16_flops": peak,
        "plain_examples_per_s": round(plain(init, sources, labels, device), 1),
        "runs": [],
    }
    mfu = lambda rate: round(rate * flops / peak, 4) if peak else None  # noqa: E731
    results["plain_mfu"] = mfu(results["plain_examples_per_s"])
    print(f"plain loop: {results['plain_examples_per_s']} examples/s", flush=True)
    configured = load_config().train.zero_stage
    runs = (
        ((1, "deepspeed", 2), (1, "deepspeed", 3), (1, "ddp", configured))
        if args.gpu
        else (
            (1, "deepspeed", configured),
            (1, "ddp", configured),
            (2, "deepspeed", configured),
            (2, "ddp", configured),
        )
    )
    for workers, engine, stage in runs:
        cfg = load_config(
            overrides=[
                f"output_dir={work}/{engine}-{workers}-{stage}",
                f"train.num_workers={workers}",
                f"train.engine={engine}",
                f"train.zero_stage={stage}",
                "train.log_every_steps=0",
                f"train.use_gpu={str(args.gpu).lower()}",
            ]
        )
        ensure_ray(cfg.ray)
        task = GeneratorTask(
            init,
            os.path.join(work, f"out-{engine}-{workers}-{stage}"),
            f"bench-{engine}-{workers}-{stage}",
            EPOCHS,
            1e-3,
            BATCH // workers,
        )  # the same global batch
        start = time.time()
        rows = train_rows(RunContext.of(cfg), input_ids=sources, labels=labels)
        fit(cfg.train, RunContext.of(cfg), task, rows, fresh=True)
        total = time.time() - start
        with open(os.path.join(task.out_dir, "train_history.json")) as f:
            last = json.load(f)[-1]["epoch_seconds"]
        rate = (n // BATCH * BATCH) / last
        results["runs"].append(
            {
                "workers": workers,
                "engine": engine if engine == "ddp" else f"{engine}, ZeRO-{zero_stage(cfg.train, workers)}",
                "examples_per_s": round(rate, 1),
                "ratio_to_plain": round(rate / results["plain_examples_per_s"], 2),
                "mfu": mfu(rate),
                "run_seconds": round(total, 1),
                "epochs": EPOCHS,
                "feed": "in memory" if isinstance(rows, MemoryRows) else "Ray Data",
            }
        )
        print(json.dumps(results["runs"][-1]), flush=True)
    where = results["gpu"] or f"{os.cpu_count()} cores"
    print(f"\n{n} examples, global batch {BATCH}, {args.preset} T5, {where}\n")
    print(f"{flops / 1e9:.3f} GFLOP per training example (forward and backward)\n")
    print("| run | examples/s (last epoch) | ratio to the plain loop | MFU | whole run incl. start-up (s) |")
    print("|---|---:|---:|---:|---:|")
    label = f"plain loop, 1 process{', bf16 autocast' if args.gpu else ''}"
    shown = lambda m: f"{m:.1%}" if m is not None else "-"  # noqa: E731
    print(f"| {label} | {results['plain_examples_per_s']} | 1.00 | {shown(results['plain_mfu'])} | |")
    for r in results["runs"]:
        print(
            f"| Ray Train, {r['workers']} worker(s), {r['engine']} | {r['examples_per_s']} | {r['ratio_to_plain']} | "
            f"{shown(r['mfu'])} | {r['run_seconds']} |"
        )
    out = Path(args.out)
    write_result(out, results)


if __name__ == "__main__":
    main()
