"""Inference with a trained indexer: loading it for batch inference, its states or codes for rows of a token
table (learn-ids, inside its training workers), and the document vectors of the baseline ID methods (a Ray Data
actor)."""

from __future__ import annotations

import json

import numpy as np
import ray.train
import torch
import torch.distributed as dist

from ..config import StorageConfig
from ..models.indexer import SemanticIndexer
from ..models.pretrained import resolve
from ..models.tokenizer import encode_texts
from ..raydata import inference_device


def load_for_inference(path: str, bf16: bool, storage: StorageConfig | None = None):
    """(indexer in eval mode on the best device, autocast dtype or None); a URI is fetched on this node."""
    device, dtype = inference_device(bf16)
    return SemanticIndexer.from_pretrained(resolve(path, storage)).to(device).eval(), dtype


@torch.no_grad()
def indexer_outputs(
    model: SemanticIndexer,
    tokens: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    position: int,
    mode: str,
    batch_size: int,
    dtype: torch.dtype | None = None,
) -> np.ndarray | None:
    """For `rows` of the token table: h_t [n, d] (mode 'embed') or code t [n] given the stored earlier codes
    ('assign'), in batches, on the model's device (autocast to `dtype` where given); None for no rows."""
    device = next(model.parameters()).device.type
    bb = model.stage_backbone(position)
    out = []
    for start in range(0, len(rows), batch_size):
        r = rows[start : start + batch_size]
        ids = torch.from_numpy(tokens[r].astype(np.int64)).to(device)
        mask = (ids != model.tokenizer.pad_token_id).long()
        prefix = torch.from_numpy(codes[r, : position - 1].astype(np.int64)).to(device)
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            h = model.states(ids, mask, prefix, bb=bb)[:, -1].float()
            out.append(h if mode == "embed" else model.code_scores(h, position, prefix).argmax(-1))
    return torch.cat(out).cpu().numpy() if out else None


def gathered_outputs(
    model: SemanticIndexer,
    dtype: torch.dtype | None,
    tokens: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    position: int,
    mode: str,
    batch_size: int,
    everyone: bool,
) -> np.ndarray | None:
    """indexer_outputs of `rows` in their order, shared out over the Ray Train workers of a run: each computes every
    world-size-th row; the result on rank 0 (None elsewhere), or on every worker with `everyone`."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    part = indexer_outputs(model, tokens, codes, rows[rank::world], position, mode, batch_size, dtype)
    parts = [part]
    if world > 1:
        parts = [None] * world
        if everyone:
            dist.all_gather_object(parts, part)
        else:
            dist.gather_object(part, parts if rank == 0 else None, dst=0)
            if rank != 0:
                return None
    first = next(p for p in parts if p is not None)
    result = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    for r, p in enumerate(parts):
        if p is not None:
            result[r::world] = p
    return result


class EmbedActor:
    """Document vectors for the baseline ID methods: the mean-pooled encoder of a T5 or indexer folder (or of any
    Hugging Face encoder-only model: BERT, MiniLM, MPNet), or a vector stored in a corpus field (a column, or a key
    of the `extra` JSON)."""

    def __init__(self, source: str, path: str, max_length: int, bf16: bool):
        self.source, self.max_length = source, max_length
        if source == "encoder":
            from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

            device, self.dtype = inference_device(bf16)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            kind = T5EncoderModel if AutoConfig.from_pretrained(path).model_type == "t5" else AutoModel
            self.model = kind.from_pretrained(path).to(device).eval()

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        if self.source != "encoder":
            return {"doc_id": batch["doc_id"], "emb": field_vectors(batch, self.source)}
        device = next(self.model.parameters()).device
        enc = encode_texts(self.tokenizer, batch["text"], self.max_length).to(device)
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None):
            h = self.model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"][..., None].float()
        return {"doc_id": batch["doc_id"], "emb": ((h * mask).sum(1) / mask.sum(1)).cpu().numpy()}


def field_vectors(batch: dict, name: str) -> np.ndarray:
    """[n, d] float32 from a column or an `extra` key; a missing or ragged vector is an error naming the doc_id."""
    if name in batch:
        values = list(batch[name])
    else:
        values = [json.loads(e).get(name) if e else None for e in batch["extra"]]
    out = []
    for doc_id, v in zip(batch["doc_id"], values):
        if v is None or isinstance(v, str) or not hasattr(v, "__len__") or len(v) == 0:
            raise ValueError(f"document {doc_id!r}: field {name!r} holds no vector ({v!r})")
        out.append(np.asarray(v, dtype=np.float32))
    if len({len(v) for v in out}) > 1:
        raise ValueError(f"field {name!r}: vectors of different lengths {sorted({len(v) for v in out})}")
    return np.stack(out)
