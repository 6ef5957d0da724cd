"""Hierarchical k-means IDs (DSI/NCI)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .codes import code_key, positions_of
from .kmeans import _sq_dist, assign, kmeans, top_codes


class HierarchicalKMeans:
    """DSI/NCI: k-means with K branches at every node, recursively, `levels` deep. A node with K or fewer points
    keeps each point as its own centre, so small clusters split into single documents."""

    name = "hkmeans"
    reads = "emb"

    def __init__(self, nodes: dict[str, torch.Tensor], num_positions: int):
        self.nodes, self.num_positions = nodes, num_positions

    @classmethod
    def fit(
        cls, x: torch.Tensor, codebook_size: int, num_positions: int, iters: int = 50, seed: int = 0
    ) -> "HierarchicalKMeans":
        x, nodes = x.float(), {}
        stack = [((), x)]
        while stack:
            prefix, points = stack.pop()
            centres = (
                points.clone()
                if len(points) <= codebook_size
                else kmeans(points, codebook_size, iters=iters, seed=seed + len(nodes))
            )
            nodes[code_key(prefix)] = centres
            if len(prefix) + 1 < num_positions:
                labels = assign(points, centres)
                for c in range(len(centres)):  # an empty cluster still gets a node: its own centre
                    members = points[labels == c]
                    stack.append((prefix + (c,), members if len(members) else centres[c : c + 1]))
        return cls(nodes, num_positions)

    def encode(self, x: torch.Tensor, k: int):
        x = x.float()
        codes = torch.zeros(len(x), self.num_positions, dtype=torch.long)
        cand = torch.zeros(len(x), k, dtype=torch.long)
        score = torch.zeros(len(x), k)
        groups = {"": np.arange(len(x))}
        for t in range(self.num_positions):
            nxt = defaultdict(list)
            for key, rows in groups.items():
                dist = _sq_dist(x[rows], self.nodes[key])
                codes[rows, t] = dist.argmin(1)
                if t == self.num_positions - 1:
                    cand[rows], score[rows] = top_codes(dist, k)
                for r, c in zip(rows, codes[rows, t].tolist()):
                    nxt[f"{key}-{c}" if key else str(c)].append(r)
            groups = {key: np.array(rows) for key, rows in nxt.items()}
        return codes, cand, score

    def tensors(self) -> dict:
        return {f"node:{key}": c for key, c in self.nodes.items()}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict) -> "HierarchicalKMeans":
        return cls({name[len("node:") :]: c for name, c in tensors.items()}, positions_of(meta))
