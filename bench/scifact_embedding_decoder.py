"""The generator that reads a frozen encoder (generator.encoder) on SciFact, in a plain loop beside its baselines.

The pipeline's default generator is a T5 trained from scratch on token ids (recall@10 0.089 on SciFact, BM25 0.774).
Here the pipeline's EmbeddingGenerator (a fresh `d128` T5 whose decoder attends to 4 slots projected from a frozen
all-MiniLM-L6-v2 embedding of the input) writes the document's ID (MiniLM + hierarchical k-means, 3 x 64 + suffix:
the table `bench/full_generators.py scifact` makes) under the ID trie. Training examples: the train queries, every
document (title + text) and up to 3 of its sentences as pseudo-queries (the pipeline's views are word spans). A plain
single-process PyTorch loop (2 threads), no Ray: it measures the model, and `bench/full_generators.py` runs the same
model through `train-generator`. Beside it, in the same run and on the same 300 test queries: BM25 (bm25s) and MiniLM
dense retrieval (cosine over the same embeddings), which is what a user holding these embeddings would run instead.

    .venv/bin/python -m bench.scifact_embedding_decoder            # ~10 min on 2 cores (embeddings ~4.5, kept)
    .venv/bin/python -m bench.scifact_embedding_decoder --epochs 60
Writes runs/bench-scifact-embedding-decoder.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.shared_data import DATA
from lmindexer.data.generator_data import read_qrels, read_queries
from lmindexer.downstream.decode import beam_search
from lmindexer.downstream.reference import bm25_rank
from lmindexer.downstream.splits import sentence_views
from lmindexer.downstream.trie import TrieLogitsProcessor, build_trie
from lmindexer.ids.table import read_id_table
from lmindexer.models.backbone import build_t5
from lmindexer.models.generator import EmbeddingGenerator
from lmindexer.models.pretrained import resolve
from lmindexer.stages.evaluate import summarise

ROOT = Path(__file__).resolve().parents[1]

SCIFACT = DATA / "scifact" / "derived_beir"
IDS = ROOT / "runs" / "bench-scifact-gen" / "ids-hkmeans"
WORK = ROOT / "runs" / "bench-scifact-embedding-decoder"
KS = [1, 5, 10]
PAD, EOS = 0, 1


def read_scifact():
    docs = [json.loads(line) for line in open(SCIFACT / "corpus.jsonl")]
    qrels = {split: read_qrels(str(SCIFACT), split) for split in ("train", "test")}
    return docs, read_queries(str(SCIFACT)), qrels


def sentences(docs: list, per_doc: int, seed: int) -> tuple[list, list]:
    """Up to `per_doc` sentences of each document's text (the pipeline's `generator.view_kind=sentences` views), and
    the row of the document each came from."""
    rng = np.random.default_rng(seed)
    views = [(i, v) for i, d in enumerate(docs) for v in sentence_views(d["text"], per_doc, rng)]
    return [v for _, v in views], [i for i, _ in views]


@torch.no_grad()
def minilm(texts: list, max_length: int) -> np.ndarray:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings (the sentence-transformers recipe)."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve("minilm-offline")
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    for i in range(0, len(texts), 64):
        e = tok(texts[i : i + 64], max_length=max_length, truncation=True, padding=True, return_tensors="pt")
        mask = e["attention_mask"][..., None].float()
        pooled = (enc(**e).last_hidden_state * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out).numpy()


def decoder(dim: int, vocab: int, dropout: float) -> EmbeddingGenerator:
    """The pipeline's EmbeddingGenerator (generator.encoder) over a fresh T5 of the `d128` shape (2 + 2 layers,
    d_model 128) with this bench's own vocabulary (pad 0, eos 1, then the ID tokens), reading 4 memory slots."""
    return EmbeddingGenerator(build_t5("d128", vocab, dropout), dim, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if not IDS.exists():
        sys.exit(f"no ID table at {IDS}: run `.venv/bin/python -m bench.full_generators scifact` first")
    docs, queries, qrels = read_scifact()
    table = read_id_table(str(IDS))
    T, K, S = table.codes.shape[1], table.codebook_size, table.spec.suffixes
    tokens = np.concatenate([2 + np.arange(T) * K + table.codes, (2 + T * K + table.suffix)[:, None]], 1)
    row = table.row
    doc_ids = [d["_id"] for d in docs]
    missing = [d for d in doc_ids if d not in row]
    if missing:
        sys.exit(f"{len(missing)} SciFact documents have no ID in {IDS}")
    doc_tokens = tokens[[row[d] for d in doc_ids]]
    texts, owner = sentences(docs, 3, args.seed)
    qkeys = sorted(set(qrels["train"]) | set(qrels["test"]))

    WORK.mkdir(parents=True, exist_ok=True)
    cache = WORK / "minilm.npz"
    start = time.time()
    if cache.exists():  # computed once (the time it took is kept with it)
        z = np.load(cache)
        demb, semb, qemb, embed_s = z["docs"], z["sentences"], z["queries"], float(z["seconds"])
    else:
        demb = minilm([d["title"] + " " + d["text"] for d in docs], 128)
        semb = minilm(texts, 64)
        qemb = minilm([queries[q] for q in qkeys], 64)
        embed_s = round(time.time() - start, 1)
        np.savez(cache, docs=demb, sentences=semb, queries=qemb, seconds=embed_s)
    qrow = {q: i for i, q in enumerate(qkeys)}
    drow = {d: i for i, d in enumerate(doc_ids)}
    test = [q for q in qrels["test"] if any(d in drow for d in qrels["test"][q])]
    relevant = [qrels["test"][q] for q in test]

    rows = []

    def add(name: str, ranked: list, seconds: float, **extra) -> None:
        means, intervals, _ = summarise(ranked, relevant, KS)
        rows.append({"method": name, "metrics": means, "intervals": intervals, "seconds": round(seconds, 1), **extra})
        print(f"{name}: recall@10 {means['recall@10']:.4f} {intervals['recall@10']}", flush=True)

    t = time.time()
    add(
        "BM25 (bm25s)",
        bm25_rank(doc_ids, [d["title"] + " " + d["text"] for d in docs], [queries[q] for q in test], 10),
        time.time() - t,
    )
    t = time.time()
    sims = qemb[[qrow[q] for q in test]] @ demb.T
    add("MiniLM dense (cosine)", [[doc_ids[j] for j in np.argsort(-s)[:10]] for s in sims], time.time() - t)

    train = [(q, d) for q, rel in qrels["train"].items() for d in rel if d in drow]
    x = torch.from_numpy(np.concatenate([demb, semb, qemb[[qrow[q] for q, _ in train]]])).float()
    y = np.concatenate([doc_tokens, doc_tokens[owner], doc_tokens[[drow[d] for _, d in train]]])
    y = torch.from_numpy(np.concatenate([y, np.full((len(y), 1), EOS)], 1)).long()
    counts = {"documents": len(demb), "sentences": len(semb), "train_query_pairs": len(train), "examples": len(x)}
    model = decoder(x.shape[1], 2 + T * K + S, 0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    steps = args.epochs * (len(x) // args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200) * max(0.0, 1 - s / steps))
    trie = build_trie(doc_tokens)
    processor = TrieLogitsProcessor(trie, EOS, PAD)
    tok2doc = {tuple(s): doc_ids[i] for i, s in enumerate(doc_tokens.tolist())}
    queries_x = torch.from_numpy(qemb[[qrow[q] for q in test]]).float()

    def rank() -> list:
        model.eval()
        with torch.no_grad():
            out = beam_search(model, processor, trie["depth"], 10, queries_x, None).tolist()
        model.train()
        return [[tok2doc.get(tuple(out[i * 10 + j]), "?") for j in range(10)] for i in range(len(test))]

    curve, t = [], time.time()
    for epoch in range(args.epochs):
        perm, total = torch.randperm(len(x)), 0.0
        for i in range(0, len(x) - args.batch_size + 1, args.batch_size):
            b = perm[i : i + args.batch_size]
            loss = model(input_emb=x[b], labels=y[b]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if (epoch + 1) % 10 == 0:
            curve.append({"epoch": epoch + 1, "loss": round(total / (len(x) // args.batch_size), 4)})
            print(f"epoch {epoch + 1}: loss {curve[-1]['loss']} ({time.time() - t:.0f}s)", flush=True)
    train_s = time.time() - t
    t = time.time()
    add(
        "generator reading frozen MiniLM embeddings (plain loop)",
        rank(),
        train_s + time.time() - t,
        train_seconds=round(train_s, 1),
        epochs=args.epochs,
        curve=curve,
        examples=counts,
    )
    out = ROOT / "runs" / "bench-scifact-embedding-decoder.json"
    out.write_text(
        json.dumps({"queries": len(test), "embed_seconds": embed_s, "ids": str(IDS), "rows": rows}, indent=2)
    )
    print(f"\n{len(test)} test queries; MiniLM embeddings {embed_s}s; written to {out}")


if __name__ == "__main__":
    main()
