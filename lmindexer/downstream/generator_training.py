"""The T5 generator's training task on the shared Ray Train loop (train-generator runs it): batches grouped by
length, a learning-rate schedule, validation by recall@K of the trie-constrained beam search (the same decoding
evaluate uses), and the best validated epoch saved as the generator folder."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

import torch
from transformers import AutoTokenizer

from ..models.generator import GENERATOR_FILE, generator_model
from ..raydata import shared
from ..train.engine import lr_multiplier
from ..train.loop import all_reduce_sum, length_grouped_batches, shuffled_batches
from ..train.task import HISTORY_FILE, TaskDefaults, ValidatedByRecall
from .decode import beam_search, source_tensor
from .trie import TrieLogitsProcessor


@dataclass
class GeneratorTask(ValidatedByRecall, TaskDefaults):
    init_dir: str
    out_dir: str
    name: str
    epochs: int
    lr: float
    batch_size: int  # per worker
    seed: int = 0
    steps_per_epoch: int = 0  # for the learning-rate schedule
    schedule: str = "constant"
    warmup: float = 0.0
    val: dict | None = None  # {"sources": ref [V, L], "targets": ref [V, depth], "trie": ref, "ks": [...]}
    patience: int = 0
    dropout: float = 0.1
    group_by_length: bool = True
    embedded: bool = False  # the inputs are embeddings of a frozen encoder (generator.encoder), not token ids

    def build(self):
        model = generator_model(self.init_dir, dropout_rate=self.dropout)
        model.ddp_find_unused = self.embedded  # a T5 reading embeddings never runs its own encoder
        return model

    def lr_lambda(self):
        total, warmup, kind = self.steps_per_epoch * self.epochs, self.warmup, self.schedule
        return lambda step: lr_multiplier(step, total, warmup, kind)

    def batches(self, shard, epoch: int):
        if self.embedded:
            for b in shuffled_batches(shard, self.batch_size, self.seed, epoch):
                yield {"input_emb": b["input_ids"].float(), "labels": b["labels"].long()}
            return
        if self.group_by_length:
            source = length_grouped_batches(shard, self.batch_size, self.seed, epoch, "input_ids")
        else:
            source = shuffled_batches(shard, self.batch_size, self.seed, epoch)
        for b in source:
            ids = b["input_ids"].long()
            yield {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": b["labels"].long()}

    def validate(self, engine, rank: int) -> dict:
        """Recall@K of the trie-constrained beam search on the validation examples (each worker decodes its share),
        the same decoding evaluate() uses."""
        import ray.train

        world = ray.train.get_context().get_world_size()
        sources, targets = shared(self.val["sources"])[rank::world], shared(self.val["targets"])[rank::world]
        trie, ks = shared(self.val["trie"]), self.val["ks"]
        beams = max(ks)
        hits = torch.zeros(len(ks) + 1, dtype=torch.float64)
        with engine.full_weights() as model, torch.no_grad():
            processor = TrieLogitsProcessor(trie, model.config.eos_token_id, model.config.pad_token_id)
            device = next(model.parameters()).device
            for i in range(0, len(sources), 64):
                ids = source_tensor(sources[i : i + 64]).to(device)
                out = beam_search(model, processor, trie["depth"], beams, ids, None).cpu()
                out = out.view(len(ids), beams, -1)
                want = torch.from_numpy(targets[i : i + 64].astype("int64"))[:, None, : out.shape[-1]]
                found = (out == want).all(-1)  # [n, beams]
                for j, k in enumerate(ks):
                    hits[j] += float(found[:, :k].any(1).sum())
                hits[-1] += len(ids)
        hits = all_reduce_sum(hits)
        return {f"val_recall@{k}": round(float(hits[j] / max(hits[-1], 1)), 4) for j, k in enumerate(ks)}

    def finish(self, engine, rank: int, history: list) -> None:
        best = os.path.join(self.out_dir, "best")
        with engine.full_weights() as model:
            if rank == 0:
                if os.path.exists(best):  # the best validated epoch, not the last
                    model = generator_model(best)
                model.save_pretrained(self.out_dir)
                shutil.rmtree(best, ignore_errors=True)
                AutoTokenizer.from_pretrained(self.init_dir).save_pretrained(self.out_dir)
                shutil.copy(os.path.join(self.init_dir, GENERATOR_FILE), self.out_dir)
                with open(os.path.join(self.out_dir, HISTORY_FILE), "w") as f:
                    json.dump(history, f, indent=2)
