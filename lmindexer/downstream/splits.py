"""Examples for the generator, as pure functions: retrieval (query -> relevant document) and sequential
recommendation (history -> next item, leave-one-out). Whatever cannot be used is counted, never dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np


def retrieval_examples(queries: dict, qrels: dict, known) -> tuple[list, Counter]:
    """[(query id, {doc: grade > 0})] for queries with text and at least one relevant document in `known`."""
    out, skipped = [], Counter()
    for qid, docs in qrels.items():
        if qid not in queries:
            skipped["query_without_text"] += 1
            continue
        rel = {d: g for d, g in docs.items() if g > 0}
        missing = [d for d in rel if d not in known]
        skipped["relevant_doc_without_id"] += len(missing)
        rel = {d: g for d, g in rel.items() if d in known}
        if not rel:
            skipped["query_without_relevant_doc"] += 1
            continue
        out.append((qid, rel))
    return out, skipped


def split_sequences(sequences: dict, known) -> tuple[dict, Counter]:
    """Leave-one-out: per user, the last item is the test target, the second to last the validation target, and
    every prefix of the rest predicts its next item (training). Items without an ID are removed (counted); a user
    needs three items left."""
    split = {"train": [], "valid": [], "test": []}
    skipped = Counter()
    for user, items in sequences.items():
        kept = [i for i in items if i in known]
        skipped["item_without_id"] += len(items) - len(kept)
        if len(kept) < 3:
            skipped["user_with_under_3_items"] += 1
            continue
        split["test"].append((user, kept[:-1], kept[-1]))
        split["valid"].append((user, kept[:-2], kept[-2]))
        split["train"].extend((user, kept[:i], kept[i]) for i in range(1, len(kept) - 2))
    return split, skipped


def word_views(text: str, views: int, rng: np.random.Generator, low: int = 2, high: int = 6) -> list[str]:
    """`views` short pseudo-queries of a document: each keeps `low`..`high` of its words, in their order (the
    "document as query" views NCI and DSI-QG train on, so a generator meets query-length inputs for every document)."""
    words = text.split()
    out = []
    for _ in range(views if words else 0):
        k = min(int(rng.integers(low, high + 1)), len(words))
        out.append(" ".join(words[j] for j in np.sort(rng.choice(len(words), size=k, replace=False))))
    return out


def sentence_views(text: str, views: int, rng: np.random.Generator, min_words: int = 5) -> list[str]:
    """Up to `views` of a document's sentences of `min_words` words or more, drawn without replacement (pseudo-queries
    for a task whose queries are sentences, such as SciFact's claims); fewer when the document has fewer."""
    parts = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.split()) >= min_words]
    return [parts[j] for j in rng.choice(len(parts), size=min(views, len(parts)), replace=False)] if parts else []


def history_pieces(history: list, max_items: int) -> list:
    """The most recent `max_items` items, newest first."""
    return history[::-1][:max_items]


def pack(pieces: list, max_length: int, eos: int | None) -> np.ndarray:
    """[N, max_length] int32: each example's token pieces joined in order, cut to max_length - 1, then eos, then 0s
    (eos None: cut to max_length, no eos)."""
    out = np.zeros((len(pieces), max_length), dtype=np.int32)
    for i, parts in enumerate(pieces):
        row = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]) if parts else np.zeros(0, np.int64)
        row = row[: max_length - (eos is not None)]
        out[i, : len(row)] = row
        if eos is not None:
            out[i, len(row)] = eos
    return out


def sample(items: list, limit: int, seed: int) -> list:
    """A seeded sample of `limit` items in their original order (all of them when limit is 0 or larger)."""
    if not limit or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def hold_out(qrels: dict, share: float, limit: int, seed: int) -> tuple[dict, dict]:
    """(kept, held out): a seeded `share` of the queries, at most `limit`, held out for validation (for BEIR sets
    without a dev split, so the generator is validated on queries it never trained on)."""
    keys = sorted(qrels)
    n = min(limit, int(len(keys) * share)) if limit else 0
    out = set(np.random.default_rng(seed).choice(len(keys), size=n, replace=False).tolist()) if n else set()
    held = {k for i, k in enumerate(keys) if i in out}
    return {k: v for k, v in qrels.items() if k not in held}, {k: v for k, v in qrels.items() if k in held}
