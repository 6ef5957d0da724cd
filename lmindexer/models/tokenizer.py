"""Tokens: a T5-compatible tokenizer trained on the corpus itself (for machines without a model hub: tests, the
demo), and the names of the ID tokens the indexer and the generator add to theirs."""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import T5TokenizerFast

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5


def id_token_names(positions: int, size: int, suffixes: int = 0) -> list[list[str]]:
    """ID token names per position, `<id_{t}_{k}>` for code k at position t, then the collision-suffix level
    `<id_s_{j}>` (empty when suffixes is 0)."""
    return [[f"<id_{t}_{k}>" for k in range(size)] for t in range(1, positions + 1)] + [
        [f"<id_s_{j}>" for j in range(suffixes)]
    ]


def encode_texts(
    tokenizer, texts, max_length: int, pad: str = "longest", tensors: str | None = "pt", special_tokens: bool = True
):
    """The one way documents and queries become token ids: cut to `max_length`, padded to the longest text of the
    batch (`pad="longest"`), to max_length (`"max_length"`) or not at all (`"none"`, lists of ids)."""
    padding = {"longest": True, "max_length": "max_length", "none": False}[pad]
    return tokenizer(
        list(texts),
        max_length=max_length,
        truncation=True,
        padding=padding,
        return_tensors=tensors if pad != "none" else None,
        add_special_tokens=special_tokens,
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> T5TokenizerFast:
    """A Unigram tokenizer with T5's special tokens and `</s>` appended, wrapped as T5's fast tokenizer."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0)
