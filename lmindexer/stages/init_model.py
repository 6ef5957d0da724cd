"""`lmindexer init-model`: the backbone (T5 + tokenizer) saved with save_pretrained, ready for learn-ids."""

from __future__ import annotations

import logging
import os

from ..config import ModelConfig
from ..data.corpus import read_docs
from ..models.backbone import load_backbone
from ..paths import RunContext

log = logging.getLogger("lmindexer.models")


def corpus_texts(run: RunContext, limit: int):
    """The first `limit` texts of the prepared corpus (the tokenizer's sample)."""
    for batch in read_docs(run, ["text"], batch_size=min(4096, max(1, limit))):
        texts = batch.column("text").to_pylist()[:limit]
        yield from texts
        limit -= len(texts)
        if limit <= 0:
            return


def init_model(model: ModelConfig, run: RunContext) -> str:
    """The stage: build or load the backbone `model` describes and save it to run.layout.backbone (its path); a
    complete earlier one is reused."""
    out = run.layout.backbone
    if os.path.exists(os.path.join(out, "config.json")):
        log.debug("init-model: backbone already at %s", out)
        return out
    texts = None if model.name_or_path else corpus_texts(run, model.tokenizer_sample)
    backbone, tokenizer = load_backbone(model, texts)
    tokenizer.save_pretrained(out)
    backbone.save_pretrained(out)
    log.info(
        "init-model: %s (%.1fM parameters, %s tokenizer of %d tokens) -> %s",
        model.name_or_path or f"{model.preset} {model.backbone}",
        sum(p.numel() for p in backbone.parameters()) / 1e6,
        "its" if model.name_or_path else "a corpus-trained",
        len(tokenizer),
        out,
    )
    return out
