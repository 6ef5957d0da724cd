"""The generator: a T5 that reads a query or a user's history and writes an ID, one token per position.

Each ID position has its own tokens, `<id_{t}_{k}>` for codes and `<id_s_{j}>` for the collision suffix, added to
the start model's vocabulary. A generator folder is a plain Hugging Face T5 folder plus generator.json (the ID layout),
and for a generator that reads a frozen encoder's embeddings (generator.encoder) its input projection beside them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load, load_file, save_file
from torch import nn
from transformers import AutoTokenizer, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from .. import storage
from ..config import ConfigError, StorageConfig
from ..quantizers.codes import IdSpec
from .backbone import backbone_kind
from .pretrained import resolve
from .tokenizer import id_token_names

GENERATOR_FILE = "generator.json"
INPUT_PROJECTION = "input_projection.safetensors"  # beside the T5 of a generator that reads embeddings


class IdVocab:
    """IDs (codes + suffix) to token ids and back, for one tokenizer."""

    def __init__(self, tokenizer, spec: IdSpec):
        self.spec = spec
        self.num_positions, self.codebook_size, self.suffixes = spec.num_positions, spec.codebook_size, spec.suffixes
        names = id_token_names(self.num_positions, self.codebook_size, self.suffixes)
        self.table = np.full((len(names), max(self.codebook_size, self.suffixes)), -1, dtype=np.int64)
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
        if (full < 0).any() or (full[:, :-1] >= self.codebook_size).any() or (full[:, -1] >= self.suffixes).any():
            raise ValueError("an ID lies outside the generator's ID vocabulary")
        return self.table[np.arange(full.shape[1]), full]

    def sids(self, tokens: np.ndarray) -> list[str]:
        """Printed IDs ('12-7-103-0') of token rows [N, T + 1]."""
        return ["-".join(str(int(v)) for v in row) for row in self.value[np.asarray(tokens, dtype=np.int64)]]

    def to_json(self) -> dict:
        return self.spec.to_json()


class EmbeddingGenerator(nn.Module):
    """The generator when a frozen pretrained encoder reads the input (generator.encoder): its T5 decoder attends to
    `slots` vectors projected from the input's L2-normalised embedding; the T5's own encoder is never run. Inputs are
    embeddings [n, dim] where the plain generator takes token ids; save_pretrained / from_pretrained keep the T5 and
    the projection side by side."""

    def __init__(self, t5: T5ForConditionalGeneration, dim: int, slots: int):
        super().__init__()
        self.t5, self.slots, self.config = t5, slots, t5.config
        self.proj = nn.Linear(dim, slots * t5.config.d_model)

    def memory(self, emb: torch.Tensor) -> BaseModelOutput:
        x = nn.functional.normalize(emb.float(), dim=-1).to(self.proj.weight.dtype)
        return BaseModelOutput(last_hidden_state=self.proj(x).view(len(x), self.slots, -1))

    def forward(self, input_emb: torch.Tensor, labels: torch.Tensor | None = None):
        return self.t5(encoder_outputs=self.memory(input_emb), labels=labels)

    def generate(self, input_ids: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
        """`input_ids`: the embeddings [n, dim] (named as the plain generator's argument, so one decoding serves
        both)."""
        slots = torch.ones(len(input_ids), self.slots, dtype=torch.long, device=input_ids.device)
        return self.t5.generate(encoder_outputs=self.memory(input_ids), attention_mask=slots, **kwargs)

    def save_pretrained(self, path: str) -> None:
        self.t5.save_pretrained(path)
        state = {k: v.detach().float().contiguous() for k, v in self.proj.state_dict().items()}
        save_file(state, os.path.join(path, INPUT_PROJECTION))

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "EmbeddingGenerator":
        t5 = T5ForConditionalGeneration.from_pretrained(path, **kwargs)
        state = load_file(os.path.join(path, INPUT_PROJECTION))
        model = cls(t5, state["weight"].shape[1], state["weight"].shape[0] // t5.config.d_model)
        model.proj.load_state_dict(state)
        return model.train(t5.training)


def output_mask(allowed: torch.Tensor, width: int) -> torch.Tensor:
    """[width] additive mask of an output layer: 0 at the `allowed` token ids, -inf elsewhere."""
    mask = torch.full((width,), float("-inf"))
    mask[allowed] = 0.0
    return mask


def restrict_outputs(model: nn.Module, allowed: torch.Tensor) -> nn.Module:
    """Makes the generator's softmax run over the `allowed` token ids alone (generator.id_softmax: the ID tokens and
    eos), in training and in decoding alike: a forward hook on its output layer adds -inf to every other logit."""
    head = (model.t5 if hasattr(model, "t5") else model).get_output_embeddings()
    mask = output_mask(allowed, head.out_features)

    def hook(module, inputs, logits):
        return logits + mask.to(device=logits.device, dtype=logits.dtype)

    head.register_forward_hook(hook)
    return model


def generator_model(path: str, **kwargs) -> nn.Module:
    """The generator saved in `path`: a T5 that reads tokens or one that reads embeddings (EmbeddingGenerator); with
    the ID-only softmax when its generator.json asks for it."""
    if os.path.exists(os.path.join(path, INPUT_PROJECTION)):
        model = EmbeddingGenerator.from_pretrained(path, **kwargs)
    else:
        model = T5ForConditionalGeneration.from_pretrained(path, **kwargs)
    info = os.path.join(path, GENERATOR_FILE)
    if os.path.exists(info):
        with open(info) as f:
            id_only = json.load(f).get("id_softmax")
        if id_only:
            tokenizer, vocab, _ = load_id_vocab(path)
            ids = vocab.table[vocab.table >= 0]
            model = restrict_outputs(model, torch.from_numpy(np.append(ids, tokenizer.eos_token_id)))
    return model


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
    init: str,
    spec: IdSpec,
    out: str,
    codebooks: torch.Tensor | None = None,
    meta: dict | None = None,
    input_dim: int = 0,
    slots: int = 0,
) -> dict:
    """Save to `out` the start model with the ID tokens added; their embeddings come from `codebooks` [T, K, d]
    when given (and as wide as the model), else random at the scale of the other embeddings. With `input_dim`, the
    generator reads embeddings of that width through `slots` memory vectors (EmbeddingGenerator). Returns what
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
    names = id_token_names(spec.num_positions, spec.codebook_size, spec.suffixes)
    added = [n for level in names for n in level if n not in known]
    tokenizer.add_tokens(added, special_tokens=True)
    model.resize_token_embeddings(
        max(len(tokenizer), model.get_input_embeddings().weight.shape[0]), mean_resizing=False
    )
    vocab = IdVocab(tokenizer, spec)
    emb = model.get_input_embeddings().weight
    used = (
        codebooks is not None
        and tuple(codebooks.shape[:2]) >= (spec.num_positions, spec.codebook_size)
        and codebooks.shape[-1] == emb.shape[1]
    )
    with torch.no_grad():  # tokens the start model already had (an indexer's <id_t_k>) keep their embeddings
        rows = torch.tensor(tokenizer.convert_tokens_to_ids(added), dtype=torch.long)
        emb[rows] = torch.randn(len(rows), emb.shape[1]) * emb.std()
        if used:
            for t in range(spec.num_positions):
                size = spec.codebook_size
                emb[torch.from_numpy(vocab.table[t, :size])] = codebooks[t, :size].to(emb.dtype)
    if input_dim:
        if model.config.num_layers != model.config.num_decoder_layers:  # generate() sizes its cache by num_layers
            raise ConfigError(
                f"generator.encoder needs a T5 with as many encoder as decoder layers (generator.init={init} has "
                f"{model.config.num_layers} and {model.config.num_decoder_layers})"
            )
        model = EmbeddingGenerator(model, input_dim, slots)
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
    return (generator_model(path), *load_id_vocab(path))
