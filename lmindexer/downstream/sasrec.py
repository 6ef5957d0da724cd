"""SASRec (Kang & McAuley, 2018): a causal transformer over item ids, the sequential recommender a generative one
must beat. One pass over a history predicts every next item (the loss covers all positions), trained on the shared
Ray Train loop (DeepSpeed/DDP, checkpoints) like the other models; scoring is a full ranking over every item.

Where this differs from the reference code: the loss is a softmax over all items (as later re-implementations,
e.g. RecBole's `CE` option, which does better than the original's one sampled negative per position), and the
history is cut to the newest `max_len` items, left-padded.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..paths import RunLayout
from ..train.task import TaskDefaults

CONFIG_FILE, WEIGHTS_FILE = "sasrec.json", "sasrec.pt"
SASREC_BATCH, SASREC_LR = 128, 1e-3  # the reference setup's global batch and Adam learning rate


@dataclass
class SASRecConfig:
    items: int  # item ids are 1..items; 0 pads
    max_len: int = 50
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(cfg.items + 1, cfg.dim, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, cfg.dim * 4, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.items.weight, std=cfg.dim**-0.5)

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L, d]: position i has seen items 0..i of the (left-padded) history."""
        length = seq.shape[1]
        x = self.items(seq) * self.cfg.dim**0.5 + self.positions(torch.arange(length, device=seq.device))
        later = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device), 1)
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        # blocked: later items, and padding (except a position's own key, so no row is left without one)
        blocked = later[None] | ((seq == 0)[:, None, :] & ~eye[None])
        blocked = blocked.repeat_interleave(self.cfg.heads, 0)
        h = self.encoder(self.drop(x), mask=blocked)
        return self.norm(h)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict:
        """Cross-entropy of every next item over all items, at the positions with a label."""
        h = self.hidden(input_ids)
        keep = labels > 0
        logits = h[keep] @ self.items.weight[1:].T
        return {"loss": F.cross_entropy(logits, labels[keep] - 1)}

    @torch.no_grad()
    def scores(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, items] scores of items 1..items after each history."""
        return self.hidden(seq)[:, -1] @ self.items.weight[1:].T

    def save_pretrained(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        torch.save(self.state_dict(), os.path.join(path, WEIGHTS_FILE))
        with open(os.path.join(path, CONFIG_FILE), "w") as f:
            json.dump(asdict(self.cfg), f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str) -> "SASRec":
        with open(os.path.join(path, CONFIG_FILE)) as f:
            model = cls(SASRecConfig(**json.load(f)))
        model.load_state_dict(torch.load(os.path.join(path, WEIGHTS_FILE), map_location="cpu"))
        return model.eval()


def left_pad(sequences: list, length: int) -> np.ndarray:
    """[N, length] int64: each sequence's newest `length` items, right-aligned, 0 before them."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for i, s in enumerate(sequences):
        s = s[-length:]
        if len(s):
            out[i, length - len(s) :] = s
    return out


def training_rows(histories: list, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) [N, length]: each history (item numbers) predicts its own next items in one pass."""
    return left_pad([h[:-1] for h in histories], length), left_pad([h[1:] for h in histories], length)


def rank(model: SASRec, histories: list, k: int, batch: int = 512) -> list:
    """Top-k item numbers (1-based) after each history, the history's own items left out."""
    out = []
    for i in range(0, len(histories), batch):
        part = histories[i : i + batch]
        scores = model.scores(torch.from_numpy(left_pad(part, model.cfg.max_len)))
        for row, h in enumerate(part):
            seen = torch.tensor(sorted(set(h)), dtype=torch.long) - 1
            scores[row, seen] = float("-inf")
        out += (scores.topk(k, dim=-1).indices + 1).tolist()
    return out


@dataclass
class SASRecTask(TaskDefaults):
    """SASRec on the shared Ray Train loop (lmindexer.train.loop): rows of (inputs, labels)."""

    cfg: SASRecConfig
    out_dir: str
    epochs: int
    lr: float
    batch_size: int
    seed: int = 0
    name: str = "sasrec"

    def build(self) -> SASRec:
        torch.manual_seed(self.seed)
        return SASRec(self.cfg)

    def batches(self, shard, epoch: int):
        from ..train.loop import shuffled_batches

        for b in shuffled_batches(shard, self.batch_size, self.seed, epoch):
            yield {"input_ids": b["input_ids"].long(), "labels": b["labels"].long()}


def sasrec_reference(
    cfg: Config, sequences: list, histories: list, k: int, epochs: int, dropout: float = 0.5, seed: int = 0
) -> tuple[list, dict]:
    """(top-k items after each of `histories`, settings): SASRec trained with Ray Train on the training
    `sequences` (per user, the items before the validation target), each predicting its own next items in one pass,
    as the SASRec paper trains. The model goes to <output_dir>/sasrec; its Ray Train run starts afresh each time."""
    import time

    from ..raydata import train_rows
    from ..train.loop import fit

    start = time.time()
    number: dict = {}
    for h in list(sequences) + list(histories):
        for i in h:
            number.setdefault(i, len(number) + 1)
    train = [[number[i] for i in s] for s in sequences if len(s) >= 2]
    if not train:
        raise ValueError("SASRec: no training sequence with 2 items or more")
    model_cfg = SASRecConfig(items=len(number), dropout=dropout)
    inputs, labels = training_rows(train, model_cfg.max_len)
    out = RunLayout(cfg).sasrec
    batch = max(1, SASREC_BATCH // cfg.train.num_workers)  # the global batch, whatever the worker count
    task = SASRecTask(model_cfg, out, epochs, SASREC_LR, batch, seed=seed)
    fit(cfg, task, train_rows(cfg, input_ids=inputs, labels=labels), fresh=True)
    model = SASRec.from_pretrained(out)
    item_of = {n: i for i, n in number.items()}
    ranked = [[item_of[n] for n in row] for row in rank(model, [[number[i] for i in h] for h in histories], k)]
    seconds = round(time.time() - start, 1)
    return ranked, {"epochs": epochs, "dropout": dropout, "train_sequences": len(train), "seconds": seconds}
