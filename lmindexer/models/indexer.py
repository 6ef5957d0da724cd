"""The semantic indexer: a T5 that emits one code per ID position, a codebook per position, and a reconstructor.

Position t is read from the decoder's last state when it is fed [start, <id_1_c1>, ..., <id_{t-1}_c{t-1}>], so each
position is conditioned on the earlier codes. Saved and loaded like a Hugging Face model (`save_pretrained` /
`from_pretrained`): the T5 and tokenizer files, plus indexer.safetensors (codebooks, reconstructor) and indexer.json.
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, T5ForConditionalGeneration

from ..config import IndexerConfig
from ..ids.losses import contrastive_loss, reconstruction_loss
from .quantizer import Codebook
from .reconstructor import Reconstructor, reconstruction_mask

CONFIG_FILE, WEIGHTS_FILE = "indexer.json", "indexer.safetensors"
PHASES = ("warmup", "continuous", "joint")


def id_token_names(positions: int, size: int) -> list[str]:
    return [f"<id_{t}_{k}>" for t in range(1, positions + 1) for k in range(size)]


class SemanticIndexer(nn.Module):
    def __init__(self, t5: T5ForConditionalGeneration, tokenizer, cfg: IndexerConfig, max_length: int,
                 state: dict | None = None):
        super().__init__()
        self.t5, self.tokenizer, self.cfg, self.max_length = t5, tokenizer, cfg, max_length
        c = t5.config
        self.codebooks = nn.ModuleList(Codebook(cfg.codebook_size, c.d_model) for _ in range(cfg.num_positions))
        self.reconstructor = Reconstructor(c.d_model, c.num_heads, c.d_ff, cfg.recon_layers, max_length,
                                           c.dropout_rate)
        self.state = state or {"positions_done": 0, "history": [],
                               "id_token_offset": tokenizer.convert_tokens_to_ids("<id_1_0>")}
        self.phase, self.position = "joint", 1

    # ---- construction and persistence -------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, path: str, cfg: IndexerConfig, max_length: int) -> "SemanticIndexer":
        """A fresh indexer on a saved T5 + tokenizer: ID tokens are added to the vocabulary."""
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.add_tokens(id_token_names(cfg.num_positions, cfg.codebook_size), special_tokens=True)
        t5 = T5ForConditionalGeneration.from_pretrained(path)
        first = tokenizer.convert_tokens_to_ids("<id_1_0>")
        t5.resize_token_embeddings(max(len(tokenizer), t5.get_input_embeddings().weight.shape[0]),
                                   mean_resizing=False)
        emb = t5.get_input_embeddings().weight
        with torch.no_grad():  # distinct rows until codebook t replaces them after position t
            emb[first:] = torch.randn_like(emb[first:]) * emb[:first].std()
        return cls(t5, tokenizer, cfg, max_length)

    def save_pretrained(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.t5.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        own = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("t5.")}
        save_file(own, os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump({"indexer": dataclasses.asdict(self.cfg), "max_length": self.max_length, "state": self.state},
                      f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, dropout: float | None = None) -> "SemanticIndexer":
        with open(os.path.join(path, CONFIG_FILE)) as f:
            meta = json.load(f)
        kwargs = {} if dropout is None else {"dropout_rate": dropout}
        t5 = T5ForConditionalGeneration.from_pretrained(path, **kwargs)
        model = cls(t5, AutoTokenizer.from_pretrained(path), IndexerConfig(**meta["indexer"]), meta["max_length"],
                    meta["state"])
        missing, unexpected = model.load_state_dict(load_file(os.path.join(path, WEIGHTS_FILE)), strict=False)
        if unexpected or any(not k.startswith("t5.") for k in missing):
            raise ValueError(f"{path}: indexer weights do not match (missing {missing}, unexpected {unexpected})")
        return model

    # ---- phases ------------------------------------------------------------------------------------------
    def set_phase(self, phase: str, position: int) -> None:
        """Choose what trains: warmup = reconstructor only; continuous = all but codebooks; joint adds codebook t."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r} (one of {PHASES})")
        self.phase, self.position = phase, position
        for p in self.t5.parameters():
            p.requires_grad = phase != "warmup"
        for t, book in enumerate(self.codebooks, 1):
            book.weight.requires_grad = phase == "joint" and t == position

    def set_id_embeddings(self, position: int) -> None:
        """Copy codebook t into the input embeddings of the tokens <id_t_k>, which the decoder reads."""
        start = self.id_tokens(position, torch.zeros(1, dtype=torch.long)).item()
        with torch.no_grad():
            self.t5.get_input_embeddings().weight[start:start + self.cfg.codebook_size] = self.codebooks[position - 1].weight

    def id_tokens(self, position: int, codes: torch.Tensor) -> torch.Tensor:
        return self.state["id_token_offset"] + (position - 1) * self.cfg.codebook_size + codes

    # ---- forward -----------------------------------------------------------------------------------------
    def decoder_states(self, input_ids, attention_mask, prefix) -> torch.Tensor:
        """[B, t, d] decoder states for inputs [start, <id_1_c1>, ...]; the last one is h_t."""
        enc = self.t5.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start = torch.full((input_ids.shape[0], 1), self.t5.config.decoder_start_token_id, device=input_ids.device,
                           dtype=torch.long)
        ids = [start] + [self.id_tokens(s + 1, prefix[:, s:s + 1].long()) for s in range(prefix.shape[1])]
        return self.t5.decoder(input_ids=torch.cat(ids, 1), encoder_hidden_states=enc,
                               encoder_attention_mask=attention_mask).last_hidden_state

    def code_scores(self, h: torch.Tensor, position: int) -> torch.Tensor:
        logits, _, _ = self.codebooks[position - 1](h, selection=self.cfg.selection)
        return logits

    @torch.no_grad()
    def generate_codes(self, input_ids, attention_mask, positions: int | None = None) -> torch.Tensor:
        """Codes for positions 1..T, each conditioned on the codes chosen before it."""
        prefix = torch.zeros(input_ids.shape[0], 0, dtype=torch.long, device=input_ids.device)
        for t in range(1, (positions or self.state["positions_done"]) + 1):
            h = self.decoder_states(input_ids, attention_mask, prefix)[:, -1]
            prefix = torch.cat([prefix, self.code_scores(h, t).argmax(-1, keepdim=True)], 1)
        return prefix

    @torch.no_grad()
    def candidates(self, input_ids, attention_mask, prefix, k: int):
        """(top-k codes, their scores) for the position after `prefix`, best first."""
        h = self.decoder_states(input_ids, attention_mask, prefix)[:, -1]
        scores = self.code_scores(h, prefix.shape[1] + 1)
        top = scores.topk(min(k, scores.shape[-1]), dim=-1)
        return top.indices, top.values

    def forward(self, input_ids, attention_mask, prefix, neg_input_ids=None, neg_attention_mask=None,
                neg_prefix=None) -> dict:
        """Losses of the current phase and position on one batch."""
        t, cfg = self.position, self.cfg
        with torch.set_grad_enabled(self.phase != "warmup" and torch.is_grad_enabled()):
            states = self.decoder_states(input_ids, attention_mask, prefix)
        h = states[:, -1]
        out = {}
        slots = [self.codebooks[s](codes=prefix[:, s].long()).detach() for s in range(t - 1)]
        if self.phase == "joint":
            _, z, codes = self.codebooks[t - 1](h, selection=cfg.selection, temperature=cfg.temperature,
                                                gumbel=cfg.gumbel and self.training)
            out["codes"] = codes
        else:
            z = h
        slots = torch.stack(slots + [z], 1)
        valid = attention_mask.bool() & (input_ids != self.t5.config.eos_token_id)
        mask = reconstruction_mask(attention_mask, slots.shape[1], cfg.mask_ratio_first if t == 1
                                   else cfg.mask_ratio_later)
        hidden = self.reconstructor(slots.sum(1), slots, self.t5.get_input_embeddings()(input_ids), mask)
        if self.t5.config.tie_word_embeddings:
            hidden = hidden * self.t5.config.d_model ** -0.5
        out["recon"], out["accuracy"] = reconstruction_loss(self.t5.lm_head(hidden), input_ids, valid)
        loss = out["recon"]
        if self.phase != "warmup" and cfg.contrastive_weight > 0:
            h2 = self.decoder_states(input_ids, attention_mask, prefix)[:, -1]  # a second dropout view
            neg = None
            if neg_input_ids is not None:
                neg = self.decoder_states(neg_input_ids, neg_attention_mask, neg_prefix)[:, -1]
            out["contrastive"] = contrastive_loss(h, h2, cfg.contrastive_temperature, neg)
            loss = loss + cfg.contrastive_weight * out["contrastive"]
        if t > 1 and self.phase != "warmup":
            commit = [F.cross_entropy(self.code_scores(states[:, s], s + 1), prefix[:, s].long()) for s in range(t - 1)]
            out["commitment"] = torch.stack(commit).mean()
            loss = loss + cfg.commitment_weight * out["commitment"]
        out["loss"] = loss
        return out
