"""SASRec, the sequential-recommendation reference: causality, left padding, and that it learns a pattern."""

import numpy as np
import torch

from lmindexer.downstream.sasrec import SASRec, SASRecConfig, left_pad, rank, training_rows


def test_left_padding_and_training_rows():
    assert left_pad([[1, 2, 3], [4]], 4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 4]]
    assert left_pad([[1, 2, 3, 4, 5]], 3).tolist() == [[3, 4, 5]]
    inputs, labels = training_rows([[1, 2, 3]], 4)
    assert inputs.tolist() == [[0, 0, 1, 2]] and labels.tolist() == [[0, 0, 2, 3]]


def test_a_position_never_sees_later_items(tmp_path):
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(items=20, max_len=6, dim=16, heads=2, dropout=0.0)).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6]])
    b = torch.tensor([[0, 0, 3, 4, 9, 10]])
    with torch.no_grad():
        ha, hb = model.hidden(a), model.hidden(b)
    assert torch.allclose(ha[:, :4], hb[:, :4], atol=1e-5) and not torch.allclose(ha[:, 4], hb[:, 4])
    model.save_pretrained(str(tmp_path))
    again = SASRec.from_pretrained(str(tmp_path))
    assert torch.equal(again.scores(a), model.scores(a))


def test_sasrec_learns_a_cycle_and_ranks_without_the_history():
    """Items follow 1 -> 2 -> ... -> 8 -> 1: after a few hundred steps the next item ranks first."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    histories = [[(s + i) % 8 + 1 for i in range(rng.integers(3, 7))] for s in rng.integers(0, 8, 200)]
    model = SASRec(SASRecConfig(items=12, max_len=8, dim=32, heads=2, dropout=0.0))
    inputs, labels = (torch.from_numpy(x) for x in training_rows(histories, 8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(inputs, labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    top = rank(model, [[1, 2], [5, 6, 7]], k=3)
    assert top[0][0] == 3 and top[1][0] == 8
    assert not {1, 2} & set(top[0]) and not {5, 6, 7} & set(top[1])
