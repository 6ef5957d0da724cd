"""Losses of ID learning as pure functions: reconstruction and contrastive (negatives from every worker)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.nn.functional import all_gather  # differentiable; its successor is a private API

warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)


def gather_across_workers(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rows of x from every worker, with gradients; offset of this worker's rows). Sizes may differ."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = F.pad(x, (0, 0, 0, max(sizes) - x.shape[0]))
    parts = all_gather(padded)
    rank = dist.get_rank()
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]), sum(sizes[:rank])


def contrastive_loss(
    view1: torch.Tensor, view2: torch.Tensor, temperature: float, hard_negatives: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE: row i of view1 must pick row i of view2 among all workers' view2 rows (and hard negatives)."""
    a = F.normalize(view1, dim=-1)
    candidates, offset = gather_across_workers(F.normalize(view2, dim=-1))
    if hard_negatives is not None:
        negatives, _ = gather_across_workers(F.normalize(hard_negatives, dim=-1))
        candidates = torch.cat([candidates, negatives])
    logits = a @ candidates.T / temperature
    target = torch.arange(a.shape[0], device=a.device) + offset
    return F.cross_entropy(logits, target)


def reconstruction_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor):
    """(cross-entropy over the valid document tokens, token accuracy)."""
    mask = valid.bool()
    loss = F.cross_entropy(logits[mask], targets[mask])
    accuracy = (logits[mask].argmax(-1) == targets[mask]).float().mean()
    return loss, accuracy


def prefix_contrastive_loss(
    view1: torch.Tensor, view2: torch.Tensor, group: torch.Tensor, similarity: str = "dot", temperature: float = 1.0
) -> torch.Tensor:
    """Same-prefix contrast (the original LMIndexer code, positions >= 2): row i of view1 must pick row i of view2
    among the view2 rows of its own group (documents that share its ID prefix), so the loss can only fall by
    separating documents the earlier codes do not already separate. Rows alone in their group are skipped; with
    none left the loss is 0 (with a graph, so every worker still takes the same backward)."""
    if similarity == "cos":
        view1, view2 = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = view1 @ view2.T
    if similarity == "cos":
        logits = logits / temperature
    same = group[:, None] == group[None, :]
    has = same.sum(1) > 1
    if not bool(has.any()):
        return logits.sum() * 0.0
    logits = logits.masked_fill(~same, float("-inf"))
    target = torch.arange(len(group), device=group.device)
    return F.cross_entropy(logits[has], target[has])


def usage_loss(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log K - H(mean over the batch of softmax(logits / tau)): 0 when the batch spreads evenly over the K codes,
    log K when every row puts its mass on the same code (a collapse guard)."""
    mean = F.softmax(logits.float() / temperature, dim=-1).mean(0)
    return math.log(logits.shape[-1]) + (mean * mean.clamp_min(1e-12).log()).sum()


def prefix_collision_loss(logits: torch.Tensor, group: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over ordered pairs of distinct rows with the same `group` (documents sharing their ID prefix) of the
    probability that both pick the same code, with p = softmax(logits / tau) per row: 0 when same-prefix documents
    put their mass on different codes, 1 when they all pick one code. Unlike an entropy term it leaves each row free
    to be sharp. With no such pair the loss is 0 (with a graph, so every worker still takes the same backward)."""
    p = F.softmax(logits.float() / temperature, dim=-1)
    same = group[:, None] == group[None, :]
    same.fill_diagonal_(False)
    if not bool(same.any()):
        return p.sum() * 0.0
    return (p @ p.T)[same].mean()


def neighbourhood_loss(states: torch.Tensor, anchors: torch.Tensor, temperature: float) -> torch.Tensor:
    """How far the batch's neighbourhoods have moved from the anchors' (the same documents' states before training):
    for each row, the KL divergence from the anchors' softmax over the other rows' cosine similarity / temperature to
    the states' one, averaged over the rows. 0 when the states keep the anchors' similarities; the anchors take no
    gradient. Rows of this worker only (no gather): a batch is a sample of neighbours."""
    if states.shape[0] < 2:
        return states.sum() * 0.0
    eye = torch.eye(states.shape[0], dtype=torch.bool, device=states.device)

    def log_neighbours(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1)
        return F.log_softmax((x @ x.T / temperature).masked_fill(eye, float("-inf")), -1)

    target = log_neighbours(anchors.detach())
    kl = target.exp() * (target - log_neighbours(states))
    return kl.masked_fill(eye, 0.0).sum(-1).mean()
