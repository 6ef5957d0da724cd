"""A prefix trie over the valid IDs, stored as flat tensors (CSR), and the logits processor that decodes under it.

No Python object per node: a million IDs of four tokens are a few arrays of a few million integers. Nodes are
numbered breadth first; the edges of node n are edges[indptr[n]:indptr[n+1]], sorted by token, and the key
node * vocab + token is sorted over all edges, so one `searchsorted` walks every beam one step at once.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor


def build_trie(sequences: np.ndarray) -> dict:
    """CSR arrays for the token sequences [N, L] (all of one length). Duplicates are allowed and merged."""
    seq = np.asarray(sequences, dtype=np.int64)
    if seq.ndim != 2 or seq.shape[0] == 0:
        raise ValueError(f"a trie needs a non-empty [N, L] array of token ids, got shape {seq.shape}")
    seq = seq[np.lexsort(seq.T[::-1])]
    new = np.zeros(len(seq), dtype=bool)
    new[0] = True
    parent_ids = np.zeros(len(seq), dtype=np.int64)  # node of each row's prefix at the previous depth (root 0)
    parents, tokens, children = [], [], []
    next_id = 1
    for d in range(seq.shape[1]):
        new = new.copy()
        new[1:] |= seq[1:, d] != seq[:-1, d]
        first = np.flatnonzero(new)
        ids = np.arange(next_id, next_id + len(first))
        parents.append(parent_ids[first])
        tokens.append(seq[first, d])
        children.append(ids)
        parent_ids = ids[np.cumsum(new) - 1]
        next_id += len(first)
    parent = np.concatenate(parents)
    token = np.concatenate(tokens)
    indptr = np.zeros(next_id + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=next_id), out=indptr[1:])
    return {
        "indptr": indptr,
        "token": token,
        "child": np.concatenate(children),
        "parent": parent,
        "depth": seq.shape[1],
        "vocab": int(seq.max()) + 1,
    }


def trie_bytes(trie: dict) -> int:
    return sum(v.nbytes for v in trie.values() if isinstance(v, np.ndarray))


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that does not continue a valid ID; after a whole ID only `eos` may follow.

    `generate` hands it the decoder ids so far, starting with the decoder start token."""

    def __init__(self, trie: dict, eos_token_id: int, pad_token_id: int):
        self.indptr = torch.as_tensor(np.array(trie["indptr"]))
        self.token = torch.as_tensor(np.array(trie["token"]))
        self.child = torch.as_tensor(np.array(trie["child"]))
        self.keys = torch.as_tensor(trie["parent"] * trie["vocab"] + trie["token"])
        self.vocab, self.depth = trie["vocab"], trie["depth"]
        self.eos, self.pad = eos_token_id, pad_token_id

    def nodes(self, decoded: torch.Tensor) -> torch.Tensor:
        """Trie node reached by each row of decoded tokens [B, d] (d <= depth), -1 where it left the trie."""
        node = torch.zeros(decoded.shape[0], dtype=torch.long)
        for j in range(decoded.shape[1]):
            tok = decoded[:, j].long()
            key = node * self.vocab + tok.clamp(0, self.vocab - 1)
            pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
            hit = (node >= 0) & (tok < self.vocab) & (self.keys[pos] == key)
            node = torch.where(hit, self.child[pos], torch.full_like(node, -1))
        return node

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        decoded = input_ids[:, 1:].cpu()
        mask = torch.full(scores.shape, float("-inf"))
        if decoded.shape[1] >= self.depth:  # a whole ID is closed by eos; a beam closed before only pads
            mask[:, self.eos if decoded.shape[1] == self.depth else self.pad] = 0
            return scores + mask.to(scores.device, scores.dtype)
        node = self.nodes(decoded)
        inside = node >= 0
        start, end = self.indptr[node.clamp(min=0)], self.indptr[node.clamp(min=0) + 1]
        count = torch.where(inside, end - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(node)), count)
        offset = torch.arange(int(count.sum())) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        mask[rows, self.token[start[rows] + offset]] = 0
        mask[~inside, self.pad] = 0  # never reached by generate; keeps every row finite
        return scores + mask.to(scores.device, scores.dtype)
