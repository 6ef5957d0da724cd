"""Where a run keeps its files (the one owner of every path under `output_dir`), and the context every stage shares.

    <output_dir>/
      demo_source/      the embedded demo corpus as a BEIR folder (data.input=builtin:demo)
      corpus/docs/      the prepared corpus, sharded parquet (data.output moves it)
      backbone/         init-model's start model
      learn_ids/        learn-ids' snapshots and progress (resumable)
      indexer/          the trained indexer (indexer.output moves it)
      ids/              assign-ids' ID table (assign.output moves it; the generator reads generator.ids or this)
      ids-<method>/     baseline-ids' tables (baseline.output moves one)
      report/           id-report's JSON, Markdown and PNGs (report.output moves it)
      generator-<task>-<ids folder>/   a trained generator and its evaluations (generator.output moves it)
      sasrec/           the SASRec reference that rec evaluation trains (seqrec.json, seqrec.pt)
      ray/              Ray Train runs and checkpoints (train.storage_path moves them)
      tune/             Ray Tune experiments (tune.output moves them)
      run_summary.json  `lmindexer run`'s full summary

Every path is absolute (Ray workers run in their own directories) unless it is a URI.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from . import storage
from .config import Config, InferenceConfig, RayConfig, StorageConfig


@dataclass(frozen=True)
class RunLayout:
    """Every path of a run, resolved once from the config at the edge (`RunLayout.of(cfg)`): stages get these strings,
    not the config they came from."""

    demo_source: str
    corpus: str
    backbone: str
    learn_work: str
    indexer: str
    ids: str  # the table assign-ids writes
    generator_ids: str  # the table the generator learns to emit
    baseline_ids: str
    generator: str
    sasrec: str
    report: str
    run_summary: str  # `lmindexer run`'s full JSON summary
    ray: str
    tune: str
    generator_data: str  # the generator's task data: a BEIR folder or a sequences file ("" where none is known)

    @property
    def docs(self) -> str:
        return storage.join(self.corpus, "docs")

    @classmethod
    def of(cls, cfg: Config) -> RunLayout:
        def at(override: str, name: str) -> str:
            return storage.absolute(override or storage.join(cfg.output_dir, name))

        g, demo_source = cfg.generator, at("", "demo_source")
        ids_name = posixpath.basename(posixpath.normpath(g.ids)) if g.ids else "ids"
        return cls(
            demo_source=demo_source,
            corpus=at(cfg.data.output, "corpus"),
            backbone=at("", "backbone"),
            learn_work=at("", "learn_ids"),
            indexer=at(cfg.indexer.output, "indexer"),
            ids=at(cfg.assign.output, "ids"),
            generator_ids=at(g.ids, "ids"),
            baseline_ids=at(cfg.baseline.output, f"ids-{cfg.baseline.method}"),
            generator=at(g.output, f"generator-{g.task}-{ids_name}"),
            sasrec=at("", "sasrec"),
            report=at(cfg.report.output, "report"),
            run_summary=at("", "run_summary.json"),
            ray=at(cfg.train.storage_path, "ray"),
            tune=at(cfg.tune.output, "tune"),
            generator_data=_generator_data(cfg, demo_source),
        )


def _generator_data(cfg: Config, demo_source: str) -> str:
    """generator.data, else what the corpus's input implies: the demo's BEIR folder or its sequences file, or the
    input itself where it is a BEIR folder and the task is retrieval; "" where nothing is known."""
    g = cfg.generator
    if g.data:
        return storage.absolute(g.data)
    if cfg.data.input == "builtin:demo":
        return demo_source if g.task == "retrieval" else storage.join(demo_source, "sequences.txt")
    if g.task == "retrieval" and cfg.data.format in ("auto", "beir"):
        return storage.absolute(cfg.data.input)
    return ""


@dataclass(frozen=True)
class RunContext:
    """What every stage shares besides its own settings section: where the run's files are (`layout`), how to reach
    them (`storage`), the run's seed, and how its batch steps run (`ray`: up to how many rows stay in this process
    and the shuffles; `inference`: the batch-inference actor pool; `use_gpu`). Built once from the config at the
    edge: `RunContext.of(cfg)`."""

    layout: RunLayout
    storage: StorageConfig
    seed: int
    ray: RayConfig
    inference: InferenceConfig
    use_gpu: bool

    @classmethod
    def of(cls, cfg: Config) -> RunContext:
        return cls(RunLayout.of(cfg), cfg.storage, cfg.seed, cfg.ray, cfg.inference, cfg.train.use_gpu)

    def filesystem(self, uri: str):
        """(pyarrow filesystem, path) of a local path or URI, with the run's storage settings."""
        return storage.filesystem(uri, self.storage)

    def in_process(self, rows: int) -> bool:
        """Whether a batch step over `rows` rows runs in this process rather than as a Ray Data pipeline."""
        return rows <= self.ray.in_process_rows
