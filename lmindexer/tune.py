"""`lmindexer tune`: Ray Tune over learn-ids or the generator, each trial a real distributed training run.

Train V2's pattern: a Tune function per trial runs the same learn-ids / train-generator code, whose TorchTrainers
forward every epoch's report to Tune (train.loop.fit adds TuneReportCallback inside a trial), so ASHA stops weak
trials on the per-epoch training loss; the trial ends with one report of its objective. Results: trials.md and
trials.csv sorted by the objective, best.yaml (a full config that learn-ids or train-generator takes as is) and
trials.png. Re-running the same command resumes an interrupted search.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time

import ray
import yaml
from ray import tune

from .config import Config, ConfigError, from_dict, override, to_dict
from .paths import RunContext, RunLayout
from .runtime import data_context

log = logging.getLogger("lmindexer.tune")
KINDS = {
    "choice": tune.choice,
    "grid": tune.grid_search,
    "uniform": tune.uniform,
    "loguniform": tune.loguniform,
    "randint": tune.randint,
}
FIXED_MODEL_KEYS = {"model.name_or_path", "model.preset", "model.vocab_size", "model.tokenizer_sample"}
STEP_METRIC = {"learn-ids": "recon", "generator": "loss"}
LOWER_IS_BETTER = {"recon", "loss", "collision_rate"}


def search_space(space: dict) -> dict:
    """{'indexer.lr': ['loguniform', 1e-4, 1e-2], ...} -> Tune's param_space; every key checked against the config."""
    if not space:
        raise ConfigError(
            "tune.space is empty: give at least one key, e.g. tune.space={indexer.lr: [loguniform, 1.0e-4, 1.0e-2]}"
        )
    out = {}
    for key, spec in space.items():
        if key in FIXED_MODEL_KEYS:
            raise ConfigError(f"tune.space: {key} is fixed for a search (every trial starts from one backbone)")
        if not isinstance(spec, list) or not spec or spec[0] not in KINDS:
            raise ConfigError(f"tune.space.{key}: expected [kind, ...] with kind one of {sorted(KINDS)}, got {spec!r}")
        kind, args = spec[0], spec[1:]
        for value in args:
            override(Config(), key, value)  # an unknown key or a wrong type fails here, naming the key
        if kind in ("choice", "grid"):
            out[key] = KINDS[kind](args)
        elif len(args) != 2:
            raise ConfigError(f"tune.space.{key}: {kind} takes a low and a high value, got {args}")
        else:
            out[key] = KINDS[kind](*args)
    return out


def objective_of(cfg: Config) -> str:
    if cfg.tune.objective:
        return cfg.tune.objective
    if cfg.tune.target == "generator":
        return f"recall@{max(cfg.evaluate.ks)}"
    return "ami" if cfg.data.label_fields else "recon"


def trial_config(base: dict, params: dict, trial_dir: str) -> Config:
    """The base config with the trial's values; outputs in the trial's folder, inputs shared with the base run."""
    cfg = from_dict(base)
    for key, value in params.items():
        override(cfg, key, value)
    cfg.output_dir = trial_dir
    cfg.train.storage_path = ""
    cfg.train.checkpoint_every_steps = 0  # every report then carries the step metric that ASHA reads
    return cfg


def _learn_ids_result(cfg: Config, objective: str) -> dict:
    from .pipeline import learn

    summary = learn(cfg)
    last_epochs = [m["epochs"] for m in summary["steps"].values() if "epochs" in m][-1]
    last_assign = [m for k, m in summary["steps"].items() if k.endswith(":assign")][-1]
    values = {
        "recon": last_epochs[-1]["recon"],
        "collision_rate": summary.get("collision_rate"),
        "perplexity": last_assign.get("perplexity"),
        "ami": summary.get("first_position", {}).get("ami"),
    }
    if values.get(objective) is None:
        raise ConfigError(f"tune.objective={objective} is not measured here (ami needs data.label_fields)")
    return {"recon": values["recon"], objective: values[objective]}


def _generator_result(cfg: Config, objective: str) -> dict:
    from .pipeline import generator
    from .train.task import HISTORY_FILE

    summary = generator(cfg)
    with open(os.path.join(summary["generator"], HISTORY_FILE)) as f:
        loss = json.load(f)[-1]["loss"]
    metrics = {"loss": loss, **summary["eval"]["metrics"]}
    if objective not in metrics:
        raise ConfigError(f"tune.objective={objective} is not one of {sorted(metrics)}")
    return {"loss": loss, objective: metrics[objective]}


def run_trial(params: dict, base: dict, target: str, objective: str, experiment: str) -> None:
    """One trial, run by Tune in its own process; its outputs go to its folder in the experiment (not Tune's
    temporary working folder), where a resumed trial finds them."""
    start = time.time()
    cfg = trial_config(base, params, os.path.join(experiment, os.path.basename(tune.get_context().get_trial_dir())))
    data_context(cfg.ray)  # this process builds the trial's datasets
    result = (_learn_ids_result if target == "learn-ids" else _generator_result)(cfg, objective)
    tune.report({**result, "trial_seconds": round(time.time() - start, 1)})


def _concurrency(cfg: Config) -> int:
    if cfg.tune.max_concurrent:
        return cfg.tune.max_concurrent
    resources = ray.cluster_resources()
    if cfg.train.use_gpu:
        return max(1, int(resources.get("GPU", 0) // cfg.train.num_workers))
    per_trial = cfg.train.num_workers * cfg.train.cpus_per_worker + 0.1
    return max(1, int(resources.get("CPU", 1) / 2 // per_trial))


def _max_t(cfg: Config) -> int:
    """Epochs a whole trial reports; its final report (the objective) comes one after, and ASHA must not stop a
    trial that reached max_t before that report."""
    if cfg.tune.target == "generator":
        return cfg.generator.epochs
    ic = cfg.indexer
    return ic.num_positions * (ic.warmup_epochs + ic.continuous_epochs + ic.joint_epochs)


def _prepare_shared(cfg: Config) -> dict:
    """Prepare the corpus and the backbone once; every trial reads them."""
    from .stages.init_model import init_model
    from .stages.prepare import prepare_once

    base, run = copy.deepcopy(cfg), RunContext.of(cfg)
    prepare_once(cfg.data, run, cfg.demo)
    base.data.output = run.layout.corpus
    backbone = init_model(cfg.model, run)
    base.model.name_or_path = backbone
    if cfg.tune.target == "generator":
        from .downstream.examples import task_data

        base.generator.ids = run.layout.generator_ids
        base.generator.init = cfg.generator.init or backbone
        base.generator.data = task_data(cfg.generator, run)
    return to_dict(base)


def tune_search(cfg: Config) -> dict:
    t = cfg.tune
    space = search_space(t.space)
    objective = objective_of(cfg)
    mode = "min" if objective in LOWER_IS_BETTER else "max"
    out = RunLayout.of(cfg).tune
    storage, name = os.path.dirname(out), os.path.basename(out)
    base = _prepare_shared(cfg)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base, target=t.target, objective=objective, experiment=out), {"CPU": 0.1}
    )
    if tune.Tuner.can_restore(out):
        log.info("tune: resuming the search in %s", out)
        tuner = tune.Tuner.restore(out, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = None
        if t.scheduler == "asha":
            scheduler = tune.schedulers.ASHAScheduler(
                metric=STEP_METRIC[t.target],
                mode="min",
                grace_period=t.grace_period,
                reduction_factor=t.reduction_factor,
                max_t=max(_max_t(cfg), t.grace_period) + 1,
            )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=t.num_samples, scheduler=scheduler, max_concurrent_trials=_concurrency(cfg)
            ),
            run_config=tune.RunConfig(name=name, storage_path=storage),
        )
    log.info(
        "tune: %s, objective %s (%s), %d sample(s), up to %d at once, scheduler %s -> %s",
        t.target,
        objective,
        mode,
        t.num_samples,
        _concurrency(cfg),
        t.scheduler,
        out,
    )
    grid = tuner.fit()  # a Ctrl-C ends it gracefully: Tune saves the search, and trials left are "unfinished"
    summary = write_results(cfg, grid, objective, mode, out)
    if summary["unfinished"]:
        raise KeyboardInterrupt  # the command exits 130 with the one-line message, like every other phase
    return summary


def write_results(cfg: Config, grid, objective: str, mode: str, out: str) -> dict:
    rows = []
    step = STEP_METRIC[cfg.tune.target]
    for r in grid:
        m = r.metrics or {}
        finished = objective in m and "trial_seconds" in m
        status = "error" if r.error else "done" if finished else "stopped early" if m.get("done") else "unfinished"
        params = {k: v for k, v in (r.config or {}).items()}
        rows.append(
            {
                "trial": os.path.basename(r.path),
                "status": status,
                objective: m.get(objective) if finished else None,
                f"last {step}": m.get(step),
                "epochs reported": m.get("training_iteration"),
                **params,
            }
        )
    sign = 1 if mode == "min" else -1
    rows.sort(key=lambda row: (row[objective] is None, sign * (row[objective] or 0)))
    columns = list(dict.fromkeys(c for row in rows for c in row))  # a trial stopped before it ran has no config
    with open(os.path.join(out, "trials.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out, "trials.md"), "w") as f:
        f.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
        for row in rows:
            f.write("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |\n")
    summary = {
        "experiment": out,
        "objective": objective,
        "mode": mode,
        "trials": len(rows),
        "stopped_early": sum(r["status"] == "stopped early" for r in rows),
        "errors": sum(r["status"] == "error" for r in rows),
        "unfinished": sum(r["status"] == "unfinished" for r in rows),
        "table": os.path.join(out, "trials.md"),
    }
    if rows and rows[0][objective] is not None and not summary["unfinished"]:  # no best of a search cut short
        best = from_dict(to_dict(cfg))
        for key in cfg.tune.space:
            override(best, key, rows[0][key])
        with open(os.path.join(out, "best.yaml"), "w") as f:
            f.write(f"# best of {len(rows)} trials by {objective} ({mode}): {rows[0]['trial']}\n")
            yaml.safe_dump(to_dict(best), f, sort_keys=False)
        summary.update(best=rows[0], best_config=os.path.join(out, "best.yaml"))
    summary["plot"] = _plot(grid, objective, step, out)
    log.info(
        "tune: %d trials (%d stopped early, %d errors); best %s = %s; %s",
        len(rows),
        summary["stopped_early"],
        summary["errors"],
        objective,
        rows[0][objective] if rows else None,
        summary["table"],
    )
    if summary["unfinished"]:
        log.warning(
            "tune: %d trial(s) unfinished (the search was interrupted): no best.yaml; run the same command again "
            "to resume",
            summary["unfinished"],
        )
    return summary


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _plot(grid, objective: str, step: str, out: str) -> str:
    """Left: the per-epoch training loss of every trial (where ASHA stopped some); right: each trial's objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names, values = [], []
    for r in grid:
        df = r.metrics_dataframe
        name = os.path.basename(r.path)
        if df is not None and step in df:
            curve = df[df[step].notna()]
            left.plot(curve["training_iteration"], curve[step], marker=".", label=name[-14:])
        if r.metrics and objective in r.metrics and "trial_seconds" in r.metrics:
            names.append(name[-14:])
            values.append(r.metrics[objective])
    left.set(xlabel="epoch reported", ylabel=step, title="training loss per trial")
    left.legend(fontsize=6)
    right.bar(range(len(values)), values)
    right.set_xticks(range(len(values)), names, rotation=45, ha="right", fontsize=6)
    right.set(ylabel=objective, title=f"{objective} of the finished trials")
    fig.tight_layout()
    path = os.path.join(out, "trials.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
