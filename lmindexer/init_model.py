"""`lmindexer init-model`: the backbone (T5 + tokenizer) saved with save_pretrained, ready for learn-ids."""

from __future__ import annotations

import logging
import os

from .config import Config
from .data.prepare import read_docs
from .models.backbone import load_backbone
from .paths import RunLayout

log = logging.getLogger("lmindexer.models")


def corpus_texts(cfg: Config, limit: int):
    """The first `limit` texts of the prepared corpus (the tokenizer's sample)."""
    for batch in read_docs(cfg, ["text"], batch_size=min(4096, max(1, limit))):
        texts = batch.column("text").to_pylist()[:limit]
        yield from texts
        limit -= len(texts)
        if limit <= 0:
            return


def init_model(cfg: Config) -> str:
    """Build or load the backbone and save it locally; a complete earlier one is reused."""
    out = RunLayout(cfg).backbone
    if os.path.exists(os.path.join(out, "config.json")):
        log.debug("init-model: backbone already at %s", out)
        return out
    texts = None if cfg.model.name_or_path else corpus_texts(cfg, cfg.model.tokenizer_sample)
    model, tokenizer = load_backbone(cfg.model, texts)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    log.info(
        "init-model: %s (%.1fM parameters, %s tokenizer of %d tokens) -> %s",
        cfg.model.name_or_path or f"{cfg.model.preset} {cfg.model.backbone}",
        sum(p.numel() for p in model.parameters()) / 1e6,
        "its" if cfg.model.name_or_path else "a corpus-trained",
        len(tokenizer),
        out,
    )
    return out
