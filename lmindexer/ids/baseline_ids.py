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
import pyarrow as pa
import ray
import torch

from .. import storage
from ..config import Config, ConfigError
from ..paths import RunContext, RunLayout
from ..quantizers import METHODS, load_method, save_method
from ..raydata import map_files, read_numpy, train_rows
from ..train.loop import fit
from .assign import codes_table, encode_rounds, make_unique
from .infer import EmbedActor
from .rqvae_training import RqvaeTask, init_state

log = logging.getLogger("lmindexer.baselines")


class MethodActor:
    """Codes and last-level candidates for a batch of what the saved method reads (vectors, or doc_ids)."""

    def __init__(self, method_dir: str, storage_cfg, candidates: int):
        fs, path = storage.filesystem(method_dir, storage_cfg)
        self.method, _ = load_method(fs, path)
        self.k = candidates

    @torch.no_grad()
    def __call__(self, batch: dict) -> pa.Table:
        x = batch[self.method.reads]
        if self.method.reads == "emb":
            x = torch.from_numpy(np.asarray(x, np.float32))
        codes, cand, score = self.method.encode(x, self.k)
        return codes_table(batch["doc_id"], codes, cand, score)


def embed_corpus(cfg: Config, fs, out: str, encoder: str) -> int:
    """Vectors of every document into <out>/_emb/ (by the model folder `encoder` where baseline.embeddings=encoder);
    a finished embedding is reused. Returns the row count."""
    marker = storage.join(out, "_emb_done.json")
    if storage.exists(fs, marker):
        return storage.read_json(fs, marker)["rows"]
    b, start = cfg.baseline, time.time()
    source = "encoder" if b.embeddings == "encoder" else b.embeddings
    if source == "encoder" and not encoder:
        raise ConfigError("baseline.embeddings=encoder needs an encoder folder (baseline.encoder, or init-model's)")
    dfs, dpath = storage.filesystem(RunLayout.of(cfg).docs, cfg.storage)
    columns = ["doc_id", "text"] if source == "encoder" else None
    kwargs = {"source": source, "path": encoder, "max_length": cfg.model.max_length}
    kwargs["bf16"] = cfg.train.precision != "fp32"
    emb, files = storage.join(out, "_emb"), storage.list_files(dfs, dpath)
    read = map_files(RunContext.of(cfg), files, dfs, columns, EmbedActor, kwargs, emb, fs, gpu=source == "encoder")
    rows = storage.count_rows(fs, emb) if read else 0
    if rows != read:
        raise RuntimeError(f"baseline-ids: {read} documents read but {rows} vectors written to {emb}")
    storage.write_json(fs, marker, {"rows": rows, "source": source, "encoder": encoder})
    log.info("baseline-ids: embedded %d documents (%s) in %.1fs", rows, encoder or source, time.time() - start)
    return rows


def fit_method(cfg: Config, fs, out: str, rows: int) -> str:
    """Fit the configured method (on the vectors, where it reads them) and save it under <out>/method; a saved one
    is reused."""
    b, ic = cfg.baseline, cfg.indexer
    kind = METHODS[b.method]
    uri = storage.join(RunLayout.of(cfg).baseline_ids, "method")
    meta = {"codebook_size": ic.codebook_size, "num_positions": ic.num_positions}
    if storage.exists(fs, storage.join(out, "method", "method.json")):
        return uri
    start = time.time()
    if kind.reads != "emb":  # random IDs: nothing to fit on
        method = kind.fit(None, ic.codebook_size, ic.num_positions, ic.kmeans_iters, cfg.seed)
        save_method(fs, storage.join(out, "method"), method, meta)
        return uri
    if RunContext.of(cfg).in_process(rows):
        emb = read_numpy(fs, storage.join(out, "_emb"), ["emb"])["emb"]
        if rows > b.fit_sample:
            emb = emb[np.sort(np.random.default_rng(cfg.seed).choice(rows, b.fit_sample, replace=False))]
        sample = torch.from_numpy(np.ascontiguousarray(emb))
    else:
        emb = ray.data.read_parquet(storage.join(out, "_emb"), filesystem=fs).select_columns(["emb"])
        if rows > b.fit_sample:
            emb = emb.random_sample(b.fit_sample / rows, seed=cfg.seed)
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
            init=init_state(sample, cfg),
            out_dir=uri,
            storage=cfg.storage,
            epochs=b.rqvae_epochs,
            lr=b.rqvae_lr,
            batch_size=b.rqvae_batch_size,
            seed=cfg.seed,
            # one Ray Train run per output folder: a re-run resumes it, another table never does
            name=f"baseline-rqvae-{hashlib.sha1(uri.encode()).hexdigest()[:10]}",
        )
        if RunContext.of(cfg).in_process(rows):
            data = train_rows(RunContext.of(cfg), emb=read_numpy(fs, storage.join(out, "_emb"), ["emb"])["emb"])
        else:
            data = ray.data.read_parquet(storage.join(out, "_emb"), filesystem=fs).select_columns(["emb"])
        fit(cfg.train, RunContext.of(cfg), task, data)
    else:
        method = kind.fit(sample, ic.codebook_size, ic.num_positions, ic.kmeans_iters, cfg.seed)
        save_method(fs, storage.join(out, "method"), method, meta)
    log.info("baseline-ids: %s fitted in %.1fs", b.method, time.time() - start)
    return uri


def baseline_ids(cfg: Config, encoder: str = "") -> dict:
    """The baseline-ids stage; `encoder`: the model folder that embeds the documents (baseline.embeddings=encoder)."""
    start, b, ic = time.time(), cfg.baseline, cfg.indexer
    uri = RunLayout.of(cfg).baseline_ids
    fs, out = storage.filesystem(uri, cfg.storage)
    if METHODS[b.method].reads == "doc_id":  # random IDs: from the corpus' doc_ids, no vectors
        rows, columns = 0, ["doc_id"]
        src_fs, src = storage.filesystem(RunLayout.of(cfg).docs, cfg.storage)
    else:
        rows, columns = embed_corpus(cfg, fs, out, encoder), ["doc_id", "emb"]
        src_fs, src = fs, storage.join(out, "_emb")
    kwargs = {
        "storage_cfg": cfg.storage,
        "candidates": cfg.assign.candidates,
        "method_dir": fit_method(cfg, fs, out, rows),
    }
    run = RunContext.of(cfg)
    encode_rounds(run, cfg.assign.files_per_round, fs, out, src_fs, src, columns, MethodActor, kwargs, actor_gpu=False)
    return make_unique(cfg.assign, run, uri, start, ic.codebook_size, {"method": b.method})
