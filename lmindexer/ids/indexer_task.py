"""What one ID-learning phase trains, for the shared Ray Train loop (lmindexer.train.loop)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import ray
import torch

from ..eval.metrics import code_usage, conditional_perplexity, position_figures
from ..models.indexer import SemanticIndexer
from ..raydata import shared
from ..train.loop import all_reduce_sum, shuffled_batches
from ..train.task import TaskDefaults
from .infer import gathered_outputs
from .negatives import prefix_batches, prefix_ids, sample_negatives


@dataclass
class IdLearningTask(TaskDefaults):
    init_dir: str  # indexer snapshot the phase starts from
    out_dir: str  # where rank 0 saves the trained snapshot
    phase: str  # warmup | continuous | joint
    position: int
    epochs: int
    lr: float
    batch_size: int
    dropout: float
    # {"tokens": ref [N, L] int32, "codes": ref [N, T] int32, "groups": ref or None, "labels": ref, and with
    # indexer.neighbour_weight "anchors": [N, d] float32, every document's state at the phase's start}
    tables: dict
    seed: int = 0
    # after every joint epoch, the assignment's figures (indexer.epoch_figures), and code t of every document saved
    # beside the snapshot as epoch-<n>-code.npy (a paired comparison per epoch needs the codes themselves)
    epoch_figures: bool = False
    inference_batch_size: int = 256  # the figures' assignment pass
    rows_only: bool = False  # train only the word-embedding rows that get a gradient (exact at weight decay 0)

    @property
    def name(self) -> str:
        return f"learn-ids-p{self.position}-{self.phase}"

    def build(self) -> SemanticIndexer:
        model = SemanticIndexer.from_pretrained(self.init_dir, dropout=self.dropout)
        if self.rows_only:
            model.train_rows_only()
        model.set_phase(self.phase, self.position)
        # every parameter that trains in a phase takes part in its loss (the codebooks of other positions and the
        # frozen layers do not train): DDP need not search for unused ones, and would warn that it found none
        model.ddp_find_unused = False
        self._pad = model.tokenizer.pad_token_id
        self._cfg = model.cfg
        self._parents = prefix_ids(shared(self.tables["codes"])[:, : self.position - 1])
        parents = int(self._parents.max()) + 1
        # (parent prefix, code) counts of the codes chosen in an epoch: the conditional perplexity per epoch
        self._pairs = parents * model.cfg.codebook_size <= 4_000_000
        self._counts = torch.zeros(parents if self._pairs else 1, model.cfg.codebook_size, dtype=torch.float64)
        self._batch_parents = None
        self._model = model
        return model

    def batches(self, shard, epoch: int):
        tokens, codes = shared(self.tables["tokens"]), shared(self.tables["codes"])
        groups = shared(self.tables["groups"]) if self.tables.get("groups") is not None else None
        anchors = self.tables.get("anchors")
        rank = ray.train.get_context().get_world_rank()
        rng = np.random.default_rng([self.seed, epoch, rank])
        self._epoch = epoch
        t = self.position
        grouped = t > 1 and self._cfg.contrastive == "prefix" and self.phase != "warmup"
        if grouped:  # this worker's rows, in batches of same-prefix groups
            rows = np.concatenate([b["row"] for b in shard.iter_batches(batch_size=4096, batch_format="numpy")])
            source = (
                {"row": torch.from_numpy(r), "input_ids": torch.from_numpy(tokens[r])}
                for r in prefix_batches(rows, self._parents, self.batch_size, self._cfg.prefix_group, rng)
            )
        else:
            source = shuffled_batches(shard, self.batch_size, self.seed, epoch)
        for b in source:
            rows = b["row"].numpy()
            ids = b["input_ids"].long()
            prefix = torch.from_numpy(codes[rows, : t - 1].astype(np.int64))
            batch = {"input_ids": ids, "attention_mask": (ids != self._pad).long(), "prefix": prefix}
            self._batch_parents = torch.from_numpy(self._parents[rows])
            if anchors is not None:
                batch["anchor"] = torch.from_numpy(anchors[rows])
            if grouped:
                batch["group"] = self._batch_parents
            elif groups is not None:
                neg = torch.from_numpy(tokens[sample_negatives(rows, groups, rng)].astype(np.int64))
                batch.update(neg_input_ids=neg, neg_attention_mask=(neg != self._pad).long(), neg_prefix=prefix)
            yield batch

    def on_step(self, out: dict) -> None:
        if "codes" in out:
            parents = self._batch_parents if self._pairs else torch.zeros_like(self._batch_parents)
            index = parents * self._counts.shape[1] + out["codes"].cpu()
            self._counts.view(-1).index_add_(0, index, torch.ones(len(index), dtype=torch.float64))

    def epoch_metrics(self) -> dict:
        if self.phase != "joint":
            return {}
        pairs = all_reduce_sum(self._counts.clone()).numpy()
        self._counts.zero_()
        counts = pairs.sum(0)
        usage = code_usage(np.repeat(np.arange(len(counts)), counts.astype(np.int64)), len(counts))
        out = {"code_usage": usage["usage"], "code_perplexity": usage["perplexity"]}
        if self._pairs and self.position > 1:
            out["cond_perplexity"] = conditional_perplexity(pairs)
        if self.epoch_figures:
            code = self.assigned_code()
            if ray.train.get_context().get_world_rank() == 0:
                os.makedirs(self.out_dir, exist_ok=True)
                np.save(os.path.join(self.out_dir, f"epoch-{self._epoch + 1}-code.npy"), code)
            out.update({f"assign_{k}": v for k, v in self.assignment_figures(code).items()})
        return out

    def assigned_code(self) -> np.ndarray:
        """Code t of every document as the model stands (dropout off; the earlier codes as stored), shared out over
        the workers; every worker gets all of them."""
        model, codes = self._model, shared(self.tables["codes"])
        tokens, training = shared(self.tables["tokens"]), self._model.training
        model.eval()
        rows = np.arange(len(tokens))
        code = gathered_outputs(
            model, None, tokens, codes, rows, self.position, "assign", self.inference_batch_size, True
        )
        model.train(training)
        return code

    def assignment_figures(self, code: np.ndarray) -> dict:
        """position_figures of codes 1..t, code t as given (assigned_code)."""
        codes = shared(self.tables["codes"])
        upto = np.concatenate([codes[:, : self.position - 1], code[:, None].astype(codes.dtype)], 1)
        return position_figures(upto, shared(self.tables["labels"]), self._cfg.codebook_size)
