"""What runs before and after a stage: the one place that sequences stages. A stage never calls another; the
commands (`lmindexer <stage>`, `run`), Tune's trials and the benches call these.

- learn:     init-model (the backbone folder), then learn-ids on it
- assign:    assign-ids with the model's cut and precision
- report:    id-report against the corpus's label fields
- baselines: init-model when the baseline embeds with the run's own encoder, then baseline-ids
- generator: train-generator, then evaluate (unless the generator as it is was evaluated before)
"""

from __future__ import annotations

import logging
import os

from .config import Config
from .paths import RunContext

log = logging.getLogger("lmindexer")


def learn(cfg: Config, only: str | None = None) -> dict:
    from .stages.init_model import init_model
    from .stages.learn_ids import learn_ids

    run = RunContext.of(cfg)
    return learn_ids(cfg.indexer, run, cfg.model, cfg.train, init_model(cfg.model, run), only=only)


def assign(cfg: Config) -> dict:
    from .stages.assign_ids import assign_ids

    return assign_ids(cfg.assign, RunContext.of(cfg), cfg.model.max_length, cfg.train.precision != "fp32")


def report(cfg: Config) -> dict:
    from .stages.id_report import id_report

    return id_report(cfg.report, RunContext.of(cfg), cfg.data.label_fields)


def baselines(cfg: Config) -> dict:
    from .models.pretrained import resolve
    from .quantizers import METHODS
    from .stages.baseline_ids import baseline_ids

    b, encoder, run = cfg.baseline, "", RunContext.of(cfg)
    if METHODS[b.method].reads != "doc_id" and b.embeddings == "encoder":
        if b.encoder:
            encoder = resolve(b.encoder)
        else:
            from .stages.init_model import init_model

            encoder = init_model(cfg.model, run)
    return baseline_ids(b, run, cfg.indexer, cfg.assign, cfg.train, cfg.model.max_length, encoder)


def generator(cfg: Config) -> dict:
    from .stages.evaluate import evaluate, finished_evaluation
    from .stages.train_generator import train_generator

    g, e, run = cfg.generator, cfg.evaluate, RunContext.of(cfg)
    summary = train_generator(g, run, e, cfg.train)
    done = None
    if g.model_kind != "seqrec" and "train" not in summary:
        done = finished_evaluation(e, run)
    if done is not None:
        log.info(
            "generator: evaluated before (%s); not decoded again (run `lmindexer evaluate` to redo it)",
            os.path.join(summary["generator"], f"eval-{e.split}", "metrics.json"),
        )
    summary["eval"] = done or evaluate(e, run, g, cfg.train)
    return summary
