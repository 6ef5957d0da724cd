"""The pieces that make later ID positions split their parent's documents: the conditional-entropy figures,
same-prefix batches and contrast, the code-usage guard, residual scoring and frozen lower layers."""

import math

import numpy as np
import pytest
import torch

from lmindexer.config import IndexerConfig, ModelConfig
from lmindexer.eval.metrics import collision_rate, conditional_perplexity, split_stats
from lmindexer.ids.negatives import prefix_batches, prefix_ids
from lmindexer.models.backbone import load_backbone
from lmindexer.models.codebook import fit_offsets
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.models.losses import (
    neighbourhood_loss,
    prefix_collision_loss,
    prefix_contrastive_loss,
    usage_loss,
)


def test_split_stats_exact_values_on_a_hand_made_table():
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    first, second = split_stats(codes)
    assert first["cond_entropy"] == pytest.approx(math.log(2), abs=1e-4)  # H(c1), prefix = corpus
    assert first["children_mean"] == 2 and first["prefixes"] == 1
    # H(c1, c2) over counts (1, 1, 2) minus H(c1) over (2, 2)
    h = -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5)) - math.log(2)
    assert second["cond_entropy"] == pytest.approx(h, abs=1e-4)
    assert second["cond_perplexity"] == pytest.approx(math.exp(h), abs=0.01)
    assert second["children_mean"] == 1.5 and second["children_max"] == 2 and second["one_child"] == 0.5
    assert second["cond_perplexity_max"] == pytest.approx(2.0)  # 4 documents over 2 even prefixes
    assert first["cond_perplexity_max"] == pytest.approx(4.0)
    assert collision_rate(codes) == 0.25  # one of four documents needs suffix 1
    assert collision_rate(np.array([[0, 0], [0, 0], [0, 0]])) == pytest.approx(2 / 3)


def test_a_position_that_copies_its_parent_has_conditional_perplexity_one():
    parent = np.repeat(np.arange(8), 10)
    copied = np.stack([parent, parent * 3 % 8], 1)  # c2 is a function of c1
    assert split_stats(copied)[1]["cond_perplexity"] == 1.0 and split_stats(copied)[1]["one_child"] == 1.0
    spread = np.stack([parent, np.tile(np.arange(10), 8)], 1)  # c2 independent of c1, 10 even children
    assert split_stats(spread)[1]["cond_perplexity"] == pytest.approx(10.0, abs=0.01)
    pairs = np.zeros((8, 16))
    pairs[np.arange(8), np.arange(8)] = 5
    assert conditional_perplexity(pairs) == 1.0
    assert conditional_perplexity(np.ones((8, 4))) == pytest.approx(4.0)


def test_prefix_batches_keep_same_prefix_documents_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), rng.integers(1, 12, 30))
    rows = rng.permutation(len(groups))[: len(groups) - 3]
    batches = prefix_batches(rows, groups, 16, 5, rng)
    assert len(batches) == len(rows) // 16 and all(len(b) == 16 for b in batches)
    flat = np.concatenate(batches)
    assert len(set(flat)) == len(flat) and set(flat) <= set(rows)
    runs = np.r_[True, groups[flat][1:] != groups[flat][:-1]]  # same-prefix pieces lie end to end
    lengths = np.diff(np.r_[np.flatnonzero(runs), len(flat)])
    assert lengths.mean() > 2.5
    assert prefix_ids(np.zeros((4, 0), dtype=np.int64)).tolist() == [0, 0, 0, 0]
    assert prefix_ids(np.array([[3, 1], [2, 0], [3, 1]])).tolist() == [1, 0, 1]


def test_prefix_contrast_only_compares_documents_of_one_prefix():
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    group = torch.tensor([0, 0, 1, 1, 2])  # row 4 is alone: skipped
    logits = a @ b.T
    want = np.mean([-torch.log_softmax(logits[i, [i - i % 2, i - i % 2 + 1]], 0)[i % 2].item() for i in range(4)])
    assert prefix_contrastive_loss(a, b, group).item() == pytest.approx(want, rel=1e-5)
    b2 = b.clone()
    b2[2:] = torch.randn(3, 8)  # other groups' rows do not enter rows 0-1's loss
    half = prefix_contrastive_loss(a[:2], b2[:2], group[:2])
    assert half.item() == pytest.approx(prefix_contrastive_loss(a[:2], b[:2], group[:2]).item())
    alone = prefix_contrastive_loss(a, b, torch.arange(5))
    assert alone.item() == 0.0
    cos = prefix_contrastive_loss(a, b, group, "cos", 0.1)
    assert torch.isfinite(cos) and cos.item() != pytest.approx(want)


def test_usage_loss_is_zero_when_spread_and_log_k_when_collapsed():
    assert usage_loss(torch.zeros(4, 8)).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.full((6, 8), -50.0)
    collapsed[:, 3] = 50.0
    assert usage_loss(collapsed).item() == pytest.approx(math.log(8), abs=1e-4)
    logits = torch.randn(32, 8, requires_grad=True)
    usage_loss(logits).backward()
    assert logits.grad.abs().sum() > 0


def test_prefix_collision_loss_is_the_same_code_probability_of_same_prefix_pairs():
    sharp = torch.full((4, 3), -50.0)
    sharp[[0, 1, 2, 3], [0, 0, 1, 2]] = 50.0  # rows 0 and 1 pick code 0, rows 2 and 3 codes 1 and 2
    together = torch.tensor([7, 7, 9, 9])
    assert prefix_collision_loss(sharp, together).item() == pytest.approx(0.5, abs=1e-6)  # one of two groups collides
    assert prefix_collision_loss(sharp, torch.tensor([7, 9, 7, 9])).item() == pytest.approx(0.0, abs=1e-6)
    assert prefix_collision_loss(sharp, torch.arange(4)).item() == 0.0  # no same-prefix pair
    # uniform rows over K codes: any pair collides with probability 1/K, however sharp the rows are not
    assert prefix_collision_loss(torch.zeros(3, 4), torch.zeros(3)).item() == pytest.approx(0.25, abs=1e-6)
    logits = torch.randn(6, 5, requires_grad=True)
    prefix_collision_loss(logits, torch.tensor([0, 0, 0, 1, 1, 2])).backward()
    assert logits.grad[:5].abs().sum() > 0 and logits.grad[5].abs().sum() == 0  # a lone row gets no gradient


def test_neighbourhood_loss_is_zero_where_similarities_stay_and_grows_as_they_move():
    torch.manual_seed(0)
    anchors = torch.randn(8, 16)
    assert neighbourhood_loss(anchors.clone(), anchors, 0.1).item() == pytest.approx(0.0, abs=1e-6)
    # cosine: a per-row rescaling keeps every neighbourhood; a rotation of the whole space too
    scaled = anchors * torch.arange(1, 9).float()[:, None]
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    assert neighbourhood_loss(scaled, anchors, 0.1).item() == pytest.approx(0.0, abs=1e-5)
    assert neighbourhood_loss(anchors @ rotation, anchors, 0.1).item() == pytest.approx(0.0, abs=1e-5)
    near = neighbourhood_loss(anchors + 0.1 * torch.randn(8, 16), anchors, 0.1).item()
    swapped = neighbourhood_loss(anchors[torch.randperm(8)], anchors, 0.1).item()
    assert 0 < near < swapped  # rows that trade places lose their neighbours
    states = torch.randn(8, 16, requires_grad=True)
    frozen = anchors.clone().requires_grad_(True)
    neighbourhood_loss(states, frozen, 0.1).backward()
    assert states.grad.abs().sum() > 0 and frozen.grad is None  # the anchors take no gradient
    assert neighbourhood_loss(torch.randn(1, 16), torch.randn(1, 16), 0.1).item() == 0.0  # a batch of one: none


def _indexer(tmp_path, backbone, **indexer):
    texts = [f"item {i} colour {i % 5} size {i % 3}" for i in range(100)]
    model, tok = load_backbone(ModelConfig(vocab_size=200, backbone=backbone), texts)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    idx = SemanticIndexer.from_backbone(str(tmp_path), IndexerConfig(num_positions=3, codebook_size=4, **indexer), 12)
    enc = idx.tokenizer(texts[:4], max_length=12, truncation=True, padding="max_length", return_tensors="pt")
    return idx.eval(), enc["input_ids"], enc["attention_mask"]


def test_frozen_lower_layers_share_states_and_get_no_gradients(tmp_path):
    idx, ids, mask = _indexer(tmp_path, "encoder", frozen_layers=1)
    one, two = torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1, dtype=torch.long)
    with torch.no_grad():
        a, b = idx.states(ids, mask, one, every=True), idx.states(ids, mask, two, every=True)
        lower = idx.lower_states(ids, mask)
        again = idx.states(ids, mask, two, lower=lower)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-5)  # position 1 does not see code 1
    assert not torch.allclose(a[:, 1], b[:, 1])  # position 2 does, through the trained layers
    assert torch.allclose(again[:, 0], b[:, 1], atol=1e-5)
    idx.set_phase("joint", 2)
    idx.train()
    out = idx(ids, mask, one, group=torch.tensor([0, 0, 1, 1]))
    out["loss"].backward()
    layers = idx.backbone.encoder.layer
    assert all(p.grad is None for p in layers[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in layers[1].parameters())
    with pytest.raises(ValueError, match="frozen_layers"):
        _indexer(tmp_path / "t5", "t5", frozen_layers=1)


def test_later_positions_codebook_trains_codebook_t_and_leaves_the_encoder(tmp_path):
    idx, ids, mask = _indexer(tmp_path, "t5", later_positions="codebook", residual=True, selection="l2")
    idx.set_phase("joint", 1)
    assert all(p.requires_grad for p in idx.backbone.parameters())
    idx.set_phase("joint", 2)
    idx.train()
    idx(ids, mask, torch.zeros(4, 1, dtype=torch.long), group=torch.tensor([0, 0, 1, 1]))["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in idx.backbone.parameters())
    assert idx.codebooks[1].weight.grad is not None and idx.codebooks[1].weight.grad.abs().sum() > 0
    assert idx.codebooks[0].weight.grad is None


def test_residual_scores_what_the_earlier_codes_leave(tmp_path):
    idx, ids, mask = _indexer(tmp_path, "t5", residual=True, selection="l2")
    idx.state["positions_done"] = 3
    h = torch.randn(4, idx.backbone.config.d_model)
    prefix = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0]])
    book = idx.codebooks[2]
    assert book.offsets.shape == (2, 4, h.shape[1]) and idx.codebooks[0].offsets is None
    with torch.no_grad():
        book.offsets.normal_()
    q = idx.query(h, prefix, 3)
    assert torch.allclose(q, h - book.offsets[0][prefix[:, 0]] - book.offsets[1][prefix[:, 1]])
    assert torch.equal(idx.query(h, prefix, 1), h)
    codes = idx.generate_codes(ids, mask)
    with torch.no_grad():
        h3 = idx.states(ids, mask, codes[:, :2])[:, -1]
    assert torch.equal(idx.code_scores(h3, 3, codes[:, :2]).argmax(-1), codes[:, 2])


def test_corpus_vocabulary_head_scores_only_corpus_tokens(tmp_path):
    idx, ids, mask = _indexer(tmp_path, "encoder")
    vocab = torch.unique(ids).tolist()
    idx.state["recon_vocab"] = vocab
    idx.save_pretrained(str(tmp_path / "saved"))
    again = SemanticIndexer.from_pretrained(str(tmp_path / "saved"))
    assert again.recon_vocab.tolist() == vocab and again.recon_index[vocab[3]] == 3
    assert again.token_logits(torch.randn(2, again.backbone.config.hidden_size)).shape == (2, len(vocab))
    again.set_phase("joint", 1)
    out = again(ids, mask, torch.zeros(4, 0, dtype=torch.long))
    assert torch.isfinite(out["recon"]) and out["recon"] < math.log(len(vocab)) * 1.5


def test_fit_offsets_centre_each_prefix_group():
    torch.manual_seed(0)
    prefix = torch.randint(0, 4, (400, 1))
    means = torch.randn(4, 6) * 5
    h = means[prefix[:, 0]] + torch.randn(400, 6) * 0.1
    off = fit_offsets(h, prefix, 5)
    assert torch.allclose(off[0, :4], means, atol=0.05) and torch.equal(off[0, 4], torch.zeros(6))
    centred = h - off[0][prefix[:, 0]]
    for g in range(4):  # every group's centred states have mean 0: nothing left of the prefix
        assert centred[prefix[:, 0] == g].mean(0).abs().max() < 1e-4
    two = torch.cat([prefix, torch.randint(0, 3, (400, 1))], 1)
    assert fit_offsets(h, two, 5).shape == (2, 5, 6)


@pytest.mark.parametrize("backbone,indexer", [("t5", {}), ("encoder", {"frozen_layers": 1})])
def test_staged_encoders_keep_earlier_codes_when_later_training_moves_the_encoder(tmp_path, backbone, indexer):
    torch.manual_seed(0)
    idx, ids, mask = _indexer(tmp_path, backbone, **indexer)
    idx.state["positions_done"] = 3
    for t in (1, 2, 3):
        idx.set_id_embeddings(t)
    before = idx.generate_codes(ids, mask)
    scores_before = idx.candidates(ids, mask, before[:, :1], 4)[1]
    idx.keep_stage(1)
    idx.keep_stage(2)
    with torch.no_grad():  # what training positions >= 3 does to the encoder: every weight moves
        for p in idx.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    after = idx.generate_codes(ids, mask)
    assert torch.equal(after[:, :2], before[:, :2])  # codes 1 and 2 come from the kept stages
    assert torch.allclose(idx.candidates(ids, mask, before[:, :1], 4)[1], scores_before)
    with torch.no_grad():  # code 3 is computed by the moved encoder
        h3 = idx.states(ids, mask, after[:, :2])[:, -1]
    assert torch.equal(idx.code_scores(h3, 3, after[:, :2]).argmax(-1), after[:, 2])
    # the stages are saved beside the indexer, reload lazily, and a further save (as each snapshot) carries them on
    idx.save_pretrained(str(tmp_path / "a"))
    assert sorted(p.name for p in (tmp_path / "a" / "stages").iterdir()) == ["position-1", "position-2"]
    again = SemanticIndexer.from_pretrained(str(tmp_path / "a"))
    assert torch.equal(again.generate_codes(ids, mask), after)
    again.save_pretrained(str(tmp_path / "b"))
    third = SemanticIndexer.from_pretrained(str(tmp_path / "b"))
    assert torch.equal(third.generate_codes(ids, mask), after)
    assert not any(n.startswith("_stage") for n, _ in third.named_modules())  # never trained or sharded
    # what the stage guards against: the moved encoder gives position 1 other states than its kept copy (whether
    # that flips one of 4 documents' codes depends on the tokenizer a process trains, so states are compared)
    with torch.no_grad():
        none = after[:, :0]
        kept, moved = third.states(ids, mask, none, bb=third.stage_backbone(1)), third.states(ids, mask, none)
    assert not torch.allclose(kept, moved, atol=1e-3)


def test_usage_term_starts_at_usage_from(tmp_path):
    """indexer.usage_from=2: position 1's joint loss has no code-usage term, later positions have it."""
    idx, ids, mask = _indexer(tmp_path, "t5", usage_weight=0.1, usage_from=2)
    idx.train()
    idx.set_phase("joint", 1)
    assert "usage" not in idx(ids, mask, torch.zeros(4, 0, dtype=torch.long))
    idx.set_phase("joint", 2)
    out = idx(ids, mask, torch.zeros(4, 1, dtype=torch.long), group=torch.tensor([0, 0, 1, 1]))
    assert "usage" in out and out["usage"].item() >= 0


def test_usage_weight_per_position():
    """usage_weight_first sets position 1's weight alone; usage_from and usage_weight=0 switch the term off."""
    cfg = IndexerConfig(usage_weight=0.1, usage_from=1, usage_weight_first=0.02)
    assert [cfg.usage_at(t) for t in (1, 2, 3)] == [0.02, 0.1, 0.1]
    assert IndexerConfig(usage_weight=0.1, usage_from=1).usage_at(1) == 0.1  # negative: the common weight
    assert IndexerConfig(usage_weight=0.1, usage_from=2, usage_weight_first=0.02).usage_at(1) == 0.0
    assert IndexerConfig(usage_weight=0.0, usage_weight_first=0.02).usage_at(1) == 0.0


def test_training_only_the_embedding_rows_with_a_gradient_reaches_the_same_weights(tmp_path):
    idx, ids, mask = _indexer(tmp_path, "encoder", frozen_layers=1)
    ids, mask = ids.clone(), mask.clone()
    ids[:2, -3:], mask[:2, -3:] = idx.tokenizer.pad_token_id, 0  # two shorter documents: padding in the corpus
    idx.state["recon_vocab"] = torch.unique(ids).tolist()
    idx.save_pretrained(str(tmp_path / "saved"))
    runs = []
    for rows_only in (False, True):
        model = SemanticIndexer.from_pretrained(str(tmp_path / "saved"), dropout=0.1)
        if rows_only:
            assert model.train_rows_only()
        model.set_phase("joint", 2)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
        torch.manual_seed(0)
        for step in range(3):
            prefix = torch.tensor([[step], [1], [2], [3]])
            model(ids, mask, prefix, group=torch.tensor([0, 0, 1, 1]))["loss"].backward()
            opt.step()
            opt.zero_grad()
        runs.append((model, sum(p.numel() for p in params)))
    (full, n_full), (rows, n_rows) = runs
    width, table_rows = full.backbone.config.hidden_size, full.backbone.config.vocab_size
    assert n_full - n_rows == (table_rows - len(rows.backbone.get_input_embeddings().rows)) * width
    rows.full_embeddings()
    before = SemanticIndexer.from_pretrained(str(tmp_path / "saved")).backbone.get_input_embeddings().weight
    after_full, after_rows = full.state_dict(), rows.state_dict()
    assert after_full.keys() == after_rows.keys()
    for k, v in after_full.items():
        assert torch.allclose(v, after_rows[k], atol=1e-6), k
    table = after_full["backbone.embeddings.word_embeddings.weight"]
    assert not torch.equal(table, before)  # the run did train the table's rows that get a gradient
    pad = full.tokenizer.pad_token_id  # a row of the tied head: it trains there, though lookups give it no gradient
    assert not torch.equal(table[pad], before[pad])
