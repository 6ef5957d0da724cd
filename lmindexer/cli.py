"""`lmindexer <stage> --config FILE [key.sub=value ...]`: one subcommand per pipeline stage.

jobs/ calls `main()` with the same arguments, so `ray job submit` and the CLI run the same code.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time

from .config import ConfigError, describe, load_config
from .data.readers import BadInputError
from .runtime import ensure_ray, quiet_libraries, setup_logging

log = logging.getLogger("lmindexer")


def _prepare(cfg):
    from .paths import RunContext
    from .stages.prepare import prepare

    return prepare(cfg.data, RunContext.of(cfg), cfg.demo)


def _init_model(cfg):
    from .paths import RunContext
    from .stages.init_model import init_model

    return {"backbone": init_model(cfg.model, RunContext.of(cfg))}


def _learn_ids(cfg, phase=None):
    from .pipeline import learn

    return learn(cfg, only=phase)


def _assign_ids(cfg):
    from .pipeline import assign

    return assign(cfg)


def _assign_once(cfg):
    """assign-ids, unless the table of the current indexer is already complete (`run` re-runs do no work)."""
    from .paths import RunContext, RunLayout
    from .stages.assign_ids import finished_table

    done = finished_table(cfg.assign, RunContext.of(cfg))
    if done is None:
        return _assign_ids(cfg)
    log.info(
        "assign-ids: the ID table at %s is complete for this indexer; skipped (delete it to assign again)",
        RunLayout.of(cfg).ids,
    )
    return done


def _baseline_ids(cfg):
    from .pipeline import baselines

    return baselines(cfg)


def _id_report(cfg):
    from .pipeline import report

    return report(cfg)


def _train_generator(cfg):
    from .pipeline import generator

    return generator(cfg)


def _evaluate(cfg):
    from .paths import RunContext
    from .stages.evaluate import evaluate

    return evaluate(cfg.evaluate, RunContext.of(cfg), cfg.generator, cfg.train)


def _serve(cfg):
    from .serve import serve_forever

    return serve_forever(cfg)


def _tune(cfg):
    from .tune import tune_search

    return tune_search(cfg)


def _run(cfg):
    """The whole pipeline in order; each stage skips work that is already complete, so a re-run resumes."""
    t5_tasks = [t for t in cfg.generator.run_tasks if with_task(cfg, t).generator.model_kind == "t5"]
    if cfg.model.backbone == "encoder" and t5_tasks and not cfg.generator.init:
        raise ConfigError(
            f"model.backbone=encoder: the T5 generators of generator.run_tasks ({', '.join(t5_tasks)}) need a T5 "
            "to start from; "
            "set generator.init (a T5 folder or hub name), or generator.run_tasks=[]"
        )
    steps = [
        ("prepare", _prepare_once),
        ("init-model", _init_model),
        ("learn-ids", _learn_ids),
        ("assign-ids", _assign_once),
        ("id-report", _id_report),
    ]
    for task in cfg.generator.run_tasks:
        steps.append((f"train-generator ({task})", lambda c, t=task: _train_generator(with_task(c, t))))
    summary, seconds, total = {}, {}, time.time()
    for i, (name, fn) in enumerate(steps, 1):
        start = time.time()
        log.info("== [%d/%d] %s ==", i, len(steps), name)
        summary[name] = fn(cfg)
        seconds[name] = round(time.time() - start, 1)
    summary["seconds"] = {**seconds, "total": round(time.time() - total, 1)}
    log.info("%s", overview(summary))
    return summary


def check_input(cfg) -> None:
    """Unless the corpus is prepared already, the configured input must exist (FileNotFoundError otherwise)."""
    from .data.corpus import prepared
    from .paths import RunContext
    from .stages.prepare import resolve_input

    run = RunContext.of(cfg)
    if prepared(run) is None:
        _, files, _ = resolve_input(cfg.data, run, cfg.demo)
        if not files:
            raise FileNotFoundError(f"data.input={cfg.data.input} matches no file")


def with_task(cfg, task: str):
    """A copy of cfg whose generator does `task`."""
    out = copy.deepcopy(cfg)
    out.generator.task = task
    return out


def _prepare_once(cfg):
    from .paths import RunContext
    from .stages.prepare import prepare_once

    return prepare_once(cfg.data, RunContext.of(cfg), cfg.demo)


def overview(summary: dict) -> str:
    """The end-of-run summary: where the outputs are, ID quality, generator metrics, time per step."""
    lines = ["run summary"]
    ids = summary.get("assign-ids", {})
    if ids:
        lines.append(
            f"  IDs: {ids['ids_out']} documents in {ids['table']} ({ids['documents_with_suffix']} with a "
            "collision suffix)"
        )
        if ids.get("warning"):
            lines.append(f"  warning: {ids['warning']}")
    report = summary.get("id-report", {})
    if report:
        with open(report["json"]) as f:
            figures = next(iter(json.load(f).values()))
        lines.append(
            f"  ID report: {report['report']}; distinct prefixes per level "
            f"{figures['distinct_prefixes']}, collision rate {figures['collision_rate']}"
        )
        labels = figures.get("labels", {})
        if labels:
            lines.append(
                "    AMI by prefix length: " + "; ".join(f"{label} {scores['ami']}" for label, scores in labels.items())
            )
    for name, result in summary.items():
        if name.startswith("train-generator"):
            ev = result["eval"]
            lines.append(f"  {name}: {result['generator']}")
            rows = [("generator", ev["metrics"], ev.get("intervals", {}))] + [
                (method, r["metrics"], r["intervals"]) for method, r in ev.get("reference", {}).items()
            ]
            for label, m, ci in rows:
                lines.append(
                    f"    {label:<24}"
                    + ", ".join(
                        f"{k} {v:.4f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")
                        for k, v in m.items()
                        if k.startswith(("recall@", "ndcg@")) and not k.endswith("@1")
                    )
                )
    lines.append("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()))
    return "\n".join(lines)


# name -> (function, config sections shown in --help, one-line help)
STAGES = {
    "prepare": (
        _prepare,
        ["", "storage", "data", "demo", "ray"],
        "read a corpus (JSONL, CSV/TSV, parquet, BEIR, shards, URIs) into sharded parquet",
    ),
    "init-model": (
        _init_model,
        ["", "storage", "data", "model", "ray"],
        "load a pretrained T5 or build one from a preset with a tokenizer trained on the corpus",
    ),
    "learn-ids": (
        _learn_ids,
        ["", "storage", "data", "model", "indexer", "train", "inference", "ray"],
        "learn semantic IDs (LMIndexer) with Ray Train + DeepSpeed; writes <output_dir>/indexer",
    ),
    "assign-ids": (
        _assign_ids,
        ["", "storage", "data", "model", "train", "inference", "assign", "ray"],
        "give every document a unique ID with a trained indexer (Ray Data actor pool, resumable)",
    ),
    "baseline-ids": (
        _baseline_ids,
        ["", "storage", "data", "model", "indexer", "train", "inference", "assign", "baseline", "ray"],
        "IDs from a baseline method (hierarchical k-means, residual k-means, RQ-VAE, random) in the same table format",
    ),
    "id-report": (
        _id_report,
        ["", "storage", "data", "report", "ray"],
        "quality of ID tables (ours or peer JSON indexes): collisions, code usage, AMI/NMI vs labels; "
        "JSON, Markdown, PNG",
    ),
    "train-generator": (
        _train_generator,
        ["", "storage", "data", "model", "train", "inference", "generator", "evaluate", "ray"],
        "train a T5 to generate IDs (generator.task: retrieval or rec) with Ray Train + DeepSpeed, "
        "then evaluate it under the ID trie",
    ),
    "evaluate": (
        _evaluate,
        ["", "storage", "data", "train", "inference", "generator", "evaluate", "ray"],
        "Recall/NDCG/MRR/hit@K of a trained generator: trie-constrained beam search on a Ray Data actor pool",
    ),
    "tune": (
        _tune,
        ["", "storage", "data", "model", "indexer", "train", "inference", "generator", "evaluate", "tune", "ray"],
        "Ray Tune search (random/grid, ASHA) over learn-ids or the generator; trials table, best.yaml, plot; "
        "re-running resumes",
    ),
    "serve": (
        _serve,
        ["", "storage", "data", "serve", "ray"],
        "serve a finished run on Ray Serve: POST /assign (new documents get IDs, persisted), POST /recommend, "
        "GET /health, /describe; Ctrl-C stops it",
    ),
    "run": (
        _run,
        [
            "",
            "storage",
            "data",
            "demo",
            "model",
            "indexer",
            "train",
            "inference",
            "assign",
            "report",
            "generator",
            "evaluate",
            "ray",
        ],
        "the whole pipeline on one config: prepare -> init-model -> learn-ids -> assign-ids -> id-report -> "
        "train-generator + evaluate for each of generator.run_tasks; re-running resumes",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmindexer",
        description="Semantic IDs learned by a language model (LMIndexer), on Ray.",
        epilog="Every subcommand takes --config FILE (YAML, see configs/) and key.sub=value overrides.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, sections, help_text) in STAGES.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="config options (override as key.sub=value):\n" + describe(sections),
        )
        p.add_argument("--config", help="YAML config file (defaults apply to keys it leaves out)")
        p.add_argument(
            "--verbose",
            action="store_true",
            help="keep every library's log lines (Ray Data's per-dataset lines, weight loading bars)",
        )
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
        if name == "learn-ids":
            p.add_argument(
                "--phase",
                help="run one phase alone, as POSITION:PHASE with PHASE one of warmup, "
                "continuous, kmeans, joint, assign (e.g. 2:joint)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    quiet_libraries(args.verbose)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"lmindexer: {e}", file=sys.stderr)
        return 2
    fn = STAGES[args.command][0]
    try:
        if args.command in ("prepare", "run"):
            check_input(cfg)  # a missing input fails now, not after Ray's start-up
        if args.command != "id-report":  # the report reads tables on the driver alone
            ensure_ray(cfg.ray)
        result = fn(cfg, args.phase) if getattr(args, "phase", None) else fn(cfg)
    except (ConfigError, BadInputError, FileNotFoundError) as e:
        # the user's to fix (a setting that cannot work, bad or missing data, a step not run yet): one line naming
        # it, no traceback, exit 2 like a bad option; exit 1 stays for the program's own failures
        print(f"lmindexer: {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ray's shutdown at exit takes ~10 s after a Ctrl-C inside one of its calls; a local Ray's processes share
        # this process's fate, so leaving at once loses nothing that a re-run needs
        print(
            f"lmindexer: {args.command} interrupted; finished work is kept, run the same command to resume",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(130)
    if args.command == "run":  # the overview is already on screen; the full JSON goes next to the outputs
        from .paths import RunLayout
        from .storage import filesystem

        path = RunLayout.of(cfg).run_summary
        fs, local = filesystem(path, cfg.storage)
        with fs.open_output_stream(local) as f:
            f.write(json.dumps(result, indent=2, default=str).encode())
        print(f"lmindexer: run finished; the full summary is in {path}")
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
