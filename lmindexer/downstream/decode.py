"""Decoding a generator: the beam width evaluation keeps, inputs as tensors (shortest first), beam search under the
ID trie, and the text embedder a generator that reads a frozen encoder's embeddings uses. Shared by train-generator's
validation, evaluate and the services."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..config import ConfigError, EvaluateConfig, GeneratorConfig
from ..ids.infer import EmbedActor
from ..models.pretrained import resolve
from ..paths import RunContext
from ..raydata import map_rows
from ..train.loop import trim_padding

log = logging.getLogger("lmindexer.downstream")


def beam_width(e: EvaluateConfig) -> int:
    """The beams decoding keeps: evaluate.num_beams, or the largest K of evaluate.ks (never fewer)."""
    beams = e.num_beams or max(e.ks)
    if beams < max(e.ks):
        raise ConfigError(
            f"evaluate.num_beams={beams} is below the largest K in evaluate.ks={e.ks}: the ranked "
            "list would be shorter than K"
        )
    return beams


def by_length(sources: np.ndarray) -> np.ndarray:
    """Row order of 0-padded `sources` from shortest to longest (stable)."""
    return np.argsort((sources != 0).sum(1), kind="stable")


def text_embedder(g: GeneratorConfig, run: RunContext, encoder: str, bf16: bool = False):
    """texts -> [n, d] float32: mean-pooled embeddings by the pretrained `encoder` in a Ray Data actor pool (here for
    few texts: raydata.map_rows), in the order given (None where there is no encoder: the generator reads tokens)."""
    if not encoder:
        return None
    path = resolve(encoder, run.storage)
    kwargs = {"source": "encoder", "path": path, "max_length": g.encoder_max_length, "bf16": bf16}

    def embed(texts: list) -> np.ndarray:
        start = time.time()
        numbered = {"doc_id": np.arange(len(texts)), "text": np.array(texts, dtype=object)}
        emb = map_rows(run, EmbedActor, kwargs, order_by="doc_id", **numbered)["emb"].astype(np.float32)
        if len(emb) != len(texts):
            raise RuntimeError(f"{len(texts)} texts to embed, {len(emb)} embeddings back")
        log.info("generator: %d texts embedded by %s in %.1fs", len(texts), encoder, time.time() - start)
        return emb

    return embed


def source_tensor(sources: np.ndarray) -> torch.Tensor:
    """A batch of generator inputs as a tensor: token ids as int64, embeddings (generator.encoder) as float32."""
    kind = np.float32 if np.issubdtype(sources.dtype, np.floating) else np.int64
    return torch.from_numpy(np.ascontiguousarray(sources, dtype=kind))


def beam_search(model, processor, depth: int, beams: int, input_ids: torch.Tensor, dtype, scores: bool = False):
    """[n * beams, depth] ID tokens of the `beams` best IDs of each input, best first, under the trie. `input_ids`
    are token ids, or embeddings for a generator that reads them. With `scores`, also each ID's [n * beams]
    length-normalised log-probability (the beam score)."""
    if not input_ids.is_floating_point():
        input_ids = trim_padding(input_ids)
    with torch.autocast(input_ids.device.type, dtype=dtype, enabled=dtype is not None):
        out = model.generate(
            input_ids=input_ids,
            attention_mask=(input_ids != 0).long(),
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=depth + 1,
            logits_processor=LogitsProcessorList([processor]),
            do_sample=False,
            early_stopping=True,
            output_scores=scores,
            return_dict_in_generate=scores,
        )
    if scores:
        return out.sequences[:, 1 : 1 + depth], out.sequences_scores.float()
    return out[:, 1 : 1 + depth]
