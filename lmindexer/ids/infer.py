"""Batch inference with Ray Data: an autoscaling actor pool that loads an indexer once per actor."""

from __future__ import annotations

import json

import numpy as np
import ray
import torch

from ..config import Config, StorageConfig
from ..models.indexer import SemanticIndexer
from ..models.pretrained import resolve
from ..models.tokenizer import encode_texts
from ..raydata import actor_pool, by_row, inference_device, shared, spread


def load_for_inference(path: str, bf16: bool, storage: StorageConfig | None = None):
    """(indexer in eval mode on the best device, autocast dtype or None); a URI is fetched on this node."""
    device, dtype = inference_device(bf16)
    return SemanticIndexer.from_pretrained(resolve(path, storage)).to(device).eval(), dtype


class IndexerActor:
    """Per batch of row indices: h_t (mode 'embed') or code t given the stored earlier codes ('assign')."""

    def __init__(self, path: str, tables: dict, position: int, mode: str, bf16: bool):
        self.model, self.dtype = load_for_inference(path, bf16)
        self.device = next(self.model.parameters()).device.type
        self.tables, self.position, self.mode = tables, position, mode

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        rows = batch["row"]
        tokens = torch.from_numpy(shared(self.tables["tokens"])[rows].astype(np.int64)).to(self.device)
        mask = (tokens != self.model.tokenizer.pad_token_id).long()
        with torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None):
            prefix = torch.from_numpy(shared(self.tables["codes"])[rows, : self.position - 1].astype(np.int64))
            prefix = prefix.to(self.device)
            bb = self.model.stage_backbone(self.position)
            h = self.model.states(tokens, mask, prefix, bb=bb)[:, -1].float()
            if self.mode == "embed":
                return {"row": rows, "h": h.cpu().numpy()}
            return {"row": rows, "code": self.model.code_scores(h, self.position, prefix).argmax(-1).cpu().numpy()}


def run_indexer(cfg: Config, path: str, rows: np.ndarray, tables: dict, position: int, mode: str) -> dict:
    """Results for the given rows, gathered on the driver in row order."""
    ds = ray.data.from_numpy(rows.astype(np.int64)).rename_columns({"data": "row"})
    out = spread(ds, cfg).map_batches(
        IndexerActor,
        fn_constructor_kwargs={
            "path": path,
            "tables": tables,
            "position": position,
            "mode": mode,
            "bf16": cfg.train.precision != "fp32",
        },
        **actor_pool(cfg),
    )
    return by_row(out)


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
