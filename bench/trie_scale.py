"""The ID trie at scale: build time and memory of the tensor (CSR) trie for N IDs, against a plain Python
dict-of-dicts trie (the usual way, and the original code's) built from the same IDs in the same run; then the time
of one constrained decoding step for a batch of beams, against a `prefix_allowed_tokens_fn` walking the dict trie.

    .venv/bin/python -m bench.trie_scale            # 1M IDs: 3 codes of 256 + a suffix
    .venv/bin/python -m bench.trie_scale 200000
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from bench.provenance import write_result
from lmindexer.downstream.trie import TrieLogitsProcessor, build_trie, trie_bytes

ROOT = Path(__file__).resolve().parents[1]

VOCAB_OFFSET, EOS, PAD = 100, 1, 0


def dict_trie(ids: np.ndarray) -> dict:
    root: dict = {}
    for row in ids.tolist():
        node = root
        for tok in row:
            node = node.setdefault(tok, {})
    return root


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rng = np.random.default_rng(0)
    ids = (
        np.stack([rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(0, 4, n)], 1)
        + VOCAB_OFFSET
        + np.array([0, 256, 512, 768])
    )
    start = time.perf_counter()
    trie = build_trie(ids)
    tensor_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = dict_trie(ids)
    dict_s = time.perf_counter() - start
    del plain
    tracemalloc.start()  # memory in a second pass: tracing slows Python allocations, so it is not timed
    build_trie(ids)
    tensor_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    plain = dict_trie(ids)
    dict_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{n:,} IDs of 4 tokens, {len(trie['child']):,} trie edges")
    print(
        f"tensor trie: {tensor_s:.2f}s to build, {trie_bytes(trie) / 2**20:.1f} MiB kept "
        f"(peak while building {tensor_peak / 2**20:.1f} MiB)"
    )
    print(f"dict trie:   {dict_s:.2f}s to build, {dict_bytes / 2**20:.1f} MiB kept")
    print(f"ratio dict/tensor: build time {dict_s / tensor_s:.1f}x, memory {dict_bytes / trie_bytes(trie):.1f}x")
    result = {
        "ids": n,
        "edges": len(trie["child"]),
        "tensor_build_s": round(tensor_s, 3),
        "tensor_mib": round(trie_bytes(trie) / 2**20, 1),
        "dict_build_s": round(dict_s, 3),
        "dict_mib": round(dict_bytes / 2**20, 1),
        "step_ms": {},
    }

    beams, vocab = 1000, VOCAB_OFFSET + 768 + 4
    proc = TrieLogitsProcessor(trie, EOS, PAD)
    rows = ids[rng.integers(0, n, beams)]
    for depth in (1, 3):
        input_ids = torch.from_numpy(np.concatenate([np.zeros((beams, 1), np.int64), rows[:, :depth]], 1))
        scores = torch.zeros(beams, vocab)
        start = time.perf_counter()
        for _ in range(5):
            proc(input_ids, scores)
        tensor_step = (time.perf_counter() - start) / 5

        def allowed(prefix):
            node = plain
            for tok in prefix:
                node = node[tok]
            return list(node)

        start = time.perf_counter()
        for _ in range(5):
            mask = torch.full((beams, vocab), float("-inf"))
            for b, prefix in enumerate(rows[:, :depth].tolist()):
                mask[b, allowed(prefix)] = 0
        dict_step = (time.perf_counter() - start) / 5
        print(
            f"one decoding step, {beams} beams, depth {depth}: tensor {tensor_step * 1e3:.1f} ms, "
            f"dict walk {dict_step * 1e3:.1f} ms (ratio {dict_step / tensor_step:.1f}x)"
        )
        result["step_ms"][depth] = {"tensor": round(tensor_step * 1e3, 2), "dict": round(dict_step * 1e3, 2)}
    out = ROOT / "bench" / "results" / "trie.json"
    write_result(out, result)


if __name__ == "__main__":
    main()
