"""Reads what the generator learns from (an ID table, the corpus, queries and qrels or user sequences) and turns it
into arrays: sources [N, max_source_length] of token ids (or [N, d] embeddings, with generator.encoder) and, for
training, targets [N, T + 2] (the ID tokens, then eos).
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import ConfigError, GeneratorConfig
from ..data.corpus import read_docs
from ..data.generator_data import read_qrels, read_queries, read_sequences
from ..ids.table import IdTable
from ..models.generator import IdVocab
from ..models.tokenizer import encode_texts
from ..paths import RunContext
from .splits import (
    history_pieces,
    hold_out,
    pack,
    retrieval_examples,
    sample,
    sentence_views,
    split_sequences,
    word_views,
)

VALIDATION = "validation"  # the split the generator is validated on after every epoch
HELD_OUT_SHARE = 0.1  # retrieval sets without qrels/dev.tsv: this share of the train queries is held out

log = logging.getLogger("lmindexer.downstream")


def task_data(g: GeneratorConfig, run: RunContext) -> str:
    """The BEIR folder (retrieval) or sequences file (rec) of the generator's task (run.layout.generator_data)."""
    if run.layout.generator_data:
        return run.layout.generator_data
    raise ConfigError(
        f"set generator.data: the {'BEIR folder' if g.task == 'retrieval' else 'sequences file'} "
        f"for generator.task={g.task}"
    )


def id_targets(vocab: IdVocab, table: IdTable, eos: int) -> np.ndarray:
    """[N, T + 2] int32: each document's ID tokens and eos, in table order."""
    tokens = vocab.tokens(table.codes, table.suffix)
    return np.concatenate([tokens, np.full((len(tokens), 1), eos)], 1).astype(np.int32)


def doc_texts(run: RunContext, row: dict) -> list:
    """Each table document's text, in table order."""
    texts = [""] * len(row)
    for batch in read_docs(run, ["doc_id", "text"]):
        for d, t in zip(batch.column("doc_id").to_pylist(), batch.column("text").to_pylist()):
            if d in row:
                texts[row[d]] = t
    return texts


def _doc_tokens(g: GeneratorConfig, run: RunContext, tokenizer, row: dict) -> list:
    """Token ids (no eos) of each table document's text, in table order."""
    return _tokens(tokenizer, doc_texts(run, row), g.max_source_length)


def query_sources(tokenizer, texts: list, max_length: int) -> np.ndarray:
    """[n, max_length] generator inputs of query texts: their tokens cut to max_length - 1, then eos, then 0s (as
    training saw its queries; `lmindexer serve` cuts a query the same way)."""
    return pack([[t] for t in _tokens(tokenizer, texts, max_length)], max_length, tokenizer.eos_token_id)


def _tokens(tokenizer, texts: list, max_length: int) -> list:
    enc = encode_texts(tokenizer, texts, max_length, pad="none", special_tokens=False)
    return [np.asarray(ids, dtype=np.int64) for ids in enc["input_ids"]]


def retrieval_qrels(g: GeneratorConfig, seed: int, data: str, split: str) -> dict:
    """qrels of a split; `train` without the held-out validation queries and `validation` = qrels/dev.tsv, or
    where there is none, the held-out share of the train queries."""
    if split not in ("train", VALIDATION):
        return read_qrels(data, split)
    if split == VALIDATION:
        try:
            return read_qrels(data, "dev")
        except FileNotFoundError:
            pass
    elif not g.val_examples:
        return read_qrels(data, "train")
    kept, held = hold_out(read_qrels(data, "train"), HELD_OUT_SHARE, g.val_examples, seed)
    return held if split == VALIDATION else kept


def build_examples(
    g: GeneratorConfig,
    run: RunContext,
    tokenizer,
    vocab: IdVocab,
    table: IdTable,
    split: str,
    embed=None,
    max_queries: int = 0,
) -> dict:
    """{'sources', 'keys', 'counts'} plus 'targets' (row of the target document in the table) for split 'train',
    or 'relevant' ([{doc_id: grade}]) and 'inputs' for an evaluation split: the query texts (retrieval), or the
    histories, every history of the split and the training sequences (rec), for the reference methods.
    `embed` (retrieval): texts -> [n, d] float32; the sources are then those embeddings, not token ids."""
    eos, seed = tokenizer.eos_token_id, run.seed
    row, data = table.row, task_data(g, run)
    limit = {"train": 0, VALIDATION: g.val_examples}.get(split, max_queries)
    counts: dict = {}
    texts = None
    if g.task == "retrieval":
        queries = read_queries(data)
        examples, skipped = retrieval_examples(queries, retrieval_qrels(g, seed, data, split), row)
        examples = sample(examples, limit, seed)
        texts, keys = [queries[q] for q, _ in examples], [q for q, _ in examples]
        if split == "train":
            targets = [row[d] for _, rel in examples for d in rel]
            texts = [t for t, (_, rel) in zip(texts, examples) for _ in rel]
            keys = [k for k, (_, rel) in zip(keys, examples) for _ in rel]
            if g.indexing:
                documents = doc_texts(run, row)
                texts += documents
                keys += list(table.doc_ids)
                targets += list(range(len(row)))
                counts["indexing_pairs"] = len(row)
                if g.indexing_views:
                    rng = np.random.default_rng(seed)
                    make = sentence_views if g.view_kind == "sentences" else word_views
                    views = [(i, v) for i, t in enumerate(documents) for v in make(t, g.indexing_views, rng)]
                    texts += [v for _, v in views]
                    keys += [table.doc_ids[i] for i, _ in views]
                    targets += [i for i, _ in views]
                    counts["indexing_views"] = len(views)
        pieces = list(range(len(texts)))  # rows of `texts`, turned into tokens or embeddings once sampled below
        relevant = [rel for _, rel in examples]
        inputs = {"queries": [queries[q] for q, _ in examples]}
    else:
        if embed is not None:
            raise ConfigError("generator.encoder reads query texts: it is for generator.task=retrieval")
        parts, skipped = split_sequences(read_sequences(data), row)
        split = "valid" if split == VALIDATION else split
        if split not in parts:
            raise ConfigError(f"evaluate.split={split!r}: rec has the splits valid and test")
        examples = sample(parts[split], g.max_train_examples if split == "train" else limit, seed)
        item = (
            _doc_tokens(g, run, tokenizer, row)
            if g.history == "text"
            else list(vocab.tokens(table.codes, table.suffix))
        )
        pieces = [[item[row[i]] for i in history_pieces(h, g.max_history)] for _, h, _ in examples]
        keys = [u for u, _, _ in examples]
        targets = [row[t] for _, _, t in examples]
        relevant = [{t: 1} for _, _, t in examples]
        inputs = {
            "histories": [h for _, h, _ in examples],
            "train_sequences": [h for _, h, _ in parts["valid"]],  # each user's items before the validation target
        }
    if split == "train" and g.task == "retrieval":
        keep = sample(list(range(len(pieces))), g.max_train_examples, seed)
        pieces, keys, targets = [pieces[i] for i in keep], [keys[i] for i in keep], [targets[i] for i in keep]
    counts.update({f"skipped_{k}": v for k, v in skipped.items() if v})
    counts["examples"] = len(pieces)
    if counts["examples"] == 0:
        raise ValueError(f"generator: no {split} examples in {data} match the ID table ({counts})")
    for k, v in counts.items():
        if k.startswith("skipped_"):
            log.warning("generator %s/%s: %s = %d", g.task, split, k, v)
    if texts is not None:  # retrieval: the kept rows' texts
        kept = [texts[i] for i in pieces]
        sources = embed(kept) if embed is not None else query_sources(tokenizer, kept, g.max_source_length)
    else:
        sources = pack(pieces, g.max_source_length, eos)
    out = {"sources": sources, "keys": np.array(keys, dtype=object), "counts": counts}
    if split == "train":
        out["targets"] = np.asarray(targets, dtype=np.int64)
    else:
        out["relevant"], out["inputs"] = relevant, inputs
    return out
