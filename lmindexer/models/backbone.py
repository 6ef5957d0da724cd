"""The indexer's backbone: loaded with `from_pretrained` (clusters, offline packages) or built from a size preset
(offline machines). `t5` is an encoder-decoder; `encoder` any encoder-only model (a BERT when built from a preset)."""

from __future__ import annotations

import logging
import os
from typing import Iterable

from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    T5Config,
    T5ForConditionalGeneration,
)

from ..config import ConfigError, ModelConfig
from .pretrained import resolve
from .tokenizer import train_tokenizer

log = logging.getLogger("lmindexer.models")

# d_model, d_ff, layers (encoder = decoder), heads, d_kv. `small` and `base` are t5-small's and t5-base's shapes.
PRESETS = {
    "tiny": (64, 128, 2, 2, 32),
    "d128": (128, 512, 2, 4, 32),  # a generator twice tiny's width at ~2.5x its cost on CPU
    "tiger": (128, 1024, 4, 6, 64),  # the TIGER generator's published shape (Rajput et al., 2023)
    "mini": (256, 1024, 4, 4, 64),
    "small": (512, 2048, 6, 8, 64),
    "base": (768, 3072, 12, 12, 64),
}


def build_t5(preset: str, vocab_size: int, dropout: float) -> T5ForConditionalGeneration:
    d_model, d_ff, layers, heads, d_kv = PRESETS[preset]
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        d_kv=d_kv,
        dropout_rate=dropout,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=True,
    )
    return T5ForConditionalGeneration(config)


def build_encoder(preset: str, vocab_size: int, dropout: float) -> BertModel:
    d_model, d_ff, layers, heads, _ = PRESETS[preset]
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=d_ff,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        hidden_dropout_prob=dropout,
        pad_token_id=0,
    )
    return BertModel(config, add_pooling_layer=False)


def backbone_kind(path: str) -> str:
    """'t5' for a T5 folder, 'encoder' for any other (encoder-only) model."""
    return "t5" if AutoConfig.from_pretrained(path).model_type == "t5" else "encoder"


def load_backbone_model(path: str, kind: str, dropout: float | None = None) -> nn.Module:
    """The backbone's weights: a T5ForConditionalGeneration, or an encoder without its pooler (never used)."""
    if kind == "t5":
        return T5ForConditionalGeneration.from_pretrained(
            path, **({} if dropout is None else {"dropout_rate": dropout})
        )
    kwargs = {} if dropout is None else {"hidden_dropout_prob": dropout}
    if _has_pooler(path):  # loaded whole (no report of unexpected weights), then the pooler is dropped
        model = AutoModel.from_pretrained(path, **kwargs)
        if getattr(model, "pooler", None) is not None:
            model.pooler = None
        return model
    try:
        return AutoModel.from_pretrained(path, add_pooling_layer=False, **kwargs)
    except TypeError:  # a model without a pooler
        return AutoModel.from_pretrained(path, **kwargs)


def _has_pooler(path: str) -> bool:
    """Whether the checkpoint in `path` holds pooler weights (a safetensors file's header; False otherwise)."""
    from safetensors import safe_open

    file = os.path.join(path, "model.safetensors")
    if not os.path.exists(file):
        return False
    with safe_open(file, "pt") as f:
        return any(k.startswith("pooler.") or ".pooler." in k for k in f.keys())


def load_backbone(cfg: ModelConfig, texts: Iterable[str] | None = None):
    """(model, tokenizer): `from_pretrained(name_or_path)` when given, else a preset model and a corpus tokenizer."""
    if cfg.name_or_path:
        path = resolve(cfg.name_or_path)
        kind = AutoConfig.from_pretrained(path).model_type
        if (kind == "t5") != (cfg.backbone == "t5"):
            fix = "model.backbone=encoder" if cfg.backbone == "t5" else "model.backbone=t5"
            raise ConfigError(
                f"model.name_or_path={cfg.name_or_path} is a '{kind}' model but model.backbone="
                f"{cfg.backbone}: set {fix}"
            )
        log.info("loading %s backbone and tokenizer from %s", kind, path)
        return load_backbone_model(path, cfg.backbone, cfg.dropout), AutoTokenizer.from_pretrained(path)
    if texts is None:
        raise ValueError("building a backbone from a preset needs the corpus texts to train its tokenizer")
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    log.debug(
        "trained a %d-token tokenizer on the corpus; building a '%s' %s",
        len(tokenizer),
        cfg.preset,
        "T5" if cfg.backbone == "t5" else "BERT encoder",
    )
    build = build_t5 if cfg.backbone == "t5" else build_encoder
    return build(cfg.preset, len(tokenizer), cfg.dropout), tokenizer
