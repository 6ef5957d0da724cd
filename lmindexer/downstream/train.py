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

from transformers import AutoTokenizer, T5ForConditionalGeneration

from ..config import Config
from ..models.bootstrap import backbone_dir
from ..models.generator import GENERATOR_FILE, build_generator, indexer_codebooks, load_id_vocab
from ..train.loop import fit, rows_dataset, shuffled_batches
from .evaluate import beam_width, evaluate, generator_dir
from .examples import build_examples, id_targets, ids_path, read_id_table

log = logging.getLogger("lmindexer.downstream")
HISTORY_FILE = "train_history.json"


@dataclass
class GeneratorTask:
    init_dir: str
    out_dir: str
    name: str
    epochs: int
    lr: float
    batch_size: int
    seed: int = 0

    def build(self) -> T5ForConditionalGeneration:
        return T5ForConditionalGeneration.from_pretrained(self.init_dir)

    def batches(self, shard, epoch: int):
        for b in shuffled_batches(shard, self.batch_size, self.seed, epoch):
            ids = b["input_ids"].long()
            yield {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": b["labels"].long()}

    def on_step(self, out) -> None:
        pass

    def epoch_metrics(self) -> dict:
        return {}

    def finish(self, engine, rank: int, history: list) -> None:
        with engine.full_weights() as model:
            if rank == 0:
                model.save_pretrained(self.out_dir)
                AutoTokenizer.from_pretrained(self.init_dir).save_pretrained(self.out_dir)
                shutil.copy(os.path.join(self.init_dir, GENERATOR_FILE), self.out_dir)
                with open(os.path.join(self.out_dir, HISTORY_FILE), "w") as f:
                    json.dump(history, f, indent=2)


def _init(cfg: Config, out: str, table) -> str:
    """init/ for this ID table: the start model with the ID tokens, embeddings from the indexer's codebooks."""
    g, init_dir = cfg.generator, os.path.join(out, "init")
    if os.path.exists(os.path.join(init_dir, GENERATOR_FILE)):
        return init_dir
    indexer = table.summary.get("indexer", "")
    books = indexer_codebooks(indexer, cfg.storage) if g.codebook_init and indexer else None
    info = build_generator(g.init or backbone_dir(cfg), table.codes.shape[1], int(table.summary.get(
        "codebook_size", table.codes.max() + 1)), int(table.suffix.max()) + 1, init_dir, books,
        {"task": g.task, "ids": ids_path(cfg), "method": table.summary.get("method", "")})
    log.info("generator: start model %s with %d ID positions of %d codes and %d suffixes (ID embeddings from %s)",
             info["init"], info["positions"], info["codebook_size"], info["suffixes"],
             "the indexer's codebooks" if info["codebook_init"] else "random")
    return init_dir


def train_generator(cfg: Config) -> dict:
    g, start = cfg.generator, time.time()
    out = generator_dir(cfg)
    beam_width(cfg)  # a bad beam setting fails now, not after training
    table = read_id_table(cfg, ids_path(cfg))
    init_dir = _init(cfg, out, table)
    summary = {"generator": out, "task": g.task, "ids": ids_path(cfg), "documents_with_ids": len(table.doc_ids)}
    if os.path.exists(os.path.join(out, HISTORY_FILE)):
        log.info("generator: already trained at %s", out)
    else:
        tokenizer, vocab, _ = load_id_vocab(init_dir)
        data = build_examples(cfg, tokenizer, vocab, table, "train")
        labels = id_targets(vocab, table, tokenizer.eos_token_id)[data["targets"]]
        summary["train"] = data["counts"]
        log.info("generator: %d training examples (%s), %d epochs", len(labels), g.task, g.epochs)
        name = f"generator-{hashlib.sha1(out.encode()).hexdigest()[:10]}"
        fit(cfg, GeneratorTask(init_dir, out, name, g.epochs, g.lr, g.batch_size, cfg.seed),
            rows_dataset(input_ids=data["sources"], labels=labels))
    summary["train_seconds"] = round(time.time() - start, 1)
    summary["eval"] = evaluate(cfg)
    return summary
