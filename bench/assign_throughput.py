"""assign-ids throughput against a plain single-process PyTorch loop, and peak memory at 1x and 10x corpus size.

The same indexer (a `tiny` T5, T=3, K=64, codebooks from learn-ids' k-means start on the --docs corpus, no training
epoch), tokenizer, batch size and documents (the embedded demo generator) go through (a) a plain loop: tokenise ->
generate_codes -> candidates, one thread, and (b) `lmindexer assign-ids` in its own process (actors 0: in that
process, as the default ray.in_process_rows does for small corpora) and on a Ray Data actor pool of 1 and 2 actors
(ray.in_process_rows=0), each run in its own process so its memory can be sampled
(driver, and driver + Ray processes). The code step's time comes from assign-ids' own log; end-to-end adds
uniqueness (group by) and verification.

    .venv/bin/python -m bench.assign_throughput                # 10,000 and 100,000 documents; 0, 1 and 2 actors
    .venv/bin/python -m bench.assign_throughput --docs 2000    # a quick run
    .venv/bin/python -m bench.assign_throughput --scales 10,100 --actors 2 --json bench_assign_million.json
                                                               # 100,000 and 1,000,000 documents (2 actors)
    .venv/bin/python -m bench.assign_throughput --scales 1 --actors 1 --ab inference.threads=1 \
        --json bench_assign_threads.json                       # A/B of one setting: 3 rounds at 10,000, 1 actor
Each size is a synthetic corpus of the embedded demo generator, prepared once under --work and kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import torch

from bench.provenance import write_result
from lmindexer.models.indexer import SemanticIndexer

ROOT = Path(__file__).resolve().parents[1]

CLI = [sys.executable, "-m", "lmindexer.cli"]
BATCH, MAX_LENGTH, CANDIDATES = 256, 48, 8


def lmindexer(*args: str, sample_memory: bool = False) -> tuple[str, dict]:
    """Run a CLI command; with sample_memory, the peak RSS (MiB) of its driver, of its largest other process (an
    actor or task worker; `largest_worker` names it by its Ray process title), of all its processes together, and
    the most processes seen at once."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    peak = {"driver_mib": 0.0, "largest_worker_mib": 0.0, "all_processes_mib": 0.0, "processes": 0}
    largest = {"largest_worker": ""}

    def sample():
        me = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [me] + me.children(recursive=True)
                procs = [p for p in procs if p.is_running()]
                rss = [p.memory_info().rss for p in procs]
                peak["driver_mib"] = max(peak["driver_mib"], rss[0] / 2**20)
                if max(rss[1:], default=0) / 2**20 > peak["largest_worker_mib"]:
                    top = 1 + int(np.argmax(rss[1:]))
                    peak["largest_worker_mib"] = rss[top] / 2**20
                    largest["largest_worker"] = " ".join(procs[top].cmdline())[:60].strip()
                peak["processes"] = max(peak["processes"], len(rss))
                peak["all_processes_mib"] = max(peak["all_processes_mib"], sum(rss) / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    out, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"lmindexer {args[0]} failed:\n{out[-4000:]}")
    return out, {**peak, **largest}


def corpus(work: Path, docs: int) -> Path:
    base = work / f"n{docs}"
    if not (base / "corpus" / "summary.json").exists():
        lmindexer(
            "prepare",
            "--config",
            "configs/quickstart.yaml",
            f"output_dir={base}",
            f"demo.num_docs={docs}",
            "data.rows_per_shard=5000",
        )
    return base


def indexer(work: Path, base: Path) -> Path:
    """learn-ids with no training epoch on the corpus `base` (the --docs one): codebooks from its k-means start, so
    that the codes spread over the IDs as a trained indexer's do. Random codebooks gave nearly every document the same
    few codes (one collision group held 63% of the documents), and the uniqueness pass, which holds a group whole,
    then grew its memory with the corpus instead of staying flat."""
    path = work / "indexer-kmeans"
    if not (path / "indexer.json").exists():
        lmindexer("init-model", "--config", "configs/quickstart.yaml", f"output_dir={base}")
        lmindexer(
            "learn-ids",
            "--config",
            "configs/quickstart.yaml",
            f"output_dir={work / 'learn-ids'}",
            f"data.output={base / 'corpus'}",
            f"model.name_or_path={base / 'backbone'}",
            f"model.max_length={MAX_LENGTH}",
            "indexer.num_positions=3",
            "indexer.codebook_size=64",
            "indexer.continuous_epochs=0",
            "indexer.joint_epochs=0",
            f"indexer.output={path}",
        )
    return path


@torch.no_grad()
def plain_loop(path: Path, base: Path, threads: int) -> dict:
    """The baseline: one process, the same calls as assign-ids' actor, no Ray."""
    torch.set_num_threads(threads)
    start = time.time()
    model = SemanticIndexer.from_pretrained(str(path)).eval()
    texts = pq.read_table(base / "corpus" / "docs", columns=["text"]).column("text").to_pylist()
    loaded = time.time()
    codes = []
    for i in range(0, len(texts), BATCH):
        enc = model.tokenizer(
            texts[i : i + BATCH], max_length=MAX_LENGTH, truncation=True, padding=True, return_tensors="pt"
        )
        c = model.generate_codes(enc["input_ids"], enc["attention_mask"])
        model.candidates(enc["input_ids"], enc["attention_mask"], c[:, :-1], CANDIDATES)
        codes.append(c)
    end = time.time()
    return {
        "docs": len(texts),
        "load_s": round(loaded - start, 1),
        "loop_s": round(end - loaded, 1),
        "docs_per_s": round(len(texts) / (end - start), 1),
        "codes": torch.cat(codes).numpy(),
    }


def assign(work: Path, base: Path, path: Path, actors: int, docs: int, extra: tuple = ()) -> dict:
    out = work / f"ids-{docs}-{actors}"
    shutil.rmtree(out, ignore_errors=True)  # a finished table of an earlier run would be resumed, not redone
    log, memory = lmindexer(
        "assign-ids",
        "--config",
        "configs/quickstart.yaml",
        f"output_dir={base}",
        f"assign.indexer={path}",
        f"assign.output={out}",
        f"inference.actors={max(1, actors)}",
        f"inference.min_actors={max(1, actors)}",
        f"ray.in_process_rows={docs if actors == 0 else 0}",
        f"inference.batch_size={BATCH}",
        f"assign.candidates={CANDIDATES}",
        "assign.files_per_round=1000",
        "train.precision=fp32",
        *extra,
        sample_memory=True,
    )
    code_s = sum(float(s) for s in re.findall(r"committed in ([0-9.]+)s", log))
    start = log.rindex("\n{\n")
    summary = json.loads(log[start : log.index("\n}", start) + 2])
    assert summary["ids_out"] == docs, summary
    return {
        "docs": docs,
        "actors": actors,
        "codes_s": round(code_s, 1),
        "docs_per_s": round(docs / code_s, 1),
        "end_to_end_s": summary["seconds"],
        **{k: round(v) if isinstance(v, float) else v for k, v in memory.items()},
        "out": out,
    }


def ab_rounds(args, work: Path, base: Path, path: Path, actors: int, docs: int) -> None:
    """--ab: each round times the plain loop, then assign-ids with and without the setting (alternating which
    first), so that each ratio has a plain loop of its own moment; prints and writes every round and the medians."""
    rounds = []
    for i in range(args.repeat):
        plain = plain_loop(path, base, threads=1)["docs_per_s"]
        runs = {}
        for arm in ("with", "without") if i % 2 == 0 else ("without", "with"):
            extra = (*args.set, args.ab) if arm == "with" else tuple(args.set)
            runs[arm] = assign(work, base, path, actors, docs, extra)
        rounds.append({"plain_docs_per_s": plain, **{f"{arm}_docs_per_s": r["docs_per_s"] for arm, r in runs.items()}})
        print(json.dumps(rounds[-1]), flush=True)
    ratios = {arm: [r[f"{arm}_docs_per_s"] / r["plain_docs_per_s"] for r in rounds] for arm in ("with", "without")}
    summary = {
        arm: {"median": round(float(np.median(v)), 2), "min": round(min(v), 2), "max": round(max(v), 2)}
        for arm, v in ratios.items()
    }
    print(
        f"\n{docs:,} documents, {actors} actor(s), ratio of the code step to the plain loop over {len(rounds)} "
        f"rounds: with {args.ab}: {summary['with']}; without: {summary['without']}"
    )
    figures = {"ab": args.ab, "set": args.set, "docs": docs, "actors": actors, "rounds": rounds, "ratio": summary}
    write_result(ROOT / args.json, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10000, help="documents at scale 1")
    parser.add_argument("--scales", default="1,10", help="corpus sizes as multiples of --docs")
    parser.add_argument("--actors", default="0,1,2", help="actor counts to run at every size (0: in process)")
    parser.add_argument("--work", default="runs/bench-assign")
    parser.add_argument(
        "--json", default="bench/results/assign-throughput.json", help="where the figures go (relative to the checkout)"
    )
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every assign-ids run (repeatable)")
    parser.add_argument(
        "--ab", default="", help="KEY=VALUE: --repeat rounds of the plain loop and assign-ids with and without it"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of --ab (which run goes first alternates)")
    args = parser.parse_args()
    work = ROOT / args.work
    sizes = [int(x) * args.docs for x in args.scales.split(",")]
    bases = {docs: corpus(work, docs) for docs in sizes}
    one = bases[sizes[0]]
    path = indexer(work, corpus(work, args.docs))
    if args.ab:
        return ab_rounds(args, work, one, path, int(args.actors.split(",")[0]), sizes[0])
    plain = plain_loop(path, one, threads=1)
    plain_all = plain_loop(path, one, threads=os.cpu_count() or 1)
    runs = [
        assign(work, bases[docs], path, int(actors), docs, tuple(args.set))
        for docs in sizes
        for actors in args.actors.split(",")
    ]
    same = pq.read_table(runs[0]["out"] / "table", columns=["doc_id", "codes"]).to_pandas().set_index("doc_id")
    texts_order = pq.read_table(one / "corpus" / "docs", columns=["doc_id"]).column("doc_id").to_pylist()
    agree = float(np.mean([list(same.codes[d]) == list(c) for d, c in zip(texts_order, plain["codes"])]))

    print(f"\nassign-ids vs a plain PyTorch loop: tiny T5, T=3, K=64, batch {BATCH}, {os.cpu_count()} cores\n")
    print(
        "| run | documents | code step s | docs/s | vs plain 1-thread | end-to-end s | peak MiB: driver | "
        "largest worker | all processes (count) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, p in (("plain loop, 1 thread", plain), (f"plain loop, {os.cpu_count()} threads", plain_all)):
        print(
            f"| {name} | {p['docs']} | {p['load_s'] + p['loop_s']:.1f} | {p['docs_per_s']} | "
            f"{p['docs_per_s'] / plain['docs_per_s']:.2f}x | - | - | - | - |"
        )
    for r in runs:
        print(
            f"| assign-ids, {r['actors'] or 'in process, 0'} actor(s) | {r['docs']} | {r['codes_s']} | "
            f"{r['docs_per_s']} | "
            f"{r['docs_per_s'] / plain['docs_per_s']:.2f}x | {r['end_to_end_s']} | {r['driver_mib']} | "
            f"{r['largest_worker_mib']} | {r['all_processes_mib']} ({r['processes']}) |"
        )
    print(f"\ncodes identical to the plain loop's for {agree:.1%} of documents")
    for a, b in zip(runs, runs[len(args.actors.split(",")) :]):  # each size against the one before, same actors
        print(
            f"{b['docs']:,} / {a['docs']:,} documents, {a['actors']} actor(s): time "
            f"{b['codes_s'] / a['codes_s']:.2f}x, peak memory "
            + ", ".join(
                f"{k.replace('_mib', '')} {b[k] / max(a[k], 1):.2f}x"
                for k in ("driver_mib", "largest_worker_mib", "all_processes_mib")
            )
        )
    figures = {
        "plain": {k: v for k, v in plain.items() if k != "codes"},
        "plain_all_threads": {k: v for k, v in plain_all.items() if k != "codes"},
        "assign": [{k: str(v) if k == "out" else v for k, v in r.items()} for r in runs],
        "agreement": agree,
        "set": args.set,
    }
    write_result(ROOT / args.json, figures)


if __name__ == "__main__":
    main()
