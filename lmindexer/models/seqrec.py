"""A causal transformer over a user's items that scores every item exactly in one pass: the one-pass ID generator
(`generator.kind=seqrec`) and, with one embedding per item, SASRec (Kang & McAuley, 2018).

An item's vector is composed from embedding rows (`item_rows`, one row list per item, fixed at build time):
- `item`: one free row per item (SASRec);
- `codes`: one row per (position, code) of its semantic ID plus one per collision suffix, summed: items that share
  codes share those parts, and an ID's vector exists only for IDs in the table (the item softmax of RPG, Hou et al.
  KDD 2025, with the code embeddings summed rather than the positions scored independently);
- `prefixes`: one row per distinct ID prefix (c1), (c1, c2), ... and the full ID with its suffix, summed (the
  prefix n-grams of Singh et al., 2023): the hierarchy is explicit, and the last row is the item's own.
The history is read through the same vectors (tied input and output), oldest first and right-padded, so causal
attention never reaches padding. The loss is a softmax over every item at every position with a label; a ranking
is the exact score of every item (no beam search, no invalid ID), with the history's own items left out.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE, WEIGHTS_FILE = "seqrec.json", "seqrec.pt"
ITEMS_FILE = "items.parquet"  # beside the model: the doc_id of each item number (1-based, in order)
COMPOSE = ("item", "codes", "prefixes")


@dataclass
class SeqRecConfig:
    items: int  # item numbers are 1..items; 0 pads
    rows: int  # embedding rows that item vectors are summed from
    compose: str = "item"  # how item_rows were built (see item_rows)
    max_len: int = 50  # newest items of a history that are read
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2


def item_rows(compose: str, codes: np.ndarray | None = None, suffix: np.ndarray | None = None, items: int = 0):
    """([items, P] int64 embedding rows of each item, number of rows) for `compose` (see the module docstring).
    `codes` [N, T] and `suffix` [N] are the ID table's, in item order; `item` needs only `items`."""
    if compose not in COMPOSE:
        raise ValueError(f"compose={compose!r}: expected one of {', '.join(COMPOSE)}")
    if compose == "item":
        return np.arange(items, dtype=np.int64)[:, None], items
    if codes is None or suffix is None:
        raise ValueError(f"compose={compose!r} needs the items' codes and suffixes")
    full = np.concatenate([np.asarray(codes, np.int64), np.asarray(suffix, np.int64)[:, None]], 1)
    if (full < 0).any():
        raise ValueError("negative code in the ID table")
    rows, offset = np.empty_like(full), 0
    for t in range(full.shape[1]):
        if compose == "codes":
            rows[:, t] = offset + full[:, t]
            offset += int(full[:, t].max()) + 1
        else:
            _, group = np.unique(full[:, : t + 1], axis=0, return_inverse=True)
            rows[:, t] = offset + group.reshape(-1)
            offset += int(group.max()) + 1
    return rows, offset


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP."""

    def __init__(self, cfg: SeqRecConfig):
        super().__init__()
        self.heads, self.p = cfg.heads, cfg.dropout
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv, self.out = nn.Linear(cfg.dim, 3 * cfg.dim), nn.Linear(cfg.dim, cfg.dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim), nn.Dropout(cfg.dropout)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.mlp(self.norm2(x))


class SeqRec(nn.Module):
    ddp_find_unused = False  # every parameter takes part in every forward

    def __init__(self, cfg: SeqRecConfig, rows: torch.Tensor):
        super().__init__()
        if rows.shape[0] != cfg.items:
            raise ValueError(f"{rows.shape[0]} item row lists for {cfg.items} items")
        self.cfg = cfg
        self.register_buffer("item_rows", torch.as_tensor(rows, dtype=torch.long))
        self.emb = nn.Embedding(cfg.rows, cfg.dim)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        # a summed item vector of about unit norm (PyTorch's N(0, 1) default makes the logits far too large to learn)
        nn.init.normal_(self.emb.weight, std=1 / math.sqrt(cfg.dim * rows.shape[1]))
        nn.init.normal_(self.pos.weight, std=0.02)

    def item_table(self) -> torch.Tensor:
        """[items, d]: every item's vector, composed from its rows."""
        return self.emb(self.item_rows).sum(1)

    def hidden(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """[B, L, d]: position i has read items 0..i of the right-padded histories `seq` (item numbers, 0 pads)."""
        padded = torch.cat([table.new_zeros(1, table.shape[1]), table])
        x = padded[seq] * math.sqrt(self.cfg.dim) + self.pos(torch.arange(seq.shape[1], device=seq.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict:
        """Cross-entropy of every next item over all items, at the positions with a label (> 0)."""
        table = self.item_table()
        h = self.hidden(input_ids, table)
        keep = labels > 0
        return {"loss": F.cross_entropy(h[keep] @ table.T, labels[keep] - 1)}

    @torch.no_grad()
    def user_states(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, d]: the state after each right-padded history (its last item's position)."""
        last = (seq > 0).sum(1).clamp_min(1) - 1
        h = self.hidden(seq, self.item_table())
        return h[torch.arange(len(seq), device=seq.device), last]

    def save_pretrained(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        torch.save(self.state_dict(), os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump(asdict(self.cfg), f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str) -> "SeqRec":
        with open(os.path.join(path, CONFIG_FILE)) as f:
            cfg = SeqRecConfig(**json.load(f))
        state = torch.load(os.path.join(path, WEIGHTS_FILE), map_location="cpu")
        model = cls(cfg, state["item_rows"])
        model.load_state_dict(state)
        return model.eval()


def right_pad(sequences: list, length: int) -> np.ndarray:
    """[N, length] int64: each sequence's newest `length` items, oldest first, 0s after them."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for i, s in enumerate(sequences):
        s = s[-length:]
        out[i, : len(s)] = s
    return out


def training_rows(sequences: list, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) [N, length]: each sequence (item numbers) predicts its own next items in one pass."""
    return right_pad([s[:-1] for s in sequences], length), right_pad([s[1:] for s in sequences], length)


@torch.no_grad()
def top_k(states: torch.Tensor, table: torch.Tensor, k: int, exclude: list | None = None, chunk: int = 2**24):
    """(scores, item indices 0-based) [B, k] of the best items for each state, by the exact dot product with every
    item's vector, `exclude[b]` (0-based item indices) left out. Items are scored in chunks of at most `chunk` scores
    a time, so a million-item table needs no [B, items] matrix."""
    k = min(k, len(table))
    best_s = states.new_full((len(states), 0), float("-inf"))
    best_i = torch.zeros((len(states), 0), dtype=torch.long, device=states.device)
    if exclude:  # (user, item) pairs to leave out, masked chunk by chunk
        users = torch.tensor([b for b, items in enumerate(exclude) for _ in items], dtype=torch.long)
        items = torch.tensor([i for found in exclude for i in found], dtype=torch.long)
    step = max(k, chunk // max(len(states), 1))
    for lo in range(0, len(table), step):
        s = states @ table[lo : lo + step].T
        if exclude:
            inside = (items >= lo) & (items < lo + s.shape[1])
            s[users[inside], items[inside] - lo] = float("-inf")
        s, i = s.topk(min(k, s.shape[1]), dim=1)
        best_s, order = torch.cat([best_s, s], 1).topk(min(k, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.cat([best_i, i + lo], 1).gather(1, order)
    return best_s, best_i


def rank(model: SeqRec, histories: list, k: int, batch: int = 512) -> list:
    """Top-k item numbers (1-based) after each history (item numbers, oldest first), its own items left out."""
    model.eval()
    table, out = model.item_table().detach(), []
    for i in range(0, len(histories), batch):
        part = histories[i : i + batch]
        seq = torch.from_numpy(right_pad(part, model.cfg.max_len))
        _, idx = top_k(model.user_states(seq), table, k, [sorted({j - 1 for j in h}) for h in part])
        out += (idx + 1).tolist()
    return out
