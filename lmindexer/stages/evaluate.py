"""`lmindexer evaluate`: beam search under the ID trie with a Ray Data actor pool, then Recall/NDCG/MRR/hit@K.

Writes <generator>/eval-<split>/metrics.json and predictions.parquet (key, ranked IDs, relevant IDs).
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from ..config import EvaluateConfig, GeneratorConfig, TrainConfig
from ..downstream.decode import beam_search, beam_width, by_length, source_tensor, text_embedder
from ..downstream.examples import build_examples, doc_texts
from ..downstream.reference import reference_rankings
from ..downstream.seqrec_training import evaluate_seqrec, is_seqrec, sasrec_reference, sasrec_settings
from ..downstream.trie import TrieLogitsProcessor, build_trie, trie_bytes
from ..eval.ranking import bootstrap_ci, paired_bootstrap, per_query
from ..ids.table import read_id_table
from ..models.generator import GENERATOR_FILE, load_generator, load_id_vocab
from ..paths import RunContext
from ..raydata import inference_device, map_rows

log = logging.getLogger("lmindexer.downstream")


class GeneratorActor:
    """Loads the generator once; per batch, the top `beams` IDs of each input, best first, as printed IDs."""

    def __init__(self, path: str, trie, beams: int, bf16: bool):
        model, tokenizer, self.vocab, _ = load_generator(path)
        device, self.dtype = inference_device(bf16)
        self.model = model.to(device).eval()
        trie = ray.get(trie) if isinstance(trie, ray.ObjectRef) else trie
        self.depth, self.beams = trie["depth"], beams
        self.processor = TrieLogitsProcessor(trie, tokenizer.eos_token_id, tokenizer.pad_token_id)

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict:
        device = next(self.model.parameters()).device
        ids = source_tensor(batch["input_ids"]).to(device)
        out = beam_search(self.model, self.processor, self.depth, self.beams, ids, self.dtype)
        sids = self.vocab.sids(out.cpu().numpy())
        ranked = [" ".join(sids[i * self.beams : (i + 1) * self.beams]) for i in range(len(ids))]
        return {"row": batch["row"], "ranked": np.array(ranked, dtype=object)}


def evaluate(e: EvaluateConfig, run: RunContext, g: GeneratorConfig, train: TrainConfig) -> dict:
    """The evaluate stage: the run's trained generator (`g`) on e.split under the ID trie, beside the reference
    methods (SASRec trained with the `train` settings); the metrics."""
    start = time.time()
    path = run.layout.generator
    if is_seqrec(path):
        ranked, relevant, keys, inputs, extra = evaluate_seqrec(e, run, g, path)
        return write_evaluation(e, run, g, train, path, ranked, relevant, keys, relevant, inputs, None, extra)
    beams = beam_width(e)
    if not os.path.exists(os.path.join(path, "config.json")) or not os.path.exists(os.path.join(path, GENERATOR_FILE)):
        raise FileNotFoundError(f"no trained generator at {path}: run train-generator first")
    tokenizer, vocab, info = load_id_vocab(path)
    table = read_id_table(info["ids"], run.storage)
    targets = vocab.tokens(table.codes, table.suffix)
    sid_of = dict(zip(table.doc_ids, vocab.sids(targets)))
    t0 = time.time()
    trie = build_trie(targets)
    log.info(
        "evaluate: trie over %d IDs built in %.2fs (%.1f MiB)", len(targets), time.time() - t0, trie_bytes(trie) / 2**20
    )
    bf16 = train.precision != "fp32"
    embed = text_embedder(g, run, info.get("encoder", ""), bf16)
    data = build_examples(g, run, tokenizer, vocab, table, e.split, embed, e.max_queries)
    beams = min(beams, len(targets))
    actor = {"path": path, "trie": ray.put(trie), "beams": beams, "bf16": bf16}
    order = by_length(data["sources"])  # batches of similar length: each is decoded at its own length
    ranked = [None] * len(order)
    for i, r in zip(order, map_rows(run, GeneratorActor, actor, input_ids=data["sources"][order])["ranked"]):
        ranked[i] = r.split(" ")
    relevant = [{sid_of[d]: grade for d, grade in rel.items()} for rel in data["relevant"]]
    if g.task == "rec":  # the protocol of every rec row: the user's own history is not a candidate
        seen = [{sid_of[i] for i in h} for h in data["inputs"]["histories"]]
        ranked = [[s for s in r if s not in own] for r, own in zip(ranked, seen)]
    texts = doc_texts(run, table.row) if g.task == "retrieval" else None
    data["inputs"].update(doc_ids=list(table.doc_ids), number={d: i + 1 for i, d in enumerate(table.doc_ids)})
    extra = {"beams": beams, "counts": data["counts"], "decode_seconds": time.time() - start}
    keys, relevant_docs, inputs = data["keys"], data["relevant"], data["inputs"]
    return write_evaluation(e, run, g, train, path, ranked, relevant, keys, relevant_docs, inputs, texts, extra)


def write_evaluation(
    e: EvaluateConfig,
    run: RunContext,
    g: GeneratorConfig,
    train: TrainConfig,
    path: str,
    ranked,
    relevant,
    keys,
    relevant_docs,
    inputs,
    texts,
    extra,
) -> dict:
    """Metrics of a generator's `ranked` lists against `relevant` (both in the generator's terms: printed IDs or
    items) beside the reference methods on the same examples (`relevant_docs`: the same in document ids; `inputs`
    as build_examples gives them), each with its 95% interval and a paired bootstrap interval of the generator's
    difference from it (the same resampled queries for both). Writes <path>/eval-<split>/{metrics.json,
    predictions.parquet} and returns the metrics."""
    start = time.time()
    metrics, intervals, per = summarise(ranked, relevant, e.ks)
    reference = {}
    for method, docs in reference_rankings(g.task, inputs, inputs["doc_ids"], texts, max(e.ks)).items():
        reference[method] = _reference_row(docs, relevant_docs, e.ks, per)
    if g.task == "rec" and e.sasrec_epochs > 0:
        docs, settings = sasrec_reference(
            train,
            run,
            run.layout.sasrec,
            inputs["number"],
            inputs["train_sequences"],
            inputs["histories"],
            max(e.ks),
            sasrec_settings(g, e),
        )
        reference["SASRec"] = {**_reference_row(docs, relevant_docs, e.ks, per), "settings": settings}
    result = {
        "split": e.split,
        "queries": len(ranked),
        "ks": list(e.ks),
        "max_eval": e.max_queries,
        **extra,
        "metrics": metrics,
        "intervals": intervals,
        "reference": reference,
        "seconds": round(time.time() - start + extra.get("decode_seconds", 0), 1),
    }
    folder = os.path.join(path, f"eval-{e.split}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "key": [str(k) for k in keys],
                "ranked": [[str(x) for x in r] for r in ranked],
                "relevant": [sorted(str(x) for x in r) for r in relevant],
            }
        ),
        os.path.join(folder, "predictions.parquet"),
    )
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    log.info(
        "evaluate %s (%s, %d queries): %s",
        g.task,
        e.split,
        len(ranked),
        " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not k.startswith("ndcg_binary")),
    )
    if reference:  # each reference's figures are in metrics.json; one line of the headline one
        key = f"recall@{max(e.ks)}"
        log.info(
            "evaluate %s references, %s (generator minus each, paired): %s",
            g.task,
            key,
            "; ".join(
                f"{method} {r['metrics'][key]:.4f} ({r['paired'][key][0]:+.4f} [{r['paired'][key][1]:+.4f}, "
                f"{r['paired'][key][2]:+.4f}])"
                for method, r in reference.items()
            ),
        )
    return result


def _reference_row(ranked: list, relevant: list, ks, generator_per: dict) -> dict:
    m, ci, per = summarise(ranked, relevant, ks)
    paired = {k: [round(x, 4) for x in paired_bootstrap(generator_per[k], per[k])] for k in ci}
    return {"metrics": m, "intervals": ci, "paired": paired}


def finished_evaluation(e: EvaluateConfig, run: RunContext) -> dict | None:
    """The saved evaluation of the generator as it is now (metrics.json newer than its weights, with the same
    split, cut-offs, beams and sample), else None: train-generator then does not decode again."""
    path = run.layout.generator
    saved, weights = os.path.join(path, f"eval-{e.split}", "metrics.json"), os.path.join(path, "config.json")
    if not os.path.exists(saved) or not os.path.exists(weights) or os.path.getmtime(saved) < os.path.getmtime(weights):
        return None
    with open(saved) as f:
        result = json.load(f)
    same = (result.get("ks"), result.get("max_eval"), result.get("beams")) == (
        list(e.ks),
        e.max_queries,
        beam_width(e),
    )
    return result if same else None


def summarise(ranked: list, relevant: list, ks) -> tuple[dict, dict, dict]:
    """(mean of each metric, its 95% bootstrap interval over queries, the per-query values)."""
    per = per_query(ranked, relevant, ks)
    means = {k: round(float(v.mean()), 4) for k, v in per.items()}
    intervals = {
        k: [round(x, 4) for x in bootstrap_ci(v)] for k, v in per.items() if k.startswith(("recall@", "ndcg@"))
    }
    return means, intervals, per
