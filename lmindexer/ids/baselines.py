"""Baseline ID methods next to LMIndexer, behind one interface: hierarchical k-means (DSI/NCI), residual k-means
(RK-means), RQ-VAE (TIGER, trained in ids/rqvae.py) and random IDs.

A method maps embeddings [n, d] to codes [n, T] in 0..K-1, plus the k best last-level codes and their scores
(minus squared distance) that rebalancing uses. The k-means methods fit on a sample and then encode any number of
documents; every method saves as method.json + method.safetensors, so actors on any node can load it.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .. import storage
from .kmeans import _sq_dist, assign, kmeans
from .unique import code_key


def top_codes(dist: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest codes (padded with the nearest when fewer exist) and minus their squared distances."""
    top = (-dist).topk(min(k, dist.shape[1]), dim=1)
    codes, scores = top.indices, top.values
    if codes.shape[1] < k:
        pad = k - codes.shape[1]
        codes = torch.cat([codes, codes[:, :1].expand(-1, pad)], 1)
        scores = torch.cat([scores, scores[:, -1:].expand(-1, pad)], 1)
    return codes, scores


def residual_fit(z: torch.Tensor, size: int, levels: int, iters: int, seed: int) -> list[torch.Tensor]:
    """One k-means codebook per level, each fitted on what the earlier levels left unexplained."""
    books, r = [], z.float()
    for t in range(levels):
        c = kmeans(r, size, iters=iters, seed=seed + t)
        books.append(c)
        r = r - c[assign(r, c)]
    return books


def residual_encode(z: torch.Tensor, books: list[torch.Tensor], k: int):
    codes, r = [], z.float()
    for c in books:
        dist = _sq_dist(r, c)
        codes.append(dist.argmin(1))
        r = r - c[codes[-1]]
    cand, score = top_codes(dist, k)
    return torch.stack(codes, 1), cand, score


class ResidualKMeans:
    name = "rkmeans"

    def __init__(self, books: list[torch.Tensor]):
        self.books = books

    @classmethod
    def fit(cls, x: torch.Tensor, size: int, levels: int, iters: int = 50, seed: int = 0) -> "ResidualKMeans":
        return cls(residual_fit(x, size, levels, iters, seed))

    def encode(self, x: torch.Tensor, k: int):
        return residual_encode(x, self.books, k)

    def tensors(self) -> dict:
        return {f"book.{t}": b for t, b in enumerate(self.books)}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "ResidualKMeans":
        return cls([tensors[f"book.{t}"] for t in range(meta["levels"])])


class HierarchicalKMeans:
    """DSI/NCI: k-means with K branches at every node, recursively, `levels` deep. A node with K or fewer points
    keeps each point as its own centre, so small clusters split into single documents."""
    name = "hkmeans"

    def __init__(self, nodes: dict[str, torch.Tensor], levels: int):
        self.nodes, self.levels = nodes, levels

    @classmethod
    def fit(cls, x: torch.Tensor, size: int, levels: int, iters: int = 50, seed: int = 0) -> "HierarchicalKMeans":
        x, nodes = x.float(), {}
        stack = [((), x)]
        while stack:
            prefix, points = stack.pop()
            centres = points.clone() if len(points) <= size else kmeans(points, size, iters=iters,
                                                                        seed=seed + len(nodes))
            nodes[code_key(prefix)] = centres
            if len(prefix) + 1 < levels:
                labels = assign(points, centres)
                for c in range(len(centres)):  # an empty cluster still gets a node: its own centre
                    members = points[labels == c]
                    stack.append((prefix + (c,), members if len(members) else centres[c:c + 1]))
        return cls(nodes, levels)

    def encode(self, x: torch.Tensor, k: int):
        x = x.float()
        codes = torch.zeros(len(x), self.levels, dtype=torch.long)
        cand = torch.zeros(len(x), k, dtype=torch.long)
        score = torch.zeros(len(x), k)
        groups = {"": np.arange(len(x))}
        for t in range(self.levels):
            nxt = defaultdict(list)
            for key, rows in groups.items():
                dist = _sq_dist(x[rows], self.nodes[key])
                codes[rows, t] = dist.argmin(1)
                if t == self.levels - 1:
                    cand[rows], score[rows] = top_codes(dist, k)
                for r, c in zip(rows, codes[rows, t].tolist()):
                    nxt[f"{key}-{c}" if key else str(c)].append(r)
            groups = {key: np.array(rows) for key, rows in nxt.items()}
        return codes, cand, score

    def tensors(self) -> dict:
        return {f"node:{key}": c for key, c in self.nodes.items()}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "HierarchicalKMeans":
        return cls({name[len("node:"):]: c for name, c in tensors.items()}, meta["levels"])


def random_codes(doc_ids, size: int, levels: int, seed: int) -> np.ndarray:
    """Codes drawn from a hash of (seed, doc_id): the same document always gets the same random ID."""
    out = np.empty((len(doc_ids), levels), dtype=np.int64)
    for i, d in enumerate(doc_ids):
        digest = hashlib.blake2b(f"{seed}:{d}".encode(), digest_size=8 * levels).digest()
        out[i] = np.frombuffer(digest, dtype=np.uint64) % size
    return out


def save_method(fs, path: str, method, meta: dict) -> None:
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(storage.join(path, "method.safetensors")) as f:
        f.write(save_tensors({k: v.detach().cpu().contiguous() for k, v in method.tensors().items()}))
    storage.write_json(fs, storage.join(path, "method.json"), {**meta, "method": method.name})


def load_method(fs, path: str):
    """(method, meta) saved by save_method."""
    from .rqvae import RQVAE

    meta = storage.read_json(fs, storage.join(path, "method.json"))
    with fs.open_input_stream(storage.join(path, "method.safetensors")) as f:
        tensors = load_tensors(f.read())
    kinds = {"hkmeans": HierarchicalKMeans, "rkmeans": ResidualKMeans, "rqvae": RQVAE}
    return kinds[meta["method"]].from_tensors(tensors, meta), meta
