"""`lmindexer train-generator`: a T5 learns to write the ID of the right document (retrieval) or next item (rec),
on the shared Ray Train loop (DeepSpeed/DDP, checkpoints, resume); then it is evaluated under the trie.

The generator folder holds init/ (the start model with ID tokens added) and, once trained, the model itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import ray
import torch
from transformers import AutoConfig, AutoTokenizer

from ..config import ConfigError, EvaluateConfig, GeneratorConfig, TrainConfig
from ..ids.table import read_id_table
from ..models.generator import GENERATOR_FILE, build_generator, generator_model, indexer_codebooks, load_id_vocab
from ..models.pretrained import resolve
from ..paths import RunContext
from ..raydata import shared, train_rows
from ..train.engine import lr_multiplier
from ..train.loop import all_reduce_sum, fit, length_grouped_batches, shuffled_batches
from ..train.task import HISTORY_FILE, TaskDefaults, ValidatedByRecall
from .evaluate import beam_search, beam_width, by_length, source_tensor, text_embedder
from .examples import VALIDATION, build_examples, id_targets
from .seqrec_training import train_seqrec_generator
from .trie import TrieLogitsProcessor, build_trie

log = logging.getLogger("lmindexer.downstream")


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


def _init(g: GeneratorConfig, run: RunContext, out: str, table) -> str:
    """init/ for this ID table: the start model with the ID tokens, embeddings from the indexer's codebooks."""
    init_dir = os.path.join(out, "init")
    if os.path.exists(os.path.join(init_dir, GENERATOR_FILE)):
        return init_dir
    indexer = table.summary.get("indexer", "")
    books = indexer_codebooks(indexer, run.storage) if g.codebook_init and indexer else None
    meta = {
        "task": g.task,
        "ids": run.layout.generator_ids,
        "method": table.summary.get("method", ""),
        "max_source_length": g.max_source_length,  # how a server cuts a query as training did
    }
    dim = 0  # the width of the encoder's embeddings the generator reads (0: it reads tokens)
    if g.id_softmax:
        meta["id_softmax"] = True
    if g.encoder:
        if g.task != "retrieval":
            raise ConfigError("generator.encoder reads query texts: it is for generator.task=retrieval")
        meta["encoder"], meta["encoder_max_length"] = g.encoder, g.encoder_max_length
        dim = AutoConfig.from_pretrained(resolve(g.encoder, run.storage)).hidden_size
    info = build_generator(g.init or run.layout.backbone, table.spec, init_dir, books, meta, dim, g.encoder_slots)
    log.debug(
        "generator: start model %s with %d ID positions of %d codes and %d suffixes (ID embeddings from %s)",
        info["init"],
        info["num_positions"],
        info["codebook_size"],
        info["suffixes"],
        "the indexer's codebooks" if info["codebook_init"] else "random",
    )
    return init_dir


def train_generator(g: GeneratorConfig, run: RunContext, e: EvaluateConfig, train: TrainConfig) -> dict:
    """The train-generator stage: the generator `g` describes, on the run's generator ID table, trained with the
    `train` settings and validated with `e`'s cut-offs; its summary."""
    start = time.time()
    if g.model_kind == "seqrec":
        return train_seqrec_generator(g, run, e, train)
    out = run.layout.generator
    beam_width(e)  # a bad beam setting fails now, not after training
    table = read_id_table(run.layout.generator_ids, run.storage)
    init_dir = _init(g, run, out, table)
    summary = {
        "generator": out,
        "task": g.task,
        "ids": run.layout.generator_ids,
        "documents_with_ids": len(table.doc_ids),
    }
    if os.path.exists(os.path.join(out, HISTORY_FILE)):
        log.info("generator: already trained at %s", out)
    else:
        tokenizer, vocab, info = load_id_vocab(init_dir)
        embed = text_embedder(g, run, info.get("encoder", ""), train.precision != "fp32")
        data = build_examples(g, run, tokenizer, vocab, table, "train", embed)
        labels = id_targets(vocab, table, tokenizer.eos_token_id)[data["targets"]]
        summary["train"] = data["counts"]
        log.info(
            "generator: %d training examples (%s), %d epochs, from %s (ID embeddings from %s)",
            len(labels),
            g.task,
            g.epochs,
            info["init"],
            "the indexer's codebooks" if info.get("codebook_init") else "random",
        )
        name = f"generator-{hashlib.sha1(out.encode()).hexdigest()[:10]}"
        per_worker = g.batch_size // train.num_workers
        if per_worker < 1:
            raise ConfigError(
                f"generator.batch_size={g.batch_size} (the global batch) is below train.num_workers="
                f"{train.num_workers}: raise it"
            )
        val = None
        if g.val_examples:
            v = build_examples(g, run, tokenizer, vocab, table, VALIDATION, embed)
            targets = vocab.tokens(table.codes, table.suffix)
            first = [table.row[next(iter(rel))] for rel in v["relevant"]]  # recall of one relevant ID per query
            order = by_length(v["sources"])
            val = {
                "sources": ray.put(v["sources"][order]),
                "targets": ray.put(targets[first][order]),
                "trie": ray.put(build_trie(targets)),
                "ks": list(e.ks),
            }
            summary["validation"] = v["counts"]
        steps = len(labels) // (per_worker * train.num_workers)
        task = GeneratorTask(
            init_dir,
            out,
            name,
            g.epochs,
            g.lr,
            per_worker,
            run.seed,
            steps,
            g.lr_schedule,
            g.warmup,
            val,
            g.patience,
            g.dropout,
            g.group_by_length,
            embed is not None,
        )
        fit(train, run, task, train_rows(run, shuffle=True, input_ids=data["sources"], labels=labels))
    summary["train_seconds"] = round(time.time() - start, 1)
    return summary
