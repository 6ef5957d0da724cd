"""`lmindexer baseline-ids`: IDs from a baseline method, through the same pipeline and table format as assign-ids.

1. Embed: every document -> a vector (mean-pooled T5 encoder in a Ray Data actor pool, or a corpus field), written
   once to <out>/_emb/ (random IDs need no vectors).
2. Fit: the method named by baseline.method from the registry (lmindexer.quantizers.METHODS): k-means methods on a
   seeded sample of the vectors, random IDs on nothing but the seed, RQ-VAE with Ray Train over all of them. Saved
   to <out>/method/.
3. Codes in committed rounds, then unique IDs, both shared with assign-ids (resumable, verified counts; the
   collision strategies and incremental indexing work the same).
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import ray
import torch

from .. import storage
from ..config import AssignConfig, BaselineConfig, ConfigError, IndexerConfig, TrainConfig
from ..ids.infer import EmbedActor
from ..ids.methods import CodesActor
from ..ids.rqvae_training import RqvaeTask, init_state
from ..ids.table_writer import encode_rounds, make_unique
from ..paths import RunContext
from ..quantizers import METHODS, save_method
from ..raydata import map_files, read_numpy, train_rows
from ..train.loop import fit

log = logging.getLogger("lmindexer.baselines")


def embed_corpus(b: BaselineConfig, run: RunContext, fs, out: str, encoder: str, max_length: int, bf16: bool) -> int:
    """Vectors of every document into <out>/_emb/ (by the model folder `encoder` where baseline.embeddings=encoder,
    reading `max_length` tokens); a finished embedding is reused. Returns the row count."""
    marker = storage.join(out, "_emb_done.json")
    if storage.exists(fs, marker):
        return storage.read_json(fs, marker)["rows"]
    start = time.time()
    source = "encoder" if b.embeddings == "encoder" else b.embeddings
    if source == "encoder" and not encoder:
        raise ConfigError("baseline.embeddings=encoder needs an encoder folder (baseline.encoder, or init-model's)")
    dfs, dpath = run.filesystem(run.layout.docs)
    columns = ["doc_id", "text"] if source == "encoder" else None
    kwargs = {"source": source, "path": encoder, "max_length": max_length, "bf16": bf16}
    emb, files = storage.join(out, "_emb"), storage.list_files(dfs, dpath)
    read = map_files(run, files, dfs, columns, EmbedActor, kwargs, emb, fs, gpu=source == "encoder")
    rows = storage.count_rows(fs, emb) if read else 0
    if rows != read:
        raise RuntimeError(f"baseline-ids: {read} documents read but {rows} vectors written to {emb}")
    storage.write_json(fs, marker, {"rows": rows, "source": source, "encoder": encoder})
    log.info("baseline-ids: embedded %d documents (%s) in %.1fs", rows, encoder or source, time.time() - start)
    return rows


def fit_method(
    b: BaselineConfig, ic: IndexerConfig, run: RunContext, train: TrainConfig, fs, out: str, rows: int
) -> str:
    """Fit the configured method (on the vectors, where it reads them; RQ-VAE with the `train` settings) and save it
    under <out>/method; a saved one is reused."""
    kind = METHODS[b.method]
    uri = storage.join(run.layout.baseline_ids, "method")
    meta = {"codebook_size": ic.codebook_size, "num_positions": ic.num_positions}
    if storage.exists(fs, storage.join(out, "method", "method.json")):
        return uri
    start = time.time()
    if kind.reads != "emb":  # random IDs: nothing to fit on
        method = kind.fit(None, ic.codebook_size, ic.num_positions, ic.kmeans_iters, run.seed)
        save_method(fs, storage.join(out, "method"), method, meta)
        return uri
    if run.in_process(rows):
        emb = read_numpy(fs, storage.join(out, "_emb"), ["emb"])["emb"]
        if rows > b.fit_sample:
            emb = emb[np.sort(np.random.default_rng(run.seed).choice(rows, b.fit_sample, replace=False))]
        sample = torch.from_numpy(np.ascontiguousarray(emb))
    else:
        emb = ray.data.read_parquet(storage.join(out, "_emb"), filesystem=fs).select_columns(["emb"])
        if rows > b.fit_sample:
            emb = emb.random_sample(b.fit_sample / rows, seed=run.seed)
        sample = torch.from_numpy(
            np.concatenate([x["emb"] for x in emb.iter_batches(batch_size=None, batch_format="numpy")])
        )
    if len(sample) < ic.codebook_size:
        raise ConfigError(f"{len(sample)} vectors cannot fill {ic.codebook_size} codes: lower indexer.codebook_size")
    log.info(
        "baseline-ids: fitting %s (T=%d, K=%d) on %d vectors of size %d",
        b.method,
        ic.num_positions,
        ic.codebook_size,
        len(sample),
        sample.shape[1],
    )
    meta["dim"] = int(sample.shape[1])
    if getattr(kind, "trained", False):  # RQ-VAE: a Ray Train run over every vector
        task = RqvaeTask(
            init=init_state(sample, b, ic, run.seed),
            out_dir=uri,
            storage=run.storage,
            epochs=b.rqvae_epochs,
            lr=b.rqvae_lr,
            batch_size=b.rqvae_batch_size,
            seed=run.seed,
            # one Ray Train run per output folder: a re-run resumes it, another table never does
            name=f"baseline-rqvae-{hashlib.sha1(uri.encode()).hexdigest()[:10]}",
        )
        if run.in_process(rows):
            data = train_rows(run, emb=read_numpy(fs, storage.join(out, "_emb"), ["emb"])["emb"])
        else:
            data = ray.data.read_parquet(storage.join(out, "_emb"), filesystem=fs).select_columns(["emb"])
        fit(train, run, task, data)
    else:
        method = kind.fit(sample, ic.codebook_size, ic.num_positions, ic.kmeans_iters, run.seed)
        save_method(fs, storage.join(out, "method"), method, meta)
    log.info("baseline-ids: %s fitted in %.1fs", b.method, time.time() - start)
    return uri


def baseline_ids(
    b: BaselineConfig,
    run: RunContext,
    ic: IndexerConfig,
    assign: AssignConfig,
    train: TrainConfig,
    max_length: int,
    encoder: str = "",
) -> dict:
    """The baseline-ids stage: the method `b` names, at the ID shape of `ic` (T, K, k-means iterations), made unique
    as assign-ids does (`assign`'s collisions, candidates and rounds), RQ-VAE trained with the `train` settings;
    `encoder`: the model folder that embeds the documents (baseline.embeddings=encoder), reading `max_length` tokens
    (bf16 where train.precision says so)."""
    start = time.time()
    uri = run.layout.baseline_ids
    fs, out = run.filesystem(uri)
    if METHODS[b.method].reads == "doc_id":  # random IDs: from the corpus' doc_ids, no vectors
        rows, columns = 0, ["doc_id"]
        src_fs, src = run.filesystem(run.layout.docs)
    else:
        bf16 = train.precision != "fp32"
        rows, columns = embed_corpus(b, run, fs, out, encoder, max_length, bf16), ["doc_id", "emb"]
        src_fs, src = fs, storage.join(out, "_emb")
    kwargs = {
        "storage_cfg": run.storage,
        "candidates": assign.candidates,
        "method_dir": fit_method(b, ic, run, train, fs, out, rows),
    }
    encode_rounds(run, assign.files_per_round, fs, out, src_fs, src, columns, CodesActor, kwargs, actor_gpu=False)
    return make_unique(assign, run, uri, start, ic.codebook_size, {"method": b.method})
