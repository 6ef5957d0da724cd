"""The reference recommenders and the bootstrap interval, on hand-made data with known answers."""

import numpy as np
import pytest

from lmindexer.downstream.reference import rec_baselines
from lmindexer.eval.ranking import bootstrap_ci, per_query, query_metrics


def test_count_baselines_rank_by_counts_and_leave_out_the_history():
    histories = [["a", "b", "c"], ["a", "b"], ["b", "c"], ["d", "a"], ["e", "c", "a"]]
    out = rec_baselines(histories, k=3)
    # popularity: a 4, b 3, c 3, d 1, e 1 (ties by first seen)
    assert out["most-popular"][1] == ["c", "d", "e"]  # a and b are in the history
    # after "a": b follows twice; after "b": c twice
    assert out["last-item transitions"][3][0] == "b" and out["last-item transitions"][1][0] == "c"
    assert all(
        len(r) == min(3, 5 - len(set(h))) and not set(r) & set(h)
        for r, h in zip(out["co-occurrence (last 3)"], histories)
    )
    assert out["co-occurrence (last 3)"][2][0] == "a"  # c is followed by a in e-c-a


def test_duplicates_count_once_and_the_interval_covers_the_mean():
    m = query_metrics(["a", "a", "b", "a", "c"], {"a": 1, "b": 1}, [5])
    assert m["recall@5"] == 1.0 and m["hit@5"] == 1.0
    assert query_metrics(["x", "x", "x", "a"], {"a": 1}, [2])["recall@2"] == 1.0  # deduplicated: a is second
    rng = np.random.default_rng(1)
    values = (rng.random(5000) < 0.1).astype(float)
    lo, hi = bootstrap_ci(values, samples=400)
    assert lo < values.mean() < hi and hi - lo < 0.025
    assert bootstrap_ci(np.ones(50), samples=100) == (1.0, 1.0)
    per = per_query([["a"], ["b"]], [{"a": 1}, {"a": 1}], [1])
    assert per["recall@1"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        query_metrics(["a"], {}, [1])


def test_bm25_finds_the_document_that_shares_the_query_words():
    from lmindexer.downstream.reference import bm25_rank

    docs = [
        "the cat sat on the mat",
        "stock markets fell sharply today",
        "a recipe for lemon cake",
        "cats and dogs living together",
    ]
    ranked = bm25_rank(["d0", "d1", "d2", "d3"], docs, ["lemon cake recipe", "markets stock"], k=2)
    assert ranked[0][0] == "d2" and ranked[1][0] == "d1" and len(ranked[0]) == 2
