"""`lmindexer train-generator`: a T5 learns to write the ID of the right document (retrieval) or next item (rec),
on the shared Ray Train loop (DeepSpeed/DDP, checkpoints, resume); then it is evaluated under the trie.

The generator folder holds init/ (the start model with ID tokens added) and, once trained, the model itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time

import ray
from transformers import AutoConfig

from ..config import ConfigError, EvaluateConfig, GeneratorConfig, TrainConfig
from ..downstream.decode import beam_width, by_length, text_embedder
from ..downstream.examples import VALIDATION, build_examples, id_targets
from ..downstream.generator_training import GeneratorTask
from ..downstream.seqrec_training import train_seqrec_generator
from ..downstream.trie import build_trie
from ..ids.table import read_id_table
from ..models.generator import GENERATOR_FILE, build_generator, indexer_codebooks, load_id_vocab
from ..models.pretrained import resolve
from ..paths import RunContext
from ..raydata import train_rows
from ..train.loop import fit
from ..train.task import HISTORY_FILE

log = logging.getLogger("lmindexer.downstream")


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
