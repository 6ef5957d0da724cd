"""The embedded demo corpus: product-like documents drawn from a category tree, user sessions and queries.

Deterministic by seed, so the main job runs anywhere with no data. Written as a BEIR folder (corpus.jsonl,
queries.jsonl, qrels/{train,test}.tsv) plus sequences.txt (`user item item ...`, as Amazon Beauty's Beauty.txt).
"""

from __future__ import annotations

import json
import random

from .. import storage
from ..config import DemoConfig

TOP, SUB, LEAF = 4, 3, 3
SYLLABLES = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bar", "dor", "fen", "gil", "hox", "jun"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def _vocab(rng: random.Random, n: int, taken: set) -> list[str]:
    words = []
    while len(words) < n:
        w = _word(rng)
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def make_demo(cfg: DemoConfig, seed: int = 0) -> dict:
    """Documents, queries, qrels and user sequences as plain Python data.

    A document is a product: brand (per department) + product line (per shelf) + two shelf words, and a body of
    shelf/aisle/department/generic words. A query names a product as a shopper would (brand, line, one title word
    and one body word, shuffled); queries are drawn per document with replacement, so most test documents also have
    other (different) training queries, as in DSI's NQ/MS MARCO splits. A session stays on one shelf and walks its
    product series (the next product of the series, another product of the shelf, or now and then anything)."""
    rng = random.Random(seed)
    taken: set = set()
    generic = _vocab(rng, 60, taken)
    tree = []
    for a in range(TOP):
        top = {"name": f"dept-{a}", "words": _vocab(rng, 8, taken), "brands": _vocab(rng, 5, taken), "subs": []}
        for b in range(SUB):
            sub = {
                "name": f"dept-{a}/aisle-{b}",
                "words": _vocab(rng, 8, taken),
                "leaves": [
                    {
                        "name": f"dept-{a}/aisle-{b}/shelf-{c}",
                        "words": _vocab(rng, 8, taken),
                        "lines": _vocab(rng, 4, taken),
                    }
                    for c in range(LEAF)
                ],
            }
            top["subs"].append(sub)
        tree.append(top)
    docs = []
    for i in range(cfg.num_docs):
        top = rng.choice(tree)
        sub = rng.choice(top["subs"])
        leaf = rng.choice(sub["leaves"])
        title = [rng.choice(top["brands"]), rng.choice(leaf["lines"])] + rng.sample(leaf["words"], 2)
        body = (
            rng.sample(leaf["words"], 3)
            + rng.sample(sub["words"], 2)
            + rng.sample(top["words"], 2)
            + rng.sample(generic, 4)
        )
        rng.shuffle(body)
        docs.append(
            {
                "_id": f"d{i}",
                "title": " ".join(title),
                "text": " ".join(body),
                "category": top["name"],
                "subcategory": sub["name"],
                "shelf": leaf["name"],
            }
        )
    by_shelf: dict = {}
    for d in docs:
        by_shelf.setdefault(d["shelf"], []).append(d["_id"])
    queries, qrels = [], []
    for q in range(cfg.num_queries):
        d = rng.choice(docs)
        title = d["title"].split()
        words = title[:2] + [rng.choice(title[2:]), rng.choice(d["text"].split())]
        rng.shuffle(words)
        queries.append({"_id": f"q{q}", "text": " ".join(words)})
        qrels.append((f"q{q}", d["_id"], 1))
    sequences = []
    for u in range(cfg.num_users):
        series = by_shelf[rng.choice(list(by_shelf))]
        at = rng.randrange(len(series))
        items = []
        for _ in range(rng.randint(5, 12)):
            r = rng.random()
            at = (at + 1) % len(series) if r < 0.6 else rng.randrange(len(series)) if r < 0.9 else at
            items.append(series[at] if r < 0.9 else rng.choice(docs)["_id"])
        sequences.append((f"u{u}", items))
    return {"docs": docs, "queries": queries, "qrels": qrels, "sequences": sequences}


def write_demo(folder: str, cfg: DemoConfig, seed: int = 0) -> str:
    """Write the demo corpus as a BEIR folder (skipped when it is already there)."""
    fs, path = storage.filesystem(folder)
    if storage.exists(fs, storage.join(path, "sequences.txt")):
        return folder
    demo = make_demo(cfg, seed)
    fs.create_dir(storage.join(path, "qrels"), recursive=True)

    def write(name: str, lines: list[str]):
        with fs.open_output_stream(storage.join(path, name)) as f:
            f.write(("\n".join(lines) + "\n").encode())

    write("corpus.jsonl", [json.dumps(d) for d in demo["docs"]])
    write("queries.jsonl", [json.dumps(q) for q in demo["queries"]])
    cut = int(len(demo["qrels"]) * 0.8)
    for name, part in (("train", demo["qrels"][:cut]), ("test", demo["qrels"][cut:])):
        write(f"qrels/{name}.tsv", ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in part])
    write("sequences.txt", [" ".join([u] + items) for u, items in demo["sequences"]])
    return folder
