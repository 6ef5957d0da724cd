"""Direct tests of the ID-learning math: straight-through codes, the reconstructor's masks, the cross-worker
contrastive loss, k-means, hard negatives and position conditioning."""

import os
import socket

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lmindexer.config import IndexerConfig, ModelConfig
from lmindexer.eval.metrics import ami
from lmindexer.ids.methods import CodesActor, LMIndexerIds, load_id_method
from lmindexer.ids.negatives import prefix_groups, sample_negatives
from lmindexer.models.backbone import load_backbone
from lmindexer.models.codebook import code_logits, straight_through
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.models.losses import contrastive_loss
from lmindexer.models.reconstructor import Reconstructor, reconstruction_mask
from lmindexer.models.tokenizer import encode_texts
from lmindexer.quantizers import METHODS, save_method
from lmindexer.quantizers.kmeans import assign, kmeans, nearest
from lmindexer.stages.learn_ids import schedule


@pytest.mark.parametrize("selection", ["dot", "l2"])
def test_straight_through_passes_gradients_to_encoder_and_codebook(selection):
    torch.manual_seed(0)
    h = torch.randn(5, 8, requires_grad=True)
    book = torch.randn(4, 8, requires_grad=True)
    z, codes = straight_through(code_logits(h, book, selection), book, temperature=0.5)
    assert torch.allclose(z, book[codes])  # forward is the hard code
    (z * torch.randn_like(z)).sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert book.grad.abs().sum() > 0
    if selection == "l2":
        assert torch.equal(codes, torch.cdist(h, book).argmin(1))


def test_gumbel_noise_changes_some_choices():
    torch.manual_seed(0)
    logits = torch.zeros(200, 4) + torch.tensor([0.5, 0.0, 0.0, 0.0])
    _, plain = straight_through(logits, torch.eye(4))
    _, noisy = straight_through(logits, torch.eye(4), gumbel=True)
    assert (plain == 0).all() and len(noisy.unique()) > 1


def test_reconstructor_never_sees_the_token_it_predicts():
    torch.manual_seed(0)
    valid = torch.ones(2, 6, dtype=torch.long)
    mask = reconstruction_mask(valid, num_slots=2, mask_ratio=0.0)
    context = mask[:, :, 2:]
    assert not context.diagonal(dim1=1, dim2=2).any() and mask[:, :, :2].all()
    assert context.sum() == 2 * 6 * 5  # ratio 0: everything else is visible
    padded = reconstruction_mask(torch.tensor([[1, 1, 0]]), 1, 0.0)
    assert not padded[0, :, 3].any()
    # functional check: changing token i's embedding leaves prediction i unchanged
    rec = Reconstructor(16, 2, 32, 1, 8, 0.0).eval()
    q, slots, ctx = torch.randn(2, 16), torch.randn(2, 2, 16), torch.randn(2, 6, 16)
    mask = reconstruction_mask(valid, 2, 0.3, torch.Generator().manual_seed(1))
    before = rec(q, slots, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[:, 3] += 5.0
    after = rec(q, slots, ctx2, mask)
    assert torch.allclose(before[:, 3], after[:, 3], atol=1e-6)
    assert not torch.allclose(before, after)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _contrastive_worker(rank, port, v1, v2, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    local1 = v1[rank * 3 : (rank + 1) * 3].clone().requires_grad_()
    local2 = v2[rank * 3 : (rank + 1) * 3].clone().requires_grad_()
    loss = contrastive_loss(local1, local2, temperature=0.5)
    loss.backward()
    out[rank] = torch.tensor([loss.item(), local2.grad.abs().sum().item()])
    dist.destroy_process_group()


def test_contrastive_loss_gathers_negatives_across_two_workers():
    torch.manual_seed(0)
    v1, v2 = torch.randn(6, 8), torch.randn(6, 8)
    out = torch.zeros(2, 2).share_memory_()
    mp.spawn(_contrastive_worker, args=(_free_port(), v1, v2, out), nprocs=2)
    a, b = torch.nn.functional.normalize(v1, dim=-1), torch.nn.functional.normalize(v2, dim=-1)
    for rank in range(2):
        logits = a[rank * 3 : (rank + 1) * 3] @ b.T / 0.5  # all six candidates, from both workers
        expected = torch.nn.functional.cross_entropy(logits, torch.arange(3) + rank * 3)
        assert out[rank, 0] == pytest.approx(expected.item(), rel=1e-5)
        local_only = contrastive_loss(v1[rank * 3 : (rank + 1) * 3], v2[rank * 3 : (rank + 1) * 3], 0.5)
        assert out[rank, 0] != pytest.approx(local_only.item(), rel=1e-3)
        assert out[rank, 1] > 0


def test_kmeans_recovers_known_clusters_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    truth = torch.randint(4, (400,), generator=g)
    x = centres[truth] + 0.5 * torch.randn(400, 2, generator=g)
    found = kmeans(x, 4, seed=3)
    assert ami(truth.numpy(), assign(x, found).numpy()) == pytest.approx(1.0)
    assert torch.equal(found, kmeans(x, 4, seed=3))
    sampled = kmeans(x, 4, seed=3, max_points=100)  # fit on a sample, assign everything
    assert ami(truth.numpy(), assign(x, sampled, batch_size=7).numpy()) == pytest.approx(1.0)
    labels = assign(x, found)  # a fixed point of Lloyd's step: every centre is the mean of the points it holds
    assert torch.allclose(found, torch.stack([x[labels == j].mean(0) for j in range(4)]), atol=1e-5)
    with pytest.raises(ValueError, match="at least k"):
        kmeans(x[:3], 4)


def test_nearest_gives_each_rows_centre_and_distance_batch_by_batch():
    g = torch.Generator().manual_seed(1)
    x, centres = torch.randn(50, 3, generator=g), torch.randn(4, 3, generator=g)
    labels, d2 = nearest(x, centres, batch_size=16)
    full = ((x[:, None, :] - centres[None]) ** 2).sum(2)
    assert torch.equal(labels, full.argmin(1)) and torch.allclose(d2, full.min(1).values, atol=1e-5)
    assert torch.equal(assign(x, centres, batch_size=7), labels)


def test_hard_negatives_share_the_prefix_and_are_other_rows():
    prefixes = np.array([[0], [1], [0], [2], [1], [0]])
    groups = prefix_groups(prefixes)
    rng = np.random.default_rng(0)
    rows = np.arange(6)
    for _ in range(20):
        neg = sample_negatives(rows, groups, rng)
        assert (neg != rows).all()
        same = groups["size"][rows] > 1
        assert (prefixes[neg[same], 0] == prefixes[rows[same], 0]).all()


@pytest.fixture(scope="module", params=["t5", "encoder"])
def indexer(tmp_path_factory, request):
    texts = [f"item {i} colour {i % 5} size {i % 3}" for i in range(100)]
    model, tok = load_backbone(ModelConfig(vocab_size=200, backbone=request.param), texts)
    path = tmp_path_factory.mktemp("backbone")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    idx = SemanticIndexer.from_backbone(str(path), IndexerConfig(num_positions=3, codebook_size=4), 12).eval()
    enc = idx.tokenizer(texts[:4], max_length=12, truncation=True, padding="max_length", return_tensors="pt")
    return idx, enc["input_ids"], enc["attention_mask"]


def test_position_t_is_conditioned_on_earlier_codes(indexer):
    idx, ids, mask = indexer
    with torch.no_grad():
        a = idx.states(ids, mask, torch.tensor([[0], [0], [0], [0]]), every=True)
        b = idx.states(ids, mask, torch.tensor([[1], [1], [1], [1]]), every=True)
        last = idx.states(ids, mask, torch.tensor([[1], [1], [1], [1]]))
    assert a.shape == (4, 2, idx.backbone.config.hidden_size)
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6)  # position 1 does not see code 1
    assert not torch.allclose(a[:, 1], b[:, 1])  # position 2 depends on code 1
    assert torch.allclose(last[:, 0], b[:, 1], atol=1e-5)
    idx.set_id_embeddings(2)
    start = idx.id_tokens(2, torch.tensor(0)).item()
    assert torch.equal(idx.backbone.get_input_embeddings().weight[start : start + 4], idx.codebooks[1].weight)
    assert idx.tokenizer.convert_ids_to_tokens(start + 3) == "<id_2_3>"


def test_phases_choose_what_trains(indexer):
    idx, ids, mask = indexer
    idx.set_phase("warmup", 1)
    assert not any(p.requires_grad for p in idx.backbone.parameters())
    assert all(p.requires_grad for p in idx.reconstructor.parameters())
    idx.set_phase("joint", 2)
    assert [b.weight.requires_grad for b in idx.codebooks] == [False, True, False]
    idx.train()
    out = idx(ids, mask, torch.zeros(4, 1, dtype=torch.long), group=torch.tensor([0, 0, 1, 1]))
    assert {"recon", "contrastive", "commitment", "codes", "loss"} <= set(out)
    out["loss"].backward()
    assert idx.codebooks[1].weight.grad is not None and idx.codebooks[0].weight.grad is None
    idx.zero_grad()
    idx.eval()


def test_indexer_round_trips_through_from_pretrained(indexer, tmp_path):
    idx, ids, mask = indexer
    idx.state["positions_done"] = 3
    idx.save_pretrained(str(tmp_path))
    again = SemanticIndexer.from_pretrained(str(tmp_path)).eval()
    assert torch.equal(again.generate_codes(ids, mask), idx.generate_codes(ids, mask))
    assert again.cfg == idx.cfg and len(again.tokenizer) == len(idx.tokenizer)


def test_lmindexer_is_an_id_method_and_one_actor_encodes_every_method(indexer, tmp_path):
    """LMIndexer sits behind the ID methods' interface beside the tensor methods: its saved folder loads through the
    same call, encodes texts into its greedy codes with the best last code first among the candidates, and the one
    codes actor (assign-ids' and baseline-ids') reads whichever column the saved method asks for."""
    idx, _, _ = indexer
    idx.state["positions_done"] = 3
    idx.save_pretrained(str(tmp_path / "indexer"))
    texts = [f"item {i} colour {i % 5} size {i % 3}" for i in range(4)]
    method = load_id_method(str(tmp_path / "indexer"), None, max_length=12)
    assert isinstance(method, LMIndexerIds) and method.reads == "text"
    codes, candidates, scores = method.encode(texts, 3)
    enc = encode_texts(idx.tokenizer, texts, 12)
    assert torch.equal(codes, idx.generate_codes(enc["input_ids"], enc["attention_mask"]))
    assert candidates.shape == scores.shape == (4, 3) and torch.equal(candidates[:, 0], codes[:, -1])
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    with pytest.raises(ValueError, match="max_length"):
        load_id_method(str(tmp_path / "indexer"), None)

    doc_ids = np.array(["a", "b", "c", "d"])
    table = CodesActor(str(tmp_path / "indexer"), None, 2, max_length=12)({"doc_id": doc_ids, "text": texts})
    assert table.column("codes").to_pylist() == codes.tolist()
    random_ids = METHODS["random"].fit(None, 4, 3, seed=7)
    save_method(pafs.LocalFileSystem(), str(tmp_path / "random"), random_ids, {"num_positions": 3, "codebook_size": 4})
    table = CodesActor(str(tmp_path / "random"), None, 2)({"doc_id": doc_ids, "text": texts})
    assert table.column("codes").to_pylist() == random_ids.encode(doc_ids, 1)[0].tolist()


def test_schedule_trains_only_the_first_positions_when_asked():
    ic = IndexerConfig(num_positions=3, warmup_epochs=0, continuous_epochs=1, joint_epochs=2)
    assert schedule(ic)[:5] == [(1, "continuous"), (1, "kmeans"), (1, "joint"), (1, "assign"), (2, "continuous")]
    assert len(schedule(ic)) == 12
    ic.trained_positions, ic.continuous_epochs = 1, 0
    assert schedule(ic) == [
        (1, "kmeans"),
        (1, "joint"),
        (1, "assign"),
        (2, "kmeans"),
        (2, "assign"),
        (3, "kmeans"),
        (3, "assign"),
    ]


def test_poor_fit_warns_when_codes_do_not_tell_documents_apart():
    from lmindexer.ids.table_writer import poor_fit

    assert poor_fit(12101, 1271, 30) is None  # a learned table: a tenth with a suffix, small groups
    assert poor_fit(50, 40, 40) is None  # too few documents to judge
    # the demo's indexer on 299,400 generated documents: 15 code tuples, one group of 215,766
    message = poor_fit(299400, 299385, 215766)
    assert "100% of the documents need a suffix" in message and "215,766 documents (72%)" in message
    assert "learn-ids" in message and "assign.collisions=rebalance" in message
    assert "share one code tuple" in poor_fit(10000, 900, 2000) and "need a suffix" not in poor_fit(10000, 900, 2000)
