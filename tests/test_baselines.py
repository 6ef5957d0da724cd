"""Baseline ID methods: the pure fit/encode math, then each method end to end on a real local Ray."""

import json
import os

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import ray
import torch

from lmindexer.config import CHOICES, load_config
from lmindexer.eval.metrics import ami
from lmindexer.paths import RunContext
from lmindexer.pipeline import baselines
from lmindexer.quantizers import (
    METHODS,
    RQVAE,
    HierarchicalKMeans,
    ResidualKMeans,
    load_method,
    random_codes,
    save_method,
)
from lmindexer.stages.init_model import init_model
from lmindexer.stages.prepare import prepare


def blobs(n=600, k=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 10
    label = torch.arange(n) % k
    return centres[label] + torch.randn(n, d, generator=g) * 0.3, label.numpy()


@pytest.mark.parametrize("kind", [HierarchicalKMeans, ResidualKMeans])
def test_kmeans_methods_find_the_clusters_and_round_trip(kind, tmp_path):
    x, label = blobs()
    method = kind.fit(x, 6, 3, seed=0)
    codes, cand, score = method.encode(x, 4)
    assert codes.shape == (600, 3) and cand.shape == score.shape == (600, 4)
    assert int(codes.min()) >= 0 and int(codes.max()) < 6
    assert ami(label, codes[:, 0].numpy()) == pytest.approx(1.0)
    assert (cand[:, 0] == codes[:, -1]).all() and (score[:, :-1] >= score[:, 1:]).all()
    fs = pafs.LocalFileSystem()
    save_method(fs, str(tmp_path / "new"), method, {"num_positions": 3, "codebook_size": 6})
    save_method(fs, str(tmp_path / "old"), method, {"levels": 3, "size": 6})  # a folder saved with the older words
    for folder in ("new", "old"):
        loaded, meta = load_method(fs, str(tmp_path / folder))
        assert meta["method"] == kind.name and torch.equal(loaded.encode(x, 4)[0], codes)


def test_residual_levels_shrink_the_error():
    x, _ = blobs(k=20, d=16)
    method = ResidualKMeans.fit(x, 8, 3, seed=0)
    codes = method.encode(x, 1)[0]
    errors, approx = [], torch.zeros_like(x)
    for t, book in enumerate(method.books):
        approx = approx + book[codes[:, t]]
        errors.append(float((x - approx).pow(2).sum(1).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_hierarchical_leaves_split_small_clusters_into_single_documents():
    x, label = blobs(n=12, k=4)  # 3 documents per cluster: fewer than K=4, so each is its own leaf
    codes = HierarchicalKMeans.fit(x, 4, 2, seed=0).encode(x, 1)[0].numpy()
    assert ami(label, codes[:, 0]) == pytest.approx(1.0) and len(np.unique(codes, axis=0)) == 12


def test_random_ids_are_stable_and_in_range():
    a = random_codes(["x", "y", "z"], 16, 3, seed=1)
    assert a.shape == (3, 3) and a.max() < 16 and (a == random_codes(["x", "y", "z"], 16, 3, seed=1)).all()
    assert not (a == random_codes(["x", "y", "z"], 16, 3, seed=2)).all()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_fits_encodes_saves_and_loads(name, tmp_path):
    """One interface for every ID method (the registry baseline-ids picks from): fitted by `fit` (or, marked
    `trained`, by its training run: here its initial state), it encodes what it `reads`, and load_method gives back
    a method that encodes the same."""
    kind, (x, _) = METHODS[name], blobs(d=16)
    inputs = x if kind.reads == "emb" else np.array([f"d{i}" for i in range(len(x))])
    if getattr(kind, "trained", False):
        method = kind(16, [8], 4, 6, 3)
    else:
        method = kind.fit(x if kind.reads == "emb" else None, 6, 3, 50, 0)
    codes, cand, score = method.encode(inputs, 2)
    assert codes.shape == (600, 3) and 0 <= int(codes.min()) and int(codes.max()) < 6 and len(cand) == len(score)
    fs = pafs.LocalFileSystem()
    meta = {"num_positions": 3, "codebook_size": 6, **getattr(method, "meta", {})}
    save_method(fs, str(tmp_path / name), method, meta)
    loaded, meta = load_method(fs, str(tmp_path / name))
    assert meta["method"] == name and torch.equal(loaded.encode(inputs, 2)[0], codes)
    assert CHOICES["baseline.method"] == set(METHODS)  # the config offers exactly the registered methods


def test_rqvae_learns_to_reconstruct():
    x, _ = blobs(d=16)
    torch.manual_seed(0)
    model = RQVAE(16, [32], 8, 8, 2)
    model.init_codebooks(x, 20, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model(x)["recon"].detach())
    for _ in range(300):
        loss = model(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model(x)["recon"].detach()) < 0.01 * first
    codes, cand, _ = model.encode(x, 3)
    assert codes.shape == (600, 2) and cand.shape == (600, 3)


@pytest.fixture(scope="module")
def corpus(ray_session, tmp_path_factory):
    """A 300-document demo corpus in 3 shards."""
    base = tmp_path_factory.mktemp("baselines")
    cfg = load_config("configs/quickstart.yaml", [f"output_dir={base}", "demo.num_docs=300", "data.rows_per_shard=100"])
    prepare(cfg.data, RunContext.of(cfg), cfg.demo)
    return base


QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")


def run(base, method, *extra):
    cfg = load_config(
        QUICKSTART,
        [
            f"output_dir={base}",
            f"baseline.method={method}",
            "indexer.num_positions=2",
            "indexer.codebook_size=8",
            "baseline.rqvae_epochs=2",
            "baseline.rqvae_batch_size=32",
            "baseline.rqvae_hidden=[32]",
            "baseline.rqvae_latent=8",
            *extra,
        ],
    )
    summary = baselines(cfg)
    return summary, pq.read_table(summary["table"]).to_pandas()


@pytest.mark.parametrize("method", ["hkmeans", "rqvae", "random"])  # rkmeans: test_vectors_from_a_corpus_field
def test_every_method_writes_the_assign_ids_table(corpus, method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output folder must mean the same to Ray Train workers
    summary, table = run(corpus, method, f"baseline.output=ids-{method}")
    assert summary["documents_in"] == summary["ids_out"] == len(table) == 300
    assert list(table.columns) == ["doc_id", "codes", "suffix", "sid"]
    assert table.sid.is_unique and table.doc_id.is_unique and (table.codes.map(len) == 2).all()
    assert table.codes.map(max).max() < 8
    if method != "random":
        assert os.path.exists(tmp_path / f"ids-{method}" / "method" / "method.json")


def test_any_hugging_face_encoder_embeds(corpus, tmp_path):
    """A tiny BERT saved with save_pretrained (the path MiniLM/MPNet folders take) embeds through AutoModel."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    cfg = load_config("configs/quickstart.yaml", [f"output_dir={corpus}"])
    tokenizer = AutoTokenizer.from_pretrained(init_model(cfg.model, RunContext.of(cfg)))
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    # RQ-VAE again in the same output_dir as the T5 one above: its Ray Train run must not resume that one's
    # checkpoint (64-dimensional inputs, not 32)
    summary, table = run(
        corpus, "rqvae", f"baseline.encoder={tmp_path / 'bert'}", f"baseline.output={tmp_path / 'ids'}"
    )
    assert summary["ids_out"] == 300
    emb = ray.data.read_parquet(str(tmp_path / "ids" / "_emb"))
    assert emb.count() == 300 and emb.take(1)[0]["emb"].shape == (32,)  # BERT's hidden size, not the T5's 64


def test_vectors_from_a_corpus_field(ray_session, tmp_path):
    x, label = blobs(n=120, k=4, d=6)
    src = tmp_path / "vectors.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": f"doc {i}", "vec": v.tolist(), "cls": int(c)}) + "\n"
            for i, (v, c) in enumerate(zip(x, label))
        )
    )
    cfg = load_config(overrides=[f"output_dir={tmp_path}", f"data.input={src}"])
    prepare(cfg.data, RunContext.of(cfg))
    summary, table = run(tmp_path, "rkmeans", "baseline.embeddings=vec", "indexer.codebook_size=4")
    assert summary["ids_out"] == 120
    first = table.set_index("doc_id").codes.map(lambda c: c[0])
    assert ami(label, first.loc[[f"d{i}" for i in range(120)]].to_numpy()) == pytest.approx(1.0)
    with pytest.raises(Exception, match="holds no vector"):
        run(tmp_path, "hkmeans", "baseline.embeddings=cls")
