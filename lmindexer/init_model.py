"""`lmindexer init-model`: the backbone (T5 + tokenizer) saved with save_pretrained, ready for learn-ids."""

from __future__ import annotations

import logging
import os

from .config import Config
from .data.prepare import load_docs
from .models.backbone import load_backbone
from .paths import RunLayout

log = logging.getLogger("lmindexer.models")


def corpus_texts(cfg: Config, limit: int):
    for batch in (
        load_docs(cfg).select_columns(["text"]).limit(limit).iter_batches(batch_size=4096, batch_format="pyarrow")
    ):
        yield from batch.column("text").to_pylist()


def init_model(cfg: Config) -> str:
    """Build or load the backbone and save it locally; a complete earlier one is reused."""
    out = RunLayout(cfg).backbone
    if os.path.exists(os.path.join(out, "config.json")):
        log.info("init-model: backbone already at %s", out)
        return out
    texts = None if cfg.model.name_or_path else corpus_texts(cfg, cfg.model.tokenizer_sample)
    model, tokenizer = load_backbone(cfg.model, texts)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    log.info(
        "init-model: %s (%.1fM parameters) -> %s",
        cfg.model.name_or_path or cfg.model.preset,
        sum(p.numel() for p in model.parameters()) / 1e6,
        out,
    )
    return out
