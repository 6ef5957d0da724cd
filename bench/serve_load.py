"""Load on `lmindexer serve` over the loopback address, beside the same calls made in-process.

Starts the server on a finished run (default: the demo's, `make demo`) and, for each endpoint and concurrency level,
sends a bounded number of requests from that many client threads: requests per second and p50/p99 latency. The
plain baseline is the same call on lmindexer.service in this process, one at a time (the ratio is the server's
requests/s over it). New documents are assigned under fresh doc_ids each round, so every /assign of the "new" kind
runs the indexer and writes a table file; the run's table keeps them (use a copy of the run if that matters).

    .venv/bin/python -m bench.serve_load                    # runs/quickstart, its rec and retrieval generators
    .venv/bin/python -m bench.serve_load --run runs/x --generator runs/x/generator-rec-ids --requests 200

Writes bench/results/serve-load.json (RESULTS.md is rendered from it by bench/results.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.provenance import write_result
from lmindexer.config import load_config
from lmindexer.data.generator_data import read_queries
from lmindexer.runtime import setup_logging
from lmindexer.service import IdService, RecService, RetrieveService

ROOT = Path(__file__).resolve().parents[1]


def post(url: str, body: dict) -> float:
    start = time.perf_counter()
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
    return time.perf_counter() - start


def load(fn, bodies: list, threads: int, seconds: float) -> dict:
    """Send `bodies` through `fn` from `threads` threads (stop after `seconds`): requests/s and latency."""
    start, lat = time.perf_counter(), []
    with ThreadPoolExecutor(threads) as pool:
        for got in pool.map(lambda b: fn(b) if time.perf_counter() - start < seconds else None, bodies):
            if got is not None:
                lat.append(got)
    wall = time.perf_counter() - start
    return {
        "threads": threads,
        "requests": len(lat),
        "per_second": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1),
    }


def timed(fn):
    def run(body):
        start = time.perf_counter()
        fn(body)
        return time.perf_counter() - start

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/quickstart", help="a run folder with indexer/ and ids/")
    ap.add_argument("--generator", default="", help="a seqrec generator folder (default: <run>/generator-rec-ids)")
    ap.add_argument(
        "--retriever", default="", help="a retrieval generator folder (default: <run>/generator-retrieval-ids)"
    )
    ap.add_argument("--queries", default="", help="queries for /retrieve: a BEIR folder (default: <run>/demo_source)")
    ap.add_argument("--requests", type=int, default=120, help="requests per endpoint and concurrency level")
    ap.add_argument("--seconds", type=float, default=30, help="at most this long per endpoint and level")
    ap.add_argument("--threads", default="1,4,16", help="client threads (concurrency levels)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve-load.json"))
    args = ap.parse_args()
    setup_logging()
    run = Path(args.run)
    generator = args.generator or str(run / "generator-rec-ids")
    retriever = args.retriever or str(run / "generator-retrieval-ids")
    work = Path("/tmp") / f"serve-load-{uuid.uuid4().hex[:6]}"  # a copy: the bench's new IDs stay out of the run
    shutil.copytree(run / "ids", work / "ids")
    shutil.copytree(run / "indexer", work / "indexer")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    serving = [f"serve.port={free}", f"serve.generator={generator}", f"serve.retriever={retriever}"]
    cfg = load_config(overrides=[f"output_dir={work}", *serving])
    from lmindexer.serve import start

    url = start(cfg)
    docs = pq.read_table(run / "corpus" / "docs", columns=["doc_id", "text"]).to_pylist()
    items = pq.read_table(Path(generator) / "items.parquet").column("doc_id").to_pylist()
    queries = list(read_queries(args.queries or str(run / "demo_source")).values())
    rng = np.random.default_rng(0)
    n = args.requests

    def bodies(kind: str) -> list:
        if kind == "assign-known":
            return [{"documents": [{"doc_id": docs[i]["doc_id"]}]} for i in rng.integers(0, len(docs), n)]
        if kind == "assign-new":
            return [
                {"documents": [{"doc_id": f"load-{uuid.uuid4().hex}", "text": docs[i]["text"]}]}
                for i in rng.integers(0, len(docs), n)
            ]
        if kind == "retrieve":
            return [{"query": queries[i], "k": 10} for i in rng.integers(0, len(queries), n)]
        return [{"history": [items[j] for j in rng.integers(0, len(items), 5)], "k": 10} for _ in range(n)]

    ids, rec = IdService.load(str(work / "indexer"), str(work / "ids")), RecService.load(generator)
    search = RetrieveService.load(retriever)
    local = {
        "assign-known": lambda b: ids.assign(b["documents"]),
        "assign-new": lambda b: ids.assign(b["documents"]),
        "recommend": lambda b: rec.recommend(b["history"], b["k"]),
        "retrieve": lambda b: search.retrieve(b["query"], b["k"]),
    }
    remote = {"assign-known": "/assign", "assign-new": "/assign", "recommend": "/recommend", "retrieve": "/retrieve"}
    rows = []
    for kind in remote:
        post(url + remote[kind], bodies(kind)[0])  # warm: the replica's first call
        plain = load(timed(local[kind]), bodies(kind), 1, args.seconds)
        for threads in [int(t) for t in args.threads.split(",")]:
            got = load(lambda b, p=remote[kind]: post(url + p, b), bodies(kind), threads, args.seconds)
            got.update(endpoint=kind, in_process_per_second=plain["per_second"])
            got["ratio"] = round(got["per_second"] / plain["per_second"], 3)
            rows.append(got)
            print(json.dumps(got), flush=True)
    out = {"rows": rows, "run": str(run), "documents": len(docs), "items": len(items), "queries": len(queries)}
    write_result(args.out, out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
