"""Where a run keeps its files: the one owner of every path under `output_dir`.

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
from .config import Config


@dataclass(frozen=True)
class RunLayout:
    cfg: Config

    def _at(self, override: str, name: str) -> str:
        return storage.absolute(override or storage.join(self.cfg.output_dir, name))

    @property
    def demo_source(self) -> str:
        return self._at("", "demo_source")

    @property
    def corpus(self) -> str:
        return self._at(self.cfg.data.output, "corpus")

    @property
    def docs(self) -> str:
        return storage.join(self.corpus, "docs")

    @property
    def backbone(self) -> str:
        return self._at("", "backbone")

    @property
    def learn_work(self) -> str:
        return self._at("", "learn_ids")

    @property
    def indexer(self) -> str:
        return self._at(self.cfg.indexer.output, "indexer")

    @property
    def ids(self) -> str:
        """The table assign-ids writes."""
        return self._at(self.cfg.assign.output, "ids")

    @property
    def generator_ids(self) -> str:
        """The table the generator learns to emit."""
        return self._at(self.cfg.generator.ids, "ids")

    @property
    def baseline_ids(self) -> str:
        return self._at(self.cfg.baseline.output, f"ids-{self.cfg.baseline.method}")

    @property
    def generator(self) -> str:
        g = self.cfg.generator
        ids_name = posixpath.basename(posixpath.normpath(g.ids)) if g.ids else "ids"
        return self._at(g.output, f"generator-{g.task}-{ids_name}")

    @property
    def sasrec(self) -> str:
        return self._at("", "sasrec")

    @property
    def report(self) -> str:
        return self._at(self.cfg.report.output, "report")

    @property
    def run_summary(self) -> str:
        """`lmindexer run`'s full JSON summary."""
        return self._at("", "run_summary.json")

    @property
    def ray(self) -> str:
        return self._at(self.cfg.train.storage_path, "ray")

    @property
    def tune(self) -> str:
        return self._at(self.cfg.tune.output, "tune")
