"""Every ID method behind one interface, LMIndexer included.

A method reads one column of the corpus (`reads`: "emb" vectors, "doc_id", or "text"), is fitted, `encode`s a batch
of that column into codes [n, T] plus the k best last-level codes and their scores (what rebalancing uses), and is
saved to a folder and loaded from it:

| method                      | fit                                           | saved as                              |
|-----------------------------|-----------------------------------------------|---------------------------------------|
| hkmeans, rkmeans, random    | `fit` on a sample, in process                 | method.json + method.safetensors      |
| rqvae                       | a Ray Train run (ids/rqvae_training.py)       | method.json + method.safetensors      |
| lmindexer                   | the learn-ids stage (a Ray Train run on text) | a model folder (save_pretrained)      |

The tensor methods live in lmindexer/quantizers (math on tensors, in the registry baseline-ids picks from,
METHODS); LMIndexer's model in lmindexer/models. `load_id_method` loads either kind of folder, and `CodesActor` is
the one Ray Data actor that assign-ids and baseline-ids run over the corpus.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from .. import storage
from ..config import StorageConfig
from ..models.indexer import SemanticIndexer
from ..models.tokenizer import encode_texts
from ..quantizers import load_method
from .infer import load_for_inference


class LMIndexerIds:
    """A trained LMIndexer behind the methods' interface: it reads texts (cut at `max_length` tokens), its codes are
    the indexer's greedy codes and its candidates the best last-level codes given the earlier ones."""

    name = "lmindexer"
    reads = "text"
    trained = True  # fitted by the learn-ids stage, not by `fit`

    def __init__(self, model: SemanticIndexer, max_length: int, dtype: torch.dtype | None = None):
        self.model, self.max_length, self.dtype = model, max_length, dtype
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, uri: str, storage_cfg: StorageConfig | None, max_length: int, bf16: bool = False) -> "LMIndexerIds":
        """The indexer folder at `uri` (a URI is fetched on this node), in eval mode on the best device (autocast to
        bf16 on GPUs where `bf16`)."""
        model, dtype = load_for_inference(uri, bf16, storage_cfg)
        return cls(model, max_length, dtype)

    @torch.no_grad()
    def encode(self, texts, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = encode_texts(self.model.tokenizer, list(texts), self.max_length).to(self.device)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            codes = self.model.generate_codes(ids, mask)
            candidates, scores = self.model.candidates(ids, mask, codes[:, :-1], k)
        return codes, candidates, scores


def load_id_method(uri: str, storage_cfg: StorageConfig | None, max_length: int = 0, bf16: bool = False):
    """The method saved at `uri`: a tensor method's folder (method.json) or an indexer's model folder (read with
    `max_length` tokens per text, bf16 where asked)."""
    fs, path = storage.filesystem(uri, storage_cfg)
    if storage.exists(fs, storage.join(path, "method.json")):
        return load_method(fs, path)[0]
    if max_length <= 0:
        raise ValueError(f"{uri} is an indexer folder: reading its texts needs max_length > 0")
    return LMIndexerIds.load(uri, storage_cfg, max_length, bf16)


def codes_table(doc_ids, codes: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor) -> pa.Table:
    """What the codes actor returns (plain lists, as read back): codes, and last-level candidates for rebalancing."""
    as_list = lambda x, t: pa.array(x.cpu().tolist(), pa.list_(t))  # noqa: E731
    return pa.table(
        {
            "doc_id": doc_ids,
            "codes": as_list(codes, pa.int32()),
            "candidates": as_list(candidates, pa.int32()),
            "scores": as_list(scores.float(), pa.float32()),
        }
    )


class CodesActor:
    """Codes and `candidates` last-level candidates for a batch of what the saved method reads; the method is
    loaded once per actor (arguments as load_id_method's)."""

    def __init__(
        self,
        method_dir: str,
        storage_cfg: StorageConfig | None,
        candidates: int,
        max_length: int = 0,
        bf16: bool = False,
    ):
        self.method = load_id_method(method_dir, storage_cfg, max_length, bf16)
        self.k = candidates

    @torch.no_grad()
    def __call__(self, batch: dict) -> pa.Table:
        x = batch[self.method.reads]
        if self.method.reads == "emb":
            x = torch.from_numpy(np.asarray(x, np.float32))
        codes, candidates, scores = self.method.encode(x, self.k)
        return codes_table(batch["doc_id"], codes, candidates, scores)
