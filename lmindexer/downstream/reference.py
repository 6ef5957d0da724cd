"""Reference recommenders a practitioner runs first, as pure functions over the same leave-one-out split the
generator uses: most popular, last-item transition counts and recent-item co-occurrence. Each ranks every example's
candidates best first, with the example's own history left out and popularity filling the rest of the list.

Counts come from the training sequences, the same interactions the trained models learn from (each user's items
before the validation target), so nothing of a target leaks into them and no method sees more data than another.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from ..runtime import quiet


def _counts(histories: list) -> tuple[list, dict, dict]:
    """(items by popularity, best first; next-item counts per item; co-occurrence within the 3 following items)."""
    pop, trans, cooc = Counter(), defaultdict(Counter), defaultdict(Counter)
    for h in histories:
        pop.update(h)
        for i, a in enumerate(h):
            for j, b in enumerate(h[i + 1 : i + 4]):
                if j == 0:
                    trans[a][b] += 1
                cooc[a][b] += 1
    return [i for i, _ in pop.most_common()], trans, cooc


def _fill(scores: Counter, popular: list, history: list, k: int) -> list:
    seen = set(history)
    ranked = [i for i, _ in sorted(scores.items(), key=lambda x: (-x[1], str(x[0]))) if i not in seen][:k]
    taken = set(ranked)
    for i in popular:
        if len(ranked) >= k:
            break
        if i not in seen and i not in taken:
            ranked.append(i)
            taken.add(i)
    return ranked


def rec_baselines(histories: list, k: int, counted: list | None = None) -> dict[str, list]:
    """{method: [ranked list of k items per history]} for `most-popular`, `last-item transitions` and
    `co-occurrence (last 3)`; `histories` are the evaluated examples' histories, oldest first, and the counts come
    from `counted` (default: the same histories; every history of the split when only a sample is evaluated)."""
    popular, trans, cooc = _counts(histories if counted is None else counted)
    out = {"most-popular": [], "last-item transitions": [], "co-occurrence (last 3)": []}
    for h in histories:
        out["most-popular"].append(_fill(Counter(), popular, h, k))
        out["last-item transitions"].append(_fill(trans.get(h[-1], Counter()) if h else Counter(), popular, h, k))
        recent = Counter()
        for j, a in enumerate(reversed(h[-3:]), 1):  # the newest item counts most
            for b, c in cooc.get(a, {}).items():
                recent[b] += c / j
        out["co-occurrence (last 3)"].append(_fill(recent, popular, h, k))
    return out


def bm25_rank(doc_ids: list, texts: list, queries: list, k: int) -> list:
    """[ranked doc ids per query] by BM25 (the `bm25s` package: Lucene's variant, k1 1.5, b 0.75, English stop
    words), the lexical retriever a generative one is compared with."""
    import bm25s

    if quiet():  # after the import, which sets bm25s' logger to DEBUG: "Building index from IDs objects" per row
        logging.getLogger("bm25s").setLevel(logging.WARNING)
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
    found, _ = index.retrieve(bm25s.tokenize(queries, show_progress=False), k=min(k, len(doc_ids)), show_progress=False)
    return [[doc_ids[i] for i in row] for row in found]


def reference_rankings(task: str, inputs: dict, doc_ids: list, texts: list | None, k: int) -> dict[str, list]:
    """{method: ranked doc ids per evaluated example}: BM25 for retrieval, the count recommenders for rec."""
    if task == "retrieval":
        return {"BM25": bm25_rank(doc_ids, texts, inputs["queries"], k)}
    return rec_baselines(inputs["histories"], k, inputs["train_sequences"])
