"""The generator: a T5 that reads a query or a user's history and writes an ID, one token per position.

Each ID position has its own tokens, `<id_{t}_{k}>` for codes and `<id_s_{j}>` for the collision suffix, added to
the start model's vocabulary. A generator folder is a plain Hugging Face T5 folder plus generator.json (the ID layout).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load
from transformers import AutoTokenizer, T5ForConditionalGeneration

from .. import storage
from ..config import ConfigError, StorageConfig
from ..quantizers.codes import IdSpec
from .backbone import backbone_kind
from .pretrained import resolve
from .tokenizer import id_token_names

GENERATOR_FILE = "generator.json"


class IdVocab:
    """IDs (codes + suffix) to token ids and back, for one tokenizer."""

    def __init__(self, tokenizer, spec: IdSpec):
        self.spec = spec
        self.positions, self.size, self.suffixes = spec.positions, spec.codebook_size, spec.suffixes
        names = id_token_names(self.positions, self.size, self.suffixes)
        self.table = np.full((len(names), max(self.size, self.suffixes)), -1, dtype=np.int64)
        for t, level in enumerate(names):
            self.table[t, : len(level)] = tokenizer.convert_tokens_to_ids(level)
        if (self.table[self.table >= 0] == tokenizer.unk_token_id).any():
            raise ValueError("the tokenizer lacks some ID tokens; build the generator with build_generator")
        self.value = np.full(int(self.table.max()) + 1, -1, dtype=np.int64)
        for t in range(len(names)):
            level = self.table[t][self.table[t] >= 0]
            self.value[level] = np.arange(len(level))

    def tokens(self, codes: np.ndarray, suffix: np.ndarray) -> np.ndarray:
        """[N, T + 1] token ids of the IDs (codes [N, T], suffix [N])."""
        full = np.concatenate([np.asarray(codes, dtype=np.int64), np.asarray(suffix, dtype=np.int64)[:, None]], 1)
        if (full < 0).any() or (full[:, :-1] >= self.size).any() or (full[:, -1] >= self.suffixes).any():
            raise ValueError("an ID lies outside the generator's ID vocabulary")
        return self.table[np.arange(full.shape[1]), full]

    def sids(self, tokens: np.ndarray) -> list[str]:
        """Printed IDs ('12-7-103-0') of token rows [N, T + 1]."""
        return ["-".join(str(int(v)) for v in row) for row in self.value[np.asarray(tokens, dtype=np.int64)]]

    def to_json(self) -> dict:
        return self.spec.to_json()


def indexer_codebooks(path: str, storage_cfg: StorageConfig | None = None) -> torch.Tensor | None:
    """[T, K, d] codebooks of an indexer folder, local or at a URI (None if the folder is no indexer). Only the
    indexer's own weights file is read, not the T5 beside it."""
    fs, folder = storage.filesystem(path, storage_cfg)
    weights = storage.join(folder, "indexer.safetensors")
    if not storage.exists(fs, weights):
        return None
    with fs.open_input_stream(weights) as f:
        state = load(f.read())
    books = sorted(
        (k for k in state if k.startswith("codebooks.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1])
    )
    return torch.stack([state[k] for k in books])


def build_generator(
    init: str, spec: IdSpec, out: str, codebooks: torch.Tensor | None = None, meta: dict | None = None
) -> dict:
    """Save to `out` the start model with the ID tokens added; their embeddings come from `codebooks` [T, K, d]
    when given (and as wide as the model), else random at the scale of the other embeddings. Returns what
    generator.json holds."""
    path = resolve(init)
    if backbone_kind(path) != "t5":
        raise ConfigError(
            f"generator.init={init} is an encoder-only model; the generator is a T5 seq2seq model: set "
            "generator.init to a T5 folder or hub name"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = T5ForConditionalGeneration.from_pretrained(path)
    known = set(tokenizer.get_vocab())
    positions, size = spec.positions, spec.codebook_size
    added = [n for level in id_token_names(positions, size, spec.suffixes) for n in level if n not in known]
    tokenizer.add_tokens(added, special_tokens=True)
    model.resize_token_embeddings(
        max(len(tokenizer), model.get_input_embeddings().weight.shape[0]), mean_resizing=False
    )
    vocab = IdVocab(tokenizer, spec)
    emb = model.get_input_embeddings().weight
    used = (
        codebooks is not None
        and tuple(codebooks.shape[:2]) >= (positions, size)
        and codebooks.shape[-1] == emb.shape[1]
    )
    with torch.no_grad():  # tokens the start model already had (an indexer's <id_t_k>) keep their embeddings
        rows = torch.tensor(tokenizer.convert_tokens_to_ids(added), dtype=torch.long)
        emb[rows] = torch.randn(len(rows), emb.shape[1]) * emb.std()
        if used:
            for t in range(positions):
                emb[torch.from_numpy(vocab.table[t, :size])] = codebooks[t, :size].to(emb.dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {**(meta or {}), **vocab.to_json(), "init": init, "codebook_init": bool(used)}
    with open(os.path.join(out, GENERATOR_FILE), "w") as f:
        json.dump(info, f, indent=2)
    return info


def load_id_vocab(path: str):
    """(tokenizer, IdVocab, generator.json) of a generator folder (or its init/)."""
    with open(os.path.join(path, GENERATOR_FILE)) as f:
        info = json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return tokenizer, IdVocab(tokenizer, IdSpec.from_json(info)), info


def load_generator(path: str):
    """(model, tokenizer, IdVocab, generator.json) of a generator folder."""
    return (T5ForConditionalGeneration.from_pretrained(path), *load_id_vocab(path))
