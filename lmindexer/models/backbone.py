"""The T5 backbone: loaded with `from_pretrained` (clusters) or built from a size preset (offline machines)."""
from __future__ import annotations

import logging
from typing import Iterable

from transformers import AutoConfig, AutoTokenizer, T5Config, T5ForConditionalGeneration

from ..config import ModelConfig
from .pretrained import resolve
from .tokenizer import train_tokenizer

log = logging.getLogger("lmindexer.models")

# d_model, d_ff, layers (encoder = decoder), heads, d_kv. `small` and `base` are t5-small's and t5-base's shapes.
PRESETS = {
    "tiny": (64, 128, 2, 2, 32),
    "mini": (256, 1024, 4, 4, 64),
    "small": (512, 2048, 6, 8, 64),
    "base": (768, 3072, 12, 12, 64),
}


def build_t5(preset: str, vocab_size: int, dropout: float) -> T5ForConditionalGeneration:
    d_model, d_ff, layers, heads, d_kv = PRESETS[preset]
    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_ff=d_ff, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, d_kv=d_kv, dropout_rate=dropout,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=True)
    return T5ForConditionalGeneration(config)


def load_backbone(cfg: ModelConfig, texts: Iterable[str] | None = None):
    """(model, tokenizer): `from_pretrained(name_or_path)` when given, else a preset T5 and a corpus tokenizer."""
    if cfg.name_or_path:
        path = resolve(cfg.name_or_path)
        kind = AutoConfig.from_pretrained(path).model_type
        if kind != "t5":
            raise ValueError(f"model.name_or_path={cfg.name_or_path} is a '{kind}' model; the semantic indexer needs "
                             "a T5 (encoder-only models serve as baseline.encoder for baseline-ids)")
        log.info("loading T5 and tokenizer from %s", path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = T5ForConditionalGeneration.from_pretrained(path, dropout_rate=cfg.dropout)
        return model, tokenizer
    if texts is None:
        raise ValueError("building a T5 from a preset needs the corpus texts to train its tokenizer")
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    log.info("trained a %d-token tokenizer on the corpus; building a '%s' T5", len(tokenizer), cfg.preset)
    return build_t5(cfg.preset, len(tokenizer), cfg.dropout), tokenizer
