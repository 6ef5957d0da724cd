"""`lmindexer tune` for real: a 3-trial grid over learn-ids on the tiny preset with ASHA, interrupted after its first
trial (Ctrl-C to the command, in its own process) and resumed by the same command; best.yaml is a complete config."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ctrl_c_able, this_ray

from lmindexer.config import ConfigError, load_config
from lmindexer.tune import search_space, tune_search

pytestmark = pytest.mark.slow
RAY_DASHBOARD = True  # the trials' placement-group cleaner asks the dashboard's State API
ROOT = Path(__file__).resolve().parents[1]


def settings(out):
    # one good learning rate between two that barely learn, in that order: whichever trial finishes before the
    # interruption, ASHA has a better rival on record when the last bad one reaches the first rung, and stops it
    return [
        f"output_dir={out}",
        "data.input=builtin:demo",
        "demo.num_docs=120",
        "model.vocab_size=500",
        "indexer.num_positions=1",
        "indexer.codebook_size=4",
        "indexer.continuous_epochs=0",
        "indexer.joint_epochs=3",
        "indexer.batch_size=16",
        "train.log_every_steps=0",
        "train.num_workers=1",  # a trial's Ray Train run with one process: what is tested is Tune around it
        "tune.space={indexer.lr: [grid, 1.0e-7, 1.0e-2, 3.0e-7]}",
        "tune.num_samples=1",
        "tune.max_concurrent=1",
        "tune.grace_period=1",
        "tune.reduction_factor=2",
    ]


def finished_trials(experiment: Path) -> dict:
    """trial folder -> how many final reports (objective + trial_seconds) it wrote."""
    out = {}
    for result in experiment.glob("*/result.json"):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        out[result.parent.name] = sum("trial_seconds" in x for x in lines)
    return {k: v for k, v in out.items() if v}


def test_search_space_checks_keys_and_kinds():
    space = search_space({"indexer.lr": ["loguniform", 1e-4, 1e-2], "indexer.codebook_size": ["choice", 8, 16]})
    assert set(space) == {"indexer.lr", "indexer.codebook_size"}
    for bad, message in [
        ({"indexer.nope": ["choice", 1]}, "indexer.nope"),
        ({"indexer.lr": ["normal", 0, 1]}, "kind one of"),
        ({"indexer.codebook_size": ["choice", "many"]}, "expected int"),
        ({"model.preset": ["choice", "tiny"]}, "fixed"),
        ({"indexer.lr": ["uniform", 1e-3]}, "low and a high"),
    ]:
        with pytest.raises(ConfigError, match=message):
            search_space(bad)


def test_asha_search_stops_weak_trials_resumes_and_writes_a_best_config(ray_session, tmp_path):
    experiment = tmp_path / "tune"
    env = {**this_ray(), "PYTHONPATH": str(ROOT)}
    log = tmp_path / "tune.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmindexer.cli", "tune", *settings(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=ctrl_c_able,
    )
    deadline = time.time() + 600
    while not finished_trials(experiment) and time.time() < deadline and proc.poll() is None:
        time.sleep(2)
    assert finished_trials(experiment), "the first trial never finished"
    os.killpg(proc.pid, signal.SIGINT)  # the user's Ctrl-C
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = finished_trials(experiment)
    assert 1 <= len(before) < 3
    # the documented exit: 130 and the one-line message; the partial table is written, but no best.yaml
    assert proc.returncode == 130 and "tune interrupted" in log.read_text(), log.read_text()[-3000:]
    assert (experiment / "trials.md").exists() and not (experiment / "best.yaml").exists()

    summary = tune_search(load_config(overrides=settings(tmp_path)))  # the same command again: resumes
    assert summary["trials"] == 3 and summary["errors"] == 0
    assert summary["stopped_early"] >= 1
    after = finished_trials(experiment)
    assert all(after[name] == 1 for name in before)  # finished trials were not run again
    with open(summary["table"].replace(".md", ".csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["status"] == "done" and float(rows[0]["indexer.lr"]) == 1e-2
    assert os.path.exists(summary["plot"])
    best = load_config(summary["best_config"])  # a complete config: learn-ids takes it as is
    expected = load_config(overrides=settings(tmp_path) + ["indexer.lr=1.0e-2"])
    assert best.indexer == expected.indexer and best.model == expected.model and best.demo == expected.demo
