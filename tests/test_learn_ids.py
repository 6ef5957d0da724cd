"""LMIndexer ID learning end to end on a real local Ray: 2 Ray Train workers, DeepSpeed ZeRO-2/3 and DDP on CPU."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lmindexer.config import load_config
from lmindexer.models.indexer import SemanticIndexer
from lmindexer.paths import RunContext
from lmindexer.pipeline import learn
from lmindexer.stages.init_model import init_model
from lmindexer.stages.prepare import prepare

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory):
    """The labelled demo corpus and a tiny T5 saved once, loaded by each run through from_pretrained."""
    base = tmp_path_factory.mktemp("base")
    cfg = load_config("configs/quickstart.yaml", [f"output_dir={base}", "demo.num_docs=480"])
    prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    return base, init_model(cfg.model, RunContext.of(cfg))


@pytest.fixture(scope="module")
def bert(corpus, tmp_path_factory):
    """A tiny BERT (encoder-only) backbone on the same corpus."""
    base, _ = corpus
    out = tmp_path_factory.mktemp("bert")
    overrides = [f"output_dir={out}", f"data.output={base}/corpus", "model.backbone=encoder"]
    cfg = load_config("configs/quickstart.yaml", overrides)
    return init_model(cfg.model, RunContext.of(cfg))


def config(corpus, out, *overrides):
    base, backbone = corpus
    return load_config(
        "configs/quickstart.yaml",
        [
            f"output_dir={out}",
            f"data.output={base}/corpus",
            f"model.name_or_path={backbone}",
            "indexer.num_positions=2",
            "indexer.codebook_size=8",
            "indexer.batch_size=16",
            "indexer.lr=3e-3",
            "train.log_every_steps=0",
            *overrides,
        ],
    )


def same_label_agreement(out, base, shuffles=1000, seed=0):
    """(share of same-label pairs with the same first code, that share over all pairs, p-value of the first).

    The p-value is a permutation test: the share of label shuffles whose same-label agreement is at least the
    observed one. Codes that ignore the labels give a p-value spread evenly over (0, 1]."""
    table = pq.read_table(os.path.join(out, "learn_ids", "codes.parquet")).to_pandas()
    docs = pq.read_table(os.path.join(base, "corpus", "docs")).to_pandas()
    first = table.set_index("doc_id").codes.map(lambda c: c[0])
    _, labels = np.unique(docs.set_index("doc_id").label.loc[first.index].to_numpy(), return_inverse=True)
    _, codes = np.unique(first.to_numpy(), return_inverse=True)
    n, k = len(codes), codes.max() + 1

    def within(lab):  # same-label pairs (i != j) with the same code, over same-label pairs
        cells = np.bincount(lab * k + codes).astype(float)
        groups = np.bincount(lab).astype(float)
        return (np.sum(cells**2) - n) / (np.sum(groups**2) - n)

    observed = within(labels)
    rng = np.random.default_rng(seed)
    null = np.array([within(rng.permutation(labels)) for _ in range(shuffles)])
    counts = np.bincount(codes).astype(float)
    overall = (np.sum(counts**2) - n) / (n * n - n)
    return observed, overall, (1 + np.sum(null >= observed)) / (1 + shuffles)


def test_zero2_two_positions_learns_useful_codes(corpus, tmp_path):
    out = tmp_path / "z2"
    cfg = config(
        corpus,
        out,
        "train.engine=deepspeed",
        "train.zero_stage=2",
        "indexer.continuous_epochs=2",
        "indexer.joint_epochs=3",
        "train.checkpoint_min_seconds=1e9",
    )
    summary = learn(cfg)
    steps = summary["steps"]
    # metrics every epoch; no checkpoint (train.checkpoint_min_seconds is longer than the run, and a finished
    # phase is kept as its snapshot); all the steps in one Ray Train run
    assert [e["epoch"] for e in steps["2:joint"]["epochs"]] == [1, 2, 3]
    assert sorted(p.name for p in (out / "ray").iterdir() if p.is_dir()) == ["learn-ids"]
    assert not list((out / "ray" / "learn-ids").glob("checkpoint_*"))
    cont = steps["1:continuous"]["epochs"]
    assert cont[-1]["loss"] < cont[0]["loss"] and cont[-1]["recon"] < cont[0]["recon"]
    joint = steps["2:joint"]["epochs"]
    for t in (1, 2):
        assert steps[f"{t}:assign"]["used"] > 1
    assert "commitment" in joint[0] and "contrastive" in joint[0] and joint[0]["cond_perplexity"] > 1
    # position 2 splits the documents of each first code: ~60 documents per prefix over 8 codes; a position that
    # copied its parent would give a conditional perplexity of 1 and one child per prefix
    split = summary["split"][1]
    assert split["cond_perplexity"] > 2.5 and split["children_mean"] > 3
    distinct = round((1 - summary["collision_rate"]) * 480)  # 480 documents, at most 8 x 8 = 64 distinct IDs
    assert distinct > 32 and steps["2:assign"]["suffix_share"] == summary["collision_rate"]
    # the first code agrees with the corpus's labels beyond chance: codes blind to the labels pass this by luck in
    # about 2 runs in 1,000
    # (a ratio floor such as within > 1.2 x overall failed on CI at 1.16 with p far below that)
    within, overall, p_value = same_label_agreement(str(out), corpus[0])
    assert within > overall and p_value < 0.002, (within, overall, p_value)
    idx = SemanticIndexer.from_pretrained(summary["indexer"])
    assert idx.state["positions_done"] == 2 and idx.state["history"][0]["documents"] == 480
    # position 2 trained the encoder after code 1 was assigned: code 1 keeps its own copy (staged encoders)
    assert idx.state["stages"] == [1] and os.path.isdir(os.path.join(summary["indexer"], "stages", "position-1"))
    saved = os.path.getmtime(os.path.join(summary["indexer"], "indexer.json"))
    again = learn(cfg)  # everything done: nothing is trained again, and the indexer is not rewritten
    assert again["steps"] == summary["steps"] and again["collision_rate"] == summary["collision_rate"]
    assert os.path.getmtime(os.path.join(summary["indexer"], "indexer.json")) == saved
    with pytest.raises(ValueError, match="POSITION:STEP"):
        learn(cfg, only="3:joint")


def test_ddp_engine_encoder_with_curves(corpus, bert, tmp_path):
    """DDP on a BERT backbone: only the word-embedding rows that get a gradient train (the table is whole again in
    the saved indexer), indexer.epoch_figures adds the assignment's figures to every joint epoch and saves its codes,
    and indexer.neighbour_weight adds its term."""
    cfg = config(
        corpus,
        tmp_path / "ddp",
        f"model.name_or_path={bert}",
        "model.backbone=encoder",
        "indexer.num_positions=1",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=2",
        "indexer.epoch_figures=true",
        "indexer.neighbour_weight=1.0",
        "train.engine=ddp",
    )
    summary = learn(cfg)
    assert summary["positions_done"] == 1
    assign = summary["steps"]["1:assign"]
    assert assign["used"] > 1
    start = summary["steps"]["1:kmeans"]["start"]  # the k-means start's own codes of the sample
    assert 1 < start["used"] <= 8 and 1 < start["perplexity"] <= start["used"]
    epochs = summary["steps"]["1:joint"]["epochs"]
    assert np.isfinite(epochs[-1]["loss"])
    assert 0 < epochs[0]["neighbour"] < epochs[0]["loss"]  # the term that keeps the start's neighbourhoods
    # the last epoch's figures are the assignment step's: the same model, dropout off, every document
    last = epochs[-1]
    for key in ("used", "perplexity", "ami", "suffix_share", "distinct_prefixes"):
        assert last[f"assign_{key}"] == assign[key], key
    assert "assign_ami" in epochs[0]
    work = tmp_path / "ddp" / "learn_ids"  # and every epoch's code 1 itself, beside the phase's snapshot
    saved = [np.load(work / "snapshot-1-joint" / f"epoch-{e}-code.npy") for e in (1, 2)]
    assert (saved[-1] == np.load(work / "codes.npy")[:, 0]).all()
    idx = SemanticIndexer.from_pretrained(summary["indexer"])
    table = idx.backbone.get_input_embeddings()
    assert type(table).__name__ == "Embedding" and table.weight.shape[0] == len(idx.tokenizer)
    rerun = learn(cfg, only="1:joint")  # one phase alone, trained afresh from the stored snapshot
    assert [e["epoch"] for e in rerun["steps"]["1:joint"]["epochs"]] == [1, 2]
    assert rerun["steps"]["1:joint"] != summary["steps"]["1:joint"]


def test_encoder_backbone_zero3_two_positions(corpus, bert, tmp_path):
    """A BERT (encoder-only) backbone through the same schedule, on ZeRO-3 (its tied reconstruction head reads the
    word embeddings outside their module), then a from_pretrained round trip that reproduces the learned codes."""
    base, _ = corpus
    cfg = config(
        corpus,
        tmp_path / "enc",
        f"model.name_or_path={bert}",
        "model.backbone=encoder",
        "train.engine=deepspeed",
        "train.zero_stage=3",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=1",
    )
    summary = learn(cfg)
    assert summary["positions_done"] == 2
    for t in (1, 2):
        assert summary["steps"][f"{t}:assign"]["used"] > 1
    assert "commitment" in summary["steps"]["2:joint"]["epochs"][0]
    idx = SemanticIndexer.from_pretrained(summary["indexer"]).eval()
    assert idx.kind == "encoder" and type(idx.backbone).__name__ == "BertModel"
    table = pq.read_table(os.path.join(tmp_path / "enc", "learn_ids", "codes.parquet")).to_pandas()
    docs = pq.read_table(os.path.join(base, "corpus", "docs")).to_pandas().set_index("doc_id")
    first = table.head(64)
    learned = torch.from_numpy(np.stack(first.codes).astype(np.int64))
    enc = idx.tokenizer(
        list(docs.text.loc[first.doc_id]),
        max_length=cfg.model.max_length,
        truncation=True,
        padding=True,
        return_tensors="pt",
    )
    code2, _ = idx.candidates(enc["input_ids"], enc["attention_mask"], learned[:, :1], k=1)
    assert (code2[:, 0] == learned[:, 1]).float().mean() >= 0.95  # the last step's codes, from the reloaded model
    # and whole IDs: code 1 comes from the encoder as position 1 left it (staged encoders), not as position 2 did
    codes = idx.generate_codes(enc["input_ids"], enc["attention_mask"])
    assert idx.state["stages"] == [1] and (codes == learned).all(1).float().mean() >= 0.95
