"""Sequential recommendation by one causal transformer over item vectors (lmindexer.models.seqrec), trained on the
shared Ray Train loop (DDP on CPUs, DeepSpeed on GPUs, checkpoints): the one-pass ID generator
(`generator.kind=seqrec`: item vectors composed from their semantic IDs) and the SASRec reference (one free vector
per item). Both read the same split, rank the same candidates (every item of the ID table) with the same rule (the
user's own history left out), and differ only in how an item's vector is made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..config import ConfigError, EvaluateConfig, GeneratorConfig, TrainConfig
from ..data.generator_data import read_sequences
from ..ids.table import read_id_table
from ..models.seqrec import (
    CONFIG_FILE,
    ITEMS_FILE,
    SeqRec,
    SeqRecConfig,
    item_rows,
    rank,
    right_pad,
    top_k,
    training_rows,
)
from ..paths import RunContext
from ..train.task import HISTORY_FILE, TaskDefaults, ValidatedByRecall
from .splits import sample, split_sequences

log = logging.getLogger("lmindexer.downstream")


@dataclass
class SeqRecSettings:
    """What a SeqRec run needs beyond its data (generator.* for the generator, generator.sasrec_* for SASRec)."""

    epochs: int
    lr: float = 1e-3
    batch_size: int = 128  # global
    dropout: float = 0.2
    max_len: int = 50
    dim: int = 64
    layers: int = 2
    heads: int = 2


def generator_settings(g: GeneratorConfig) -> SeqRecSettings:
    return SeqRecSettings(g.epochs, g.lr, g.batch_size, g.dropout, g.max_history, g.seqrec_dim, g.seqrec_layers)


def sasrec_settings(g: GeneratorConfig, e: EvaluateConfig) -> SeqRecSettings:
    """The SASRec reference: the generator's history length and width, the SASRec paper's rate and batch."""
    return SeqRecSettings(e.sasrec_epochs, 1e-3, 128, e.sasrec_dropout, g.max_history, g.seqrec_dim, g.seqrec_layers)


@dataclass
class SeqRecTask(ValidatedByRecall, TaskDefaults):
    """A SeqRec model on the shared Ray Train loop: rows of (inputs, labels), right-padded item numbers. With `val`
    ({"histories": ref [V, L], "targets": ref [V], "ks": [K]}), recall@K on those users after every epoch, the best
    epoch's weights kept and `patience` epochs without a better one stopping training."""

    cfg: SeqRecConfig
    rows: np.ndarray
    out_dir: str
    epochs: int
    lr: float
    batch_size: int  # per worker
    seed: int = 0
    name: str = "seqrec"
    val: dict | None = None
    patience: int = 0

    def build(self) -> SeqRec:
        torch.manual_seed(self.seed)
        return SeqRec(self.cfg, torch.tensor(self.rows))  # a copy: the rows may be a read-only shared array

    def validate(self, engine, rank: int) -> dict:
        """Exact top-K of every item after each validation history (each worker scores its share)."""
        import ray.train

        from ..raydata import shared
        from ..train.loop import all_reduce_sum

        world = ray.train.get_context().get_world_size()
        seqs = torch.tensor(shared(self.val["histories"])[rank::world])  # copies: the shared arrays are read-only
        targets = torch.tensor(shared(self.val["targets"])[rank::world])
        hits = torch.zeros(2, dtype=torch.float64)
        with engine.full_weights() as model, torch.no_grad():
            device = next(model.parameters()).device
            table = model.item_table()
            for i in range(0, len(seqs), 1024):
                seq = seqs[i : i + 1024].to(device)
                exclude = [sorted({int(j) - 1 for j in row if j > 0}) for row in seq.tolist()]
                _, top = top_k(model.user_states(seq), table, max(self.val["ks"]), exclude)
                hits[0] += float((top.cpu() + 1 == targets[i : i + 1024, None]).any(1).sum())
                hits[1] += len(seq)
        hits = all_reduce_sum(hits)
        return {self.monitor: round(float(hits[0] / max(hits[1], 1)), 4)}

    def finish(self, engine, rank: int, history: list) -> None:
        best = os.path.join(self.out_dir, "best")
        super().finish(engine, rank, history)
        if rank == 0 and os.path.exists(best):  # the best validated epoch, not the last
            SeqRec.from_pretrained(best).save_pretrained(self.out_dir)
            shutil.rmtree(best, ignore_errors=True)

    def batches(self, shard, epoch: int):
        from ..train.loop import length_grouped_batches

        # batches of similar history length, each cut to its longest history (labels to the same width)
        for b in length_grouped_batches(shard, self.batch_size, self.seed, epoch, "input_ids"):
            ids = b["input_ids"].long()
            yield {"input_ids": ids, "labels": b["labels"][:, : ids.shape[1]].long().contiguous()}


def fit_seqrec(
    train_settings: TrainConfig,
    run: RunContext,
    out: str,
    sequences: list,
    items: int,
    settings: SeqRecSettings,
    compose: str = "item",
    codes: np.ndarray | None = None,
    suffix: np.ndarray | None = None,
    name: str = "seqrec",
    validation: tuple | None = None,
) -> SeqRec:
    """Train a SeqRec on `sequences` (item numbers 1..items, oldest first; each predicts its own next items) with
    Ray Train and return it loaded from `out` in eval mode. `validation`: (histories, targets, K, patience) in item
    numbers, recall@K after every epoch, the best epoch kept. The run starts afresh each time."""
    import ray

    from ..raydata import train_rows
    from ..train.loop import fit

    train = [s for s in sequences if len(s) >= 2]
    if not train:
        raise ValueError(f"{name}: no training sequence with 2 items or more")
    rows, n_rows = item_rows(compose, codes, suffix, items)
    model_cfg = SeqRecConfig(
        items=items,
        rows=n_rows,
        compose=compose,
        max_len=settings.max_len,
        dim=settings.dim,
        layers=settings.layers,
        heads=settings.heads,
        dropout=settings.dropout,
    )
    inputs, labels = training_rows(train, settings.max_len)
    per_worker = max(
        1, settings.batch_size // train_settings.num_workers
    )  # the global batch, whatever the worker count
    val, patience = None, 0
    if validation:
        histories, targets, k, patience = validation
        val = {
            "histories": ray.put(right_pad(histories, settings.max_len)),
            "targets": ray.put(np.asarray(targets, dtype=np.int64)),
            "ks": [k],
        }
    task = SeqRecTask(model_cfg, rows, out, settings.epochs, settings.lr, per_worker, run.seed, name, val, patience)
    fit(train_settings, run, task, train_rows(run, shuffle=True, input_ids=inputs, labels=labels), fresh=True)
    return SeqRec.from_pretrained(out)


def ranked_items(model: SeqRec, histories: list, number: dict, k: int) -> list:
    """The top-k items (as keys of `number`, which maps an item to its number) after each history."""
    item_of = {n: i for i, n in number.items()}
    ranked = rank(model, [[number[i] for i in h] for h in histories], k)
    return [[item_of[n] for n in row] for row in ranked]


def sasrec_reference(
    train_settings: TrainConfig,
    run: RunContext,
    out: str,
    number: dict,
    sequences: list,
    histories: list,
    k: int,
    settings: SeqRecSettings,
    validation: tuple | None = None,
) -> tuple[list, dict]:
    """(top-k items after each of `histories`, settings): SASRec (one vector per item) trained with Ray Train on
    `sequences` (per user, the items before the validation target), ranking every item of `number` (item -> 1-based
    number), the history's own items left out; `validation` as fit_seqrec's."""
    start = time.time()
    train = [[number[i] for i in s] for s in sequences]
    name = f"sasrec-{run.seed}"
    model = fit_seqrec(train_settings, run, out, train, len(number), settings, "item", None, None, name, validation)
    ranked = ranked_items(model, histories, number, k)
    return ranked, {
        "epochs": settings.epochs,
        "dropout": settings.dropout,
        "seed": run.seed,
        "train_sequences": len(train),
        "seconds": round(time.time() - start, 1),
    }


def is_seqrec(path: str) -> bool:
    """Whether `path` holds a trained SeqRec model (a generator of kind seqrec)."""
    return os.path.exists(os.path.join(path, CONFIG_FILE))


def rec_split(g: GeneratorConfig, run: RunContext, number: dict) -> tuple[dict, dict]:
    """(leave-one-out split of the task's sequences over the items of `number`, counts of what was left out)."""
    from .examples import task_data

    parts, skipped = split_sequences(read_sequences(task_data(g, run)), number)
    for k, v in skipped.items():
        if v:  # a count of 0 (Counter keeps keys it was asked to add 0 to) is not worth a warning
            log.warning("generator rec: skipped %s = %d", k, v)
    return parts, {f"skipped_{k}": v for k, v in skipped.items() if v}


def train_seqrec_generator(g: GeneratorConfig, run: RunContext, e: EvaluateConfig, train_settings: TrainConfig) -> dict:
    """train-generator for generator.kind=seqrec: the one-pass generator on every user's items before the
    validation target (item vectors composed from the ID table)."""
    start = time.time()
    if g.task != "rec":  # kind=seqrec set by hand
        raise ConfigError("generator.kind=seqrec recommends items: set generator.task=rec (retrieval: kind=t5)")
    if g.encoder:
        raise ConfigError("generator.encoder reads query texts: it is for generator.task=retrieval (kind=t5)")
    out, ids = run.layout.generator, run.layout.generator_ids
    table = read_id_table(ids, run.storage)
    summary = {"generator": out, "task": g.task, "kind": "seqrec", "ids": ids, "documents_with_ids": len(table.doc_ids)}
    if is_seqrec(out) and os.path.exists(os.path.join(out, HISTORY_FILE)):
        log.info("generator: already trained at %s", out)
    else:
        number = {d: i + 1 for i, d in enumerate(table.doc_ids)}
        parts, counts = rec_split(g, run, number)
        users = sample(parts["valid"], g.max_train_examples, run.seed)
        train = [[number[i] for i in h] for _, h, _ in users]
        summary["train"] = {**counts, "sequences": len(train), "interactions": sum(len(s) for s in train)}
        log.info(
            "generator: seqrec (%s) on %d sequences, %d items, %d epochs", g.compose, len(train), len(number), g.epochs
        )
        name = f"generator-{hashlib.sha1(out.encode()).hexdigest()[:10]}"
        settings = generator_settings(g)
        validation = None
        if g.val_examples:  # the validation target of seeded users (training never sees it)
            held = sample(parts["valid"], g.val_examples, run.seed)
            hist, targets = [[number[i] for i in h] for _, h, _ in held], [number[t] for _, _, t in held]
            validation = (hist, targets, max(e.ks), g.patience)
            summary["validation"] = {"examples": len(held)}
        fit_seqrec(
            train_settings,
            run,
            out,
            train,
            len(number),
            settings,
            g.compose,
            table.codes,
            table.suffix,
            name,
            validation,
        )
        save_items(out, list(table.doc_ids))
    summary["train_seconds"] = round(time.time() - start, 1)
    return summary


def save_items(out: str, doc_ids: list) -> None:
    """The doc_id of each item number (1-based, in order) beside the recommender, so that it keeps naming its items
    when the ID table grows (new documents served, assign-ids with assign.existing)."""
    pq.write_table(
        pa.table({"doc_id": pa.array([str(d) for d in doc_ids], pa.string())}), os.path.join(out, ITEMS_FILE)
    )


def evaluate_seqrec(e: EvaluateConfig, run: RunContext, g: GeneratorConfig, path: str) -> tuple:
    """(ranked items, relevant, keys, inputs, extra) of a seqrec generator on evaluate.split: the exact
    score of every item of the table after each history, the history's own items left out."""
    start = time.time()
    model = SeqRec.from_pretrained(path)
    table = read_id_table(run.layout.generator_ids, run.storage)
    if model.cfg.items != len(table.doc_ids):
        raise ValueError(
            f"the generator at {path} scores {model.cfg.items} items, the ID table has {len(table.doc_ids)}"
        )
    number = {d: i + 1 for i, d in enumerate(table.doc_ids)}
    parts, counts = rec_split(g, run, number)
    if e.split not in ("valid", "test"):
        raise ConfigError(f"evaluate.split={e.split!r}: rec has the splits valid and test")
    examples = sample(parts[e.split], e.max_queries, run.seed)
    histories = [h for _, h, _ in examples]
    ranked = ranked_items(model, histories, number, max(e.ks))
    inputs = {
        "histories": histories,
        "train_sequences": [h for _, h, _ in parts["valid"]],
        "doc_ids": list(table.doc_ids),
        "number": number,
    }
    relevant = [{t: 1} for _, _, t in examples]
    extra = {"kind": "seqrec", "counts": {**counts, "examples": len(examples)}, "decode_seconds": time.time() - start}
    return ranked, relevant, [u for u, _, _ in examples], inputs, extra
