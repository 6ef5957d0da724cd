"""What one GPU gets out of its hardware (issue 19, item 5): assign-ids of a t5-base-sized indexer at 128 tokens in
bf16, in documents/s and as a fraction of the GPU's dense bf16 peak, beside a plain loop over the same model on the
same GPU; and learn-ids training in examples/s and model FLOP utilisation (MFU) under DeepSpeed ZeRO-2 and ZeRO-3.
(The generator's training figures come from bench/train_throughput.py --gpu, which uses the same FLOP count.)

FLOPs are counted, not estimated: torch's FlopCounterMode over a few documents of the very call the command makes
(assign-ids: generate_codes + candidates; learn-ids: the indexer's training forward and backward at position 1,
without the negatives of later positions), divided by the documents. MFU and the fraction of peak are those counts
times the measured rate over the GPU's dense bf16 peak (PEAK_BF16_TFLOPS by device name, or --peak-tflops).

The corpus is synthetic: documents of --words pseudo-words drawn from a Zipf law, so that every one fills the 128
tokens. Commands run with configs/gpu-single.yaml (one worker, DeepSpeed, bf16, indexer batch 128), the backbone
built from --preset with a tokenizer of --vocab trained on the corpus (nothing is downloaded). learn-ids runs on the
first --train-docs documents (T=3, K=256, two joint epochs per position, no continuous phase; rates from each
phase's last epoch), assign-ids on all --docs with one GPU actor.

    python -m bench.gpu_throughput --out runs/gpu-check/gpu-throughput.json      # on a GPU (bench/gpu_check.sh)
    .venv/bin/python -m bench.gpu_throughput --cpu --preset tiny --docs 3000 --train-docs 1000   # smoke run on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.assign_throughput import lmindexer
from bench.provenance import write_result
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.models.tokenizer import encode_texts

ROOT = Path(__file__).resolve().parents[1]

# dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the first key found in the device
# name wins, so the PCIe and NVL parts come before the SXM part of the same name
PEAK_BF16_TFLOPS = {
    "H100 PCIE": 756.0,
    "H100 NVL": 835.0,
    "GH200": 989.4,
    "H200": 989.4,
    "H100": 989.4,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.1,
}
COUNTED = 4  # documents of a FLOP count


def peak_flops(device_name: str, override_tflops: float = 0.0) -> float | None:
    """The device's dense bf16 peak in FLOP/s (the first PEAK_BF16_TFLOPS key in its name), or None."""
    if override_tflops:
        return override_tflops * 1e12
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in device_name.upper()), None)


def counted_flops(fn) -> int:
    """FLOPs torch counts while `fn()` runs (matrix products, attention and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def corpus(path: Path, docs: int, words: int, seed: int = 0) -> Path:
    """A jsonl corpus of `docs` documents of `words` Zipf-drawn pseudo-words (20,000 of them)."""
    if not path.exists():
        rng = np.random.default_rng(seed)
        with open(path, "w") as f:
            for i in range(docs):
                ranks = np.minimum(rng.zipf(1.2, words), 20000)
                f.write(json.dumps({"doc_id": f"d{i}", "text": " ".join(f"w{r}" for r in ranks)}) + "\n")
    return path


def texts(path: Path, n: int) -> list[str]:
    with open(path) as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


@torch.no_grad()
def assign_flops(model: SemanticIndexer, sample: list[str], max_length: int, candidates: int) -> float:
    """FLOPs per document of assign-ids' actor call (generate_codes, then candidates), documents cut to max_length."""
    enc = encode_texts(model.tokenizer, sample, max_length, pad="max_length")

    def call():
        codes = model.generate_codes(enc["input_ids"], enc["attention_mask"])
        model.candidates(enc["input_ids"], enc["attention_mask"], codes[:, :-1], candidates)

    return counted_flops(call) / len(sample)


def train_flops(snapshot: str, sample: list[str], max_length: int) -> float:
    """FLOPs per example of a learn-ids training step at position 1 (joint phase): forward and backward."""
    model = SemanticIndexer.from_pretrained(snapshot).train()
    model.set_phase("joint", 1)
    ids = encode_texts(model.tokenizer, sample, max_length, pad="max_length")["input_ids"]
    batch = {"input_ids": ids, "attention_mask": (ids != model.tokenizer.pad_token_id).long()}
    batch["prefix"] = torch.zeros(len(sample), 0, dtype=torch.long)
    return counted_flops(lambda: model(**batch)["loss"].backward()) / len(sample)


@torch.no_grad()
def plain_assign(path: str, docs: list[str], max_length: int, batch: int, candidates: int, device: str) -> float:
    """Documents/s of one process: tokenise, then the actor's two calls under bf16 autocast on `device`."""
    model = SemanticIndexer.from_pretrained(path).to(device).eval()
    dtype = torch.bfloat16 if device == "cuda" else None
    for warm in (True, False):
        start = time.perf_counter()
        for i in range(0, min(batch, len(docs)) if warm else len(docs), batch):  # warm: one batch, untimed
            enc = encode_texts(model.tokenizer, docs[i : i + batch], max_length).to(device)
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                codes = model.generate_codes(enc["input_ids"], enc["attention_mask"])
                model.candidates(enc["input_ids"], enc["attention_mask"], codes[:, :-1], candidates)
        if device == "cuda":
            torch.cuda.synchronize()
    return len(docs) / (time.perf_counter() - start)


def learn(work: Path, base: Path, train_corpus: Path, stage: int, positions: int, common: list[str]) -> dict:
    """learn-ids under ZeRO `stage`: its folder and the examples/s of each joint phase's last epoch."""
    out = work / f"learn-zero{stage}"
    shutil.rmtree(out, ignore_errors=True)  # measured afresh: a finished run in a reused --work would be resumed
    lmindexer(
        "learn-ids",
        *common,
        f"output_dir={out}",
        f"data.output={train_corpus}",
        f"model.name_or_path={base / 'backbone'}",
        f"indexer.num_positions={positions}",
        "indexer.codebook_size=256",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=2",
        "train.engine=deepspeed",
        f"train.zero_stage={stage}",
    )
    rates, examples = {}, len(np.load(out / "learn_ids" / "codes.npy"))  # one row per document: an epoch's examples
    for t in range(1, positions + 1):
        history = json.loads((out / "learn_ids" / f"snapshot-{t}-joint" / "train_history.json").read_text())
        rates[t] = {"epoch_seconds": history[-1]["epoch_seconds"], "examples": examples}
    return {"dir": out, "rates": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=200_000, help="documents assign-ids assigns")
    parser.add_argument("--plain-docs", type=int, default=50_000, help="of them, documents of the plain loop")
    parser.add_argument("--train-docs", type=int, default=16_384, help="documents learn-ids trains on")
    parser.add_argument("--words", type=int, default=160, help="pseudo-words per document (>= 128 tokens)")
    parser.add_argument("--preset", default="base", help="T5 shape of the indexer (base = t5-base)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=32000, help="tokenizer vocabulary (t5-base: 32,000)")
    parser.add_argument("--batch", type=int, default=1024, help="assign-ids inference batch")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak (default: by name)")
    parser.add_argument("--cpu", action="store_true", help="no GPU: the same code paths in fp32 on CPU (a smoke run)")
    parser.add_argument(
        "--work",
        default="",
        help="working folder (default: a new temporary one); a reused one keeps "
        "its corpora and backbone, every figure is measured again",
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "gpu-throughput.json"))
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars of every model this process loads
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --cpu for the smoke run")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {os.cpu_count()} cores"
    peak = None if args.cpu else peak_flops(name, args.peak_tflops)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    common = [  # the one-GPU recipe (one worker, DeepSpeed, bf16, batch 128), its backbone built here (no download)
        "--config",
        "configs/gpu-single.yaml",
        "model.name_or_path=",
        f"model.vocab_size={args.vocab}",
        f"model.max_length={args.max_length}",
        f"train.use_gpu={str(not args.cpu).lower()}",
        f"train.precision={'fp32' if args.cpu else 'bf16'}",
        f"train.cpus_per_worker={1 if args.cpu else 4}",
        "data.rows_per_shard=50000",
    ]
    docs = corpus(work / "docs.jsonl", args.docs, args.words)
    lmindexer("prepare", *common, f"output_dir={work / 'all'}", f"data.input={docs}", "data.format=jsonl")
    first = work / "train.jsonl"
    if not first.exists():
        first.write_text("".join(line for _, line in zip(range(args.train_docs), open(docs))))
    base = work / "train"
    lmindexer("prepare", *common, f"output_dir={base}", f"data.input={first}", "data.format=jsonl")
    lmindexer("init-model", *common, f"output_dir={base}", f"model.preset={args.preset}")

    results = {"device": name, "peak_bf16_flops": peak, "preset": args.preset, "max_length": args.max_length}
    results["precision"] = "fp32" if args.cpu else "bf16"
    sample = texts(docs, COUNTED)
    learned = {}
    for stage, positions in ((2, 3), (3, 1)):  # ZeRO-3 at position 1 only: the same step, a third of the time
        start = time.time()
        learned[stage] = learn(work, base, base / "corpus", stage, positions, common)
        flops = train_flops(str(learned[stage]["dir"] / "learn_ids" / "snapshot-1-joint"), sample, args.max_length)
        for t, r in learned[stage]["rates"].items():
            rate = r["examples"] / r["epoch_seconds"]
            row = {"zero_stage": stage, "position": t, "examples_per_s": round(rate, 1)}
            if t == 1:
                row["flops_per_example"] = flops
                row["mfu"] = round(rate * flops / peak, 4) if peak else None
            results.setdefault("learn_ids", []).append(row)
            print(json.dumps(row), flush=True)
        results.setdefault("learn_ids_seconds", {})[f"zero{stage}"] = round(time.time() - start, 1)

    indexer = str(learned[2]["dir"] / "indexer")
    out = work / "ids"
    shutil.rmtree(out, ignore_errors=True)
    log, _ = lmindexer(
        "assign-ids",
        *common,
        f"output_dir={work / 'all'}",
        f"assign.indexer={indexer}",
        f"assign.output={out}",
        "inference.actors=1",
        "inference.min_actors=1",
        "ray.in_process_rows=0",
        f"inference.batch_size={args.batch}",
        "assign.files_per_round=1000",
    )
    code_s = sum(float(s) for s in re.findall(r"committed in ([0-9.]+)s", log))
    model = SemanticIndexer.from_pretrained(indexer).eval()
    per_doc = assign_flops(model, sample, args.max_length, 8)
    assign = {"docs": args.docs, "code_step_s": code_s, "docs_per_s": round(args.docs / code_s, 1)}
    plain = plain_assign(indexer, texts(docs, args.plain_docs), args.max_length, args.batch, 8, device)
    assign.update(plain_docs_per_s=round(plain, 1), ratio_to_plain=round(assign["docs_per_s"] / plain, 2))
    assign["flops_per_doc"] = per_doc
    if peak:
        assign["fraction_of_peak"] = round(assign["docs_per_s"] * per_doc / peak, 4)
        assign["plain_fraction_of_peak"] = round(plain * per_doc / peak, 4)
    results["assign"] = assign
    print(json.dumps(assign), flush=True)

    print(f"\n{name}: {args.preset} T5 indexer, {args.max_length} tokens, {'fp32' if args.cpu else 'bf16'}\n")
    print(
        f"assign-ids, 1 actor: {assign['docs_per_s']} documents/s ({assign['ratio_to_plain']}x the plain loop's "
        f"{assign['plain_docs_per_s']}); {per_doc / 1e9:.2f} GFLOP per document"
        + (f"; {assign['fraction_of_peak']:.1%} of the bf16 peak" if peak else "")
    )
    for row in results["learn_ids"]:
        mfu = f", MFU {row['mfu']:.1%}" if row.get("mfu") else ""
        where = f"ZeRO-{row['zero_stage']}, position {row['position']}"
        print(f"learn-ids, {where}: {row['examples_per_s']} examples/s{mfu}")
    write_result(args.out, results)


if __name__ == "__main__":
    main()
