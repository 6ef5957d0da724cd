"""`lmindexer learn-ids`: the progressive LMIndexer schedule, one ID position after another.

For t = 1..T: (a) warm up the reconstructor, (b) train with the continuous h_t, (c) k-means on the model's own h_t
to initialise codebook t, (d) train encoder + codebook + reconstructor, (e) assign code t to every document (hard
negatives for t+1 come from these prefixes); (a), (b) and (d) only at the first `indexer.trained_positions`. Each
step writes an indexer snapshot and is recorded in <output_dir>/learn_ids/progress.json, so re-running the command
continues where it stopped.

All the steps run in one Ray Train run (`learn-ids`): its workers train each phase, embed their share of the
documents for k-means (fitted on rank 0) and assign their share of the codes, so worker start-up, imports and the
data shard are paid once, not once per step (a run per step cost ~28 s of start-up each on 2 CPU cores, and each
k-means or assignment pass another ~8 s for its Ray Data actor pool).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.train
import torch
import torch.distributed as dist
from transformers import AutoTokenizer

from .. import storage
from ..config import ConfigError, IndexerConfig, ModelConfig, TrainConfig
from ..data.corpus import count_docs, load_docs, read_docs
from ..eval.metrics import code_usage, collision_rate, label_scores, position_figures, split_stats
from ..ids.indexer_task import IdLearningTask
from ..ids.infer import gathered_outputs, load_for_inference
from ..ids.negatives import prefix_groups
from ..models.codebook import fit_offsets
from ..models.indexer import CONFIG_FILE, SemanticIndexer
from ..models.tokenizer import encode_texts
from ..paths import RunContext
from ..quantizers.kmeans import kmeans, nearest
from ..raydata import as_numpy, shared, spread, train_rows
from ..train.engine import engine_kind
from ..train.loop import launch, prepare_worker, run_task, say, worker_shard

log = logging.getLogger("lmindexer.ids")
STEPS = ("warmup", "continuous", "kmeans", "joint", "assign")


class Tokenize:
    def __init__(self, path: str, max_length: int):
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = max_length

    def __call__(self, batch: dict) -> dict:
        enc = encode_texts(self.tokenizer, batch["text"], self.max_length, pad="max_length", tensors="np")
        label = batch["label"] if "label" in batch else np.full(len(batch["doc_id"]), None)
        return {"doc_id": batch["doc_id"], "label": label, "input_ids": enc["input_ids"].astype(np.int32)}


def tokenize_corpus(run: RunContext, backbone: str, max_length: int) -> dict:
    """doc_id, label and input_ids [N, L] of the whole corpus, tokenised by Ray Data (in this process for at most
    ray.in_process_rows documents); cached in the work dir."""
    cache = os.path.join(run.layout.learn_work, "tokens.npz")
    if os.path.exists(cache):
        data = np.load(cache, allow_pickle=True)
        return {k: data[k] for k in data.files}
    if run.in_process(count_docs(run)):
        tokenize = Tokenize(backbone, max_length)
        parts = [tokenize(as_numpy(pa.Table.from_batches([b]))) for b in read_docs(run, None, batch_size=1024)]
    else:
        ds = spread(load_docs(run), run).map_batches(
            Tokenize,
            fn_constructor_kwargs={"path": backbone, "max_length": max_length},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
            num_cpus=0.5,
            batch_size=1024,
            batch_format="numpy",
        )
        parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    data = {k: np.concatenate([p[k] for p in parts]) for k in ("doc_id", "label", "input_ids")}
    os.makedirs(run.layout.learn_work, exist_ok=True)
    np.savez(cache, **data)
    log.debug("learn-ids: tokenised %d documents (max_length %d)", len(data["doc_id"]), max_length)
    return data


class Progress:
    """Which steps are done, the current snapshot and the code table; persisted after every step."""

    def __init__(self, work: str, n: int, positions: int):
        self.dir = work
        self.file = os.path.join(self.dir, "progress.json")
        self.codes_file = os.path.join(self.dir, "codes.npy")
        state = {}
        if os.path.exists(self.file):
            with open(self.file) as f:
                state = json.load(f)
        self.done: list[str] = state.get("done", [])
        self.snapshot: str = state.get("snapshot", "")
        self.metrics: dict = state.get("metrics", {})
        self.codes = (
            np.load(self.codes_file) if os.path.exists(self.codes_file) else np.full((n, positions), -1, dtype=np.int32)
        )

    def note(self, step: str, snapshot: str, metrics: dict | None = None) -> None:
        """Record a finished step in memory (every worker keeps track; rank 0 also saves)."""
        if step not in self.done:
            self.done.append(step)
        self.snapshot = snapshot
        if metrics:
            self.metrics[step] = metrics

    def save(self, step: str, snapshot: str, metrics: dict | None = None) -> None:
        self.note(step, snapshot, metrics)
        np.save(self.codes_file, self.codes)
        with open(self.file, "w") as f:
            json.dump({"done": self.done, "snapshot": snapshot, "metrics": self.metrics}, f, indent=2)


def phase_epochs(ic: IndexerConfig) -> dict:
    return {"warmup": ic.warmup_epochs, "continuous": ic.continuous_epochs, "joint": ic.joint_epochs}


def schedule(ic: IndexerConfig) -> list[tuple[int, str]]:
    """(position, step) in order: training steps with epochs, up to indexer.trained_positions; k-means and assignment
    at every position."""
    epochs, trained = phase_epochs(ic), ic.trained_positions or ic.num_positions
    return [
        (t, s)
        for t in range(1, ic.num_positions + 1)
        for s in STEPS
        if s not in epochs or (epochs[s] > 0 and t <= trained)
    ]


def moves_encoder_after(ic: IndexerConfig, plan: list[tuple[int, str]], position: int) -> bool:
    """Whether a training step of a later position changes the encoder (so code `position` needs its own copy)."""
    epochs = phase_epochs(ic)
    return any(
        t > position and s in epochs and s != "warmup" and not (s == "joint" and ic.later_positions == "codebook")
        for t, s in plan
    )


@dataclass
class Schedule:
    """What the workers of the learn-ids run are given: the steps to run and what they read."""

    plan: list  # (position, step) in order
    work: str  # <output_dir>/learn_ids: progress, codes and snapshots
    indexer: IndexerConfig
    dropout: float
    tokens: object  # ref of input_ids [N, L] int32
    labels: object  # ref of the documents' labels (None where missing), for the assignment's figures
    inference_batch_size: int
    bf16: bool
    rerun: bool = False  # run the plan's steps even where done (--phase)


def learn_ids(
    ic: IndexerConfig, run: RunContext, model: ModelConfig, train: TrainConfig, backbone: str, only: str | None = None
) -> dict:
    """The learn-ids stage: the indexer `ic` describes, on the saved `backbone` folder (init-model's; `model`: its
    dropout and how many tokens of a document it reads), trained with the `train` settings; `only`: one
    POSITION:STEP alone."""
    start = time.time()
    data = tokenize_corpus(run, backbone, model.max_length)
    n = len(data["doc_id"])
    if n < ic.codebook_size:
        raise ConfigError(
            f"{n} documents cannot fill a codebook of {ic.codebook_size} codes: lower indexer.codebook_size"
        )
    if ic.epoch_figures and engine_kind(train) == "deepspeed" and train.zero_stage == 3:
        raise ConfigError("indexer.epoch_figures needs whole weights on every worker: use train.zero_stage < 3")
    work = run.layout.learn_work
    progress = Progress(work, n, ic.num_positions)
    if not progress.snapshot:
        first = os.path.join(progress.dir, "snapshot-0-init")
        start_model = SemanticIndexer.from_backbone(backbone, ic, model.max_length)
        if start_model.kind == "encoder" and ic.recon_vocab == "corpus":
            start_model.state["recon_vocab"] = np.unique(data["input_ids"]).tolist()
        start_model.save_pretrained(first)
        progress.save("0:init", first)
    plan = schedule(ic)
    if only:
        pos, _, step = only.partition(":")
        if (int(pos), step) not in plan:
            raise ValueError(f"--phase {only}: expected POSITION:STEP with STEP in {STEPS} (and epochs > 0)")
        plan = [(int(pos), step)]
    todo = [f"{t}:{s}" for t, s in plan if only or f"{t}:{s}" not in progress.done]
    done = [f"{t}:{s}" for t, s in plan if f"{t}:{s}" in progress.done] if not only else []
    if done:  # a re-run resumes: say what is kept and where it goes on
        log.info(
            "learn-ids: resuming; %d finished step(s) kept (%s), next: %s",
            len(done),
            ", ".join(done),
            todo[0] if todo else "nothing, all done",
        )
    if todo:
        tokens = ray.put(data["input_ids"])  # one copy: the workers' table and the dataset's rows
        steps = Schedule(
            plan=plan,
            work=work,
            indexer=ic,
            dropout=model.dropout,
            tokens=tokens,
            labels=ray.put(data["label"]),
            inference_batch_size=run.inference.batch_size,
            bf16=train.precision != "fp32",
            rerun=bool(only),
        )
        config = {"train": train, "seed": run.seed, "schedule": steps}
        dataset = train_rows(run, input_ids=tokens)
        launch(
            train,
            run,
            "learn-ids",
            schedule_worker,
            config,
            dataset,
            fresh=bool(only),
            what=f"steps {', '.join(todo)}",
        )
        progress = Progress(work, n, ic.num_positions)
    return _finish(ic, run, progress, data, time.time() - start, bool(todo))


def schedule_worker(config: dict) -> None:
    """Every step of the plan on one Ray Train worker, in order; rank 0 saves each step's snapshot and progress."""
    s, train, seed, tuned = config["schedule"], config["train"], config["seed"], config["tuned"]
    prepare_worker(train)
    rank = ray.train.get_context().get_world_rank()
    shard = worker_shard(config)
    checkpoint = ray.train.get_checkpoint()  # of the training phase a stopped run was in, if any
    tokens = shared(s.tokens)
    progress = Progress(s.work, len(tokens), s.indexer.num_positions)
    epochs = phase_epochs(s.indexer)
    for t, step in s.plan:
        key = f"{t}:{step}"
        if key in progress.done and not s.rerun:
            continue
        start = time.time()
        out = os.path.join(progress.dir, f"snapshot-{t}-{step}")
        if step in epochs:
            groups = None
            if t > 1 and s.indexer.hard_negatives and step != "warmup":
                groups = prefix_groups(progress.codes[:, : t - 1])
            tables = {"tokens": tokens, "codes": progress.codes, "groups": groups, "labels": s.labels}
            if step == "joint" and s.indexer.neighbour_weight > 0:
                tables["anchors"] = _start_states(s, progress, tokens, t)
            task = IdLearningTask(
                init_dir=progress.snapshot,
                out_dir=out,
                phase=step,
                position=t,
                epochs=epochs[step],
                lr=s.indexer.lr,
                batch_size=s.indexer.batch_size,
                dropout=s.dropout,
                tables=tables,
                seed=seed,
                # exact only where rows without a gradient never move: AdamW without weight decay, fp32 weights
                rows_only=engine_kind(train) == "ddp" and train.weight_decay == 0,
                epoch_figures=s.indexer.epoch_figures and step == "joint",
                inference_batch_size=s.inference_batch_size,
            )
            metrics = {"epochs": run_task(task, train, seed, tuned, shard, checkpoint, final_checkpoint=False)}
        elif step == "kmeans":
            metrics = _kmeans_step(s, progress, tokens, t, seed, out)
        else:
            metrics = _assign_step(s, progress, tokens, t, out)
        if rank == 0:
            progress.save(key, out, metrics)
            if step == "assign":  # a training phase's last epoch line has said how it ended; k-means' start is kept
                say(f"learn-ids: position {t} {step} done in {time.time() - start:.1f}s: {brief(metrics)}")
        else:
            progress.note(key, out, metrics)
        _barrier()


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _start_states(s: Schedule, progress: Progress, tokens: np.ndarray, t: int) -> np.ndarray:
    """h_t of every document under the snapshot the phase starts from (fp32, dropout off), on every worker: the
    anchors of indexer.neighbour_weight."""
    model, _ = load_for_inference(progress.snapshot, False)
    rows = np.arange(len(tokens))
    states = gathered_outputs(model, None, tokens, progress.codes, rows, t, "embed", s.inference_batch_size, True)
    if ray.train.get_context().get_world_rank() == 0:
        say(f"learn-ids: position {t}: the start's states of {len(rows)} documents (indexer.neighbour_weight)")
    return states.astype(np.float32)


def _kmeans_step(s: Schedule, progress: Progress, tokens: np.ndarray, t: int, seed: int, out: str) -> dict:
    """Codebook t from k-means on the states of a seeded sample of documents (centred on their prefix where the
    codebook has offsets: indexer.residual); rank 0 fits and saves."""
    ic, n = s.indexer, len(tokens)
    rows = np.sort(np.random.default_rng(seed + t).choice(n, size=min(n, ic.kmeans_sample), replace=False))
    model, dtype = load_for_inference(progress.snapshot, s.bf16)
    h = gathered_outputs(model, dtype, tokens, progress.codes, rows, t, "embed", s.inference_batch_size, everyone=False)
    if h is not None:
        device = next(model.parameters()).device  # the inference copy fits and is saved: k-means on its device
        h = torch.from_numpy(h).to(device)
        book = model.codebooks[t - 1]
        if book.offsets is not None:
            prefix = torch.from_numpy(progress.codes[rows, : t - 1].astype(np.int64)).to(device)
            book.offsets.data.copy_(fit_offsets(h, prefix, ic.codebook_size))
            h = book.centre(h, prefix).detach()
        say(f"learn-ids: position {t} k-means over {len(h)} states (K={ic.codebook_size})")
        book.weight.data.copy_(kmeans(h, ic.codebook_size, iters=ic.kmeans_iters, seed=seed + t))
        model.save_pretrained(out)
        # the start's own figures (the sample's nearest centres under its prefix): what the joint epochs change
        start = np.concatenate(
            [progress.codes[rows, : t - 1], nearest(h, book.weight.data)[0].cpu().numpy()[:, None]], 1
        )
        metrics = {**code_usage(start[:, -1], ic.codebook_size), **label_scores(shared(s.labels)[rows], start)}
        return {"points": len(rows), "start": metrics}
    return {"points": len(rows)}


def brief(metrics: dict, prefix: str = "") -> str:
    """A step's figures on one line: nested keys joined with '.', floats to 4 significant digits."""
    parts = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            parts.append(brief(v, f"{prefix}{k}."))
        else:
            parts.append(f"{prefix}{k}={v:.4g}" if isinstance(v, float) else f"{prefix}{k}={v}")
    return " ".join(p for p in parts if p)


def _assign_step(s: Schedule, progress: Progress, tokens: np.ndarray, t: int, out: str) -> dict:
    """Code t of every document (every worker keeps the table); rank 0 saves the indexer with position t done."""
    ic = s.indexer
    model, dtype = load_for_inference(progress.snapshot, s.bf16)
    progress.codes[:, t - 1] = gathered_outputs(
        model, dtype, tokens, progress.codes, np.arange(len(tokens)), t, "assign", s.inference_batch_size, True
    )
    if ray.train.get_context().get_world_rank() != 0:
        return {}
    model.set_id_embeddings(t)
    model.state["positions_done"] = t
    if ic.staged_encoders and moves_encoder_after(ic, schedule(ic), t):
        model.keep_stage(t)  # later training moves the encoder: code t keeps this copy
    model.save_pretrained(out)
    return position_figures(progress.codes[:, :t], shared(s.labels), ic.codebook_size)


def _finish(
    ic: IndexerConfig, run: RunContext, progress: Progress, data: dict, seconds: float, ran: bool = True
) -> dict:
    """Copy the last snapshot to <output_dir>/indexer with the training summary; write the code table. A re-run that
    did no step leaves a saved indexer as it is (a new copy would look newer than the ID table made from it, and
    assign-ids would run again)."""
    final = run.layout.indexer
    positions_done = sum(f"{t}:assign" in progress.done for t in range(1, ic.num_positions + 1))
    done_all = positions_done == ic.num_positions
    summary = {
        "positions_done": positions_done,
        "documents": int(len(data["doc_id"])),
        "steps": progress.metrics,
        "seconds": round(seconds, 1),
    }
    if done_all:
        codes = progress.codes
        summary["collision_rate"] = round(collision_rate(codes), 4)  # share of documents needing a suffix
        summary["split"] = split_stats(codes)
        summary["first_position"] = label_scores(data["label"], codes[:, :1])
        fs, folder = run.filesystem(final)
        if not ran and storage.exists(fs, storage.join(folder, CONFIG_FILE)):
            log.info("learn-ids: all positions done; the indexer at %s is kept as it is", final)
            return {"indexer": final, **summary}
        model = SemanticIndexer.from_pretrained(progress.snapshot)
        model.state["history"] = [summary]
        local = os.path.join(progress.dir, "indexer") if storage.is_uri(final) else final
        if os.path.exists(local):
            shutil.rmtree(local)
        model.save_pretrained(local)
        if local != final:
            storage.put_folder(local, final, run.storage)
        pq.write_table(
            pa.table({"doc_id": data["doc_id"].astype(str), "codes": pa.array(list(codes))}),
            os.path.join(progress.dir, "codes.parquet"),
        )
        log.info(
            "learn-ids: indexer -> %s (%d positions, collision rate %.3f)",
            final,
            ic.num_positions,
            summary["collision_rate"],
        )
    return {"indexer": final if done_all else None, **summary}
