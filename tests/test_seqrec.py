"""The one-pass ID generator and SASRec (lmindexer.models.seqrec): item vectors composed from IDs, causality, exact
scoring against a brute-force loop, and that it learns a pattern."""

import numpy as np
import pytest
import torch

from lmindexer.eval.ranking import paired_bootstrap, seed_verdict
from lmindexer.models.seqrec import SeqRec, SeqRecConfig, item_rows, rank, right_pad, top_k, training_rows


def test_right_padding_and_training_rows():
    assert right_pad([[1, 2, 3], [4]], 4).tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert right_pad([[1, 2, 3, 4, 5]], 3).tolist() == [[3, 4, 5]]
    inputs, labels = training_rows([[1, 2, 3]], 4)
    assert inputs.tolist() == [[1, 2, 0, 0]] and labels.tolist() == [[2, 3, 0, 0]]


def test_item_rows_compose_codes_and_prefixes():
    codes = np.array([[0, 1], [0, 2], [1, 1], [0, 1]])
    suffix = np.array([0, 0, 0, 1])
    rows, n = item_rows("codes", codes, suffix)
    # position 1 has codes 0..1 (rows 0-1), position 2 codes 0..2 (rows 2-4), the suffix 0..1 (rows 5-6)
    assert rows.tolist() == [[0, 3, 5], [0, 4, 5], [1, 3, 5], [0, 3, 6]] and n == 7
    rows, n = item_rows("prefixes", codes, suffix)
    # prefixes (0), (1); (0,1), (0,2), (1,1); four distinct full IDs
    assert rows.tolist() == [[0, 2, 5], [0, 3, 7], [1, 4, 8], [0, 2, 6]] and n == 9
    assert len({tuple(r) for r in rows.tolist()}) == 4  # the suffix keeps colliding items apart
    rows, n = item_rows("item", items=3)
    assert rows.tolist() == [[0], [1], [2]] and n == 3
    with pytest.raises(ValueError, match="compose"):
        item_rows("bits", codes, suffix)


def _model(compose="codes", items=30, dropout=0.0, seed=0):
    rng = np.random.default_rng(seed)
    codes, suffix = rng.integers(0, 4, (items, 3)), np.zeros(items, dtype=np.int64)
    _, first = np.unique(codes, axis=0, return_index=True)
    suffix[np.setdiff1d(np.arange(items), first)] = 1  # (a repeated tuple gets suffix 1; enough for the test)
    rows, n = item_rows(compose, codes, suffix, items)
    torch.manual_seed(seed)
    cfg = SeqRecConfig(items=items, rows=n, compose=compose, max_len=8, dim=16, heads=2, dropout=dropout)
    return SeqRec(cfg, torch.from_numpy(rows))


def test_a_position_never_sees_later_items_and_the_model_round_trips(tmp_path):
    model = _model().eval()
    a, b = torch.tensor([[3, 4, 5, 6, 0, 0]]), torch.tensor([[3, 4, 9, 10, 11, 0]])
    with torch.no_grad():
        ha, hb = model.hidden(a, model.item_table()), model.hidden(b, model.item_table())
    assert torch.allclose(ha[:, :2], hb[:, :2], atol=1e-5) and not torch.allclose(ha[:, 2], hb[:, 2])
    model.save_pretrained(str(tmp_path))
    again = SeqRec.from_pretrained(str(tmp_path))
    assert not again.training and torch.equal(again.item_rows, model.item_rows)
    assert torch.equal(again.user_states(a), model.user_states(a))


@pytest.mark.parametrize("compose", ["codes", "prefixes", "item"])
def test_exact_scoring_equals_a_brute_force_loop(compose):
    """top_k in small chunks, with the history left out, against each item's vector built on its own and scored."""
    model = _model(compose, items=50).eval()
    histories = [[1, 2, 3], [7], [4, 9, 11, 30, 2, 5, 6, 8, 10, 12]]  # the last one longer than max_len
    got = rank(model, histories, k=7)
    states = model.user_states(torch.from_numpy(right_pad(histories, model.cfg.max_len)))
    with torch.no_grad():
        for h, s, row in zip(histories, states, got):
            scores = {}
            for item in range(1, 51):
                if item not in h:
                    vec = sum(model.emb.weight[r] for r in model.item_rows[item - 1].tolist())
                    scores[item] = float(s @ vec)
            want = sorted(scores, key=lambda i: -scores[i])[:7]
            assert row == want
    # chunks smaller than the table give the same answer as one chunk
    table = model.item_table().detach()
    one = top_k(states, table, 5)
    chunked = top_k(states, table, 5, chunk=len(states) * 6)
    assert torch.equal(one[1], chunked[1]) and torch.allclose(one[0], chunked[0])


def test_the_one_pass_generator_learns_a_cycle_and_ranks_without_the_history():
    """Items follow 1 -> 2 -> ... -> 8 -> 1: after a few hundred steps the next item ranks first."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    histories = [[(s + i) % 8 + 1 for i in range(rng.integers(3, 7))] for s in rng.integers(0, 8, 200)]
    model = _model("codes", items=12)
    inputs, labels = (torch.from_numpy(x) for x in training_rows(histories, 8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(inputs, labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    top = rank(model, [[1, 2], [5, 6, 7]], k=3)
    assert top[0][0] == 3 and top[1][0] == 8
    assert not {1, 2} & set(top[0]) and not {5, 6, 7} & set(top[1])


def test_paired_bootstrap_and_the_seed_verdict():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, 2000).astype(float)
    a = np.where(rng.random(2000) < 0.1, 1.0, b)  # a = b plus 10% more hits on the same queries
    mean, lo, hi = paired_bootstrap(a, b)
    assert lo > 0 and lo < mean < hi and abs(mean - (a - b).mean()) < 1e-12
    _, lo_same, hi_same = paired_bootstrap(b, b)
    assert lo_same == hi_same == 0
    assert seed_verdict((mean, lo, hi), [0.30, 0.31], [0.25, 0.26]) == "above"
    assert seed_verdict((mean, lo, hi), [0.30, 0.24], [0.25, 0.26]) == "not separated"  # the seeds overlap
    assert seed_verdict((-mean, -hi, -lo), [0.2], [0.3]) == "below"
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap(a, b[:10])
