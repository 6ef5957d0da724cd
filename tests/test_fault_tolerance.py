"""Runs survive interruptions: a stopped learn-ids resumes from its last checkpoint, and a killed worker is replaced
and training goes on from the last checkpoint."""

import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import ctrl_c_able, ctrl_c_at_line, this_ray
from test_learn_ids import config, corpus  # noqa: F401  (the shared corpus fixture)

from lmindexer.pipeline import learn

pytestmark = pytest.mark.slow
REGISTERED = "checkpoint_manager_snapshot.json"  # written once the controller has registered a checkpoint


def wait_for(pattern: str, timeout: float = 240) -> None:
    end = time.time() + timeout
    while not glob.glob(pattern):
        if time.time() > end:
            raise TimeoutError(f"nothing matched {pattern} in {timeout}s")
        time.sleep(0.2)


def test_stopped_run_resumes_from_its_checkpoint(corpus, tmp_path):  # noqa: F811
    base, backbone = corpus
    out = tmp_path / "stop"
    args = [
        sys.executable,
        "-m",
        "lmindexer.cli",
        "learn-ids",
        "--config",
        "configs/quickstart.yaml",
        f"output_dir={out}",
        f"data.output={base}/corpus",
        f"model.name_or_path={backbone}",
        "indexer.num_positions=1",
        "indexer.codebook_size=8",
        "indexer.batch_size=8",
        # 4 epochs of 30 steps per worker: the first checkpoint registers at step 10, far from the phase's end (with one
        # epoch a fast run once finished the phase before the Ctrl-C reached it, and the re-run had nothing to resume)
        "indexer.continuous_epochs=4",
        "indexer.joint_epochs=0",
        "train.checkpoint_every_steps=10",
        "train.log_every_steps=0",
    ]
    env = this_ray()
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_able, env=env
    )
    wait_for(f"{out}/ray/learn-ids/{REGISTERED}")
    first.send_signal(signal.SIGINT)
    try:
        log1, _ = first.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        first.kill()
        log1, _ = first.communicate()
    assert first.returncode == 130, log1[-3000:]  # Ctrl-C inside Ray Train: the documented exit and message
    assert "learn-ids interrupted; finished work is kept" in log1
    assert not os.path.exists(out / "indexer")
    # the re-run resumes the fit and finishes its phase; a Ctrl-C once k-means has begun (in the same Ray Train run,
    # rank 0's own torch work) stops it at once too
    code, log2, seconds = ctrl_c_at_line(args, "k-means over", env=env)
    assert seconds is not None, log2[-3000:]  # the re-run reached k-means
    assert code == 130 and "learn-ids interrupted" in log2, log2[-3000:]
    assert seconds < 30, f"Ctrl-C took {seconds:.0f}s"
    assert "[learn-ids-p1-continuous] resumed from checkpoint" in log2
    third = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, env=env)
    assert third.returncode == 0, third.stdout[-5000:]
    # the resume says what it kept and where it goes on (k-means and the assignment of 480 documents, in the same Ray
    # Train run, may have finished before the signal reached it)
    kept = r"finished step\(s\) kept \(1:continuous(, 1:kmeans)?(, 1:assign)?\), next: (1:kmeans|1:assign|nothing)"
    assert re.search(kept, third.stdout), third.stdout[-3000:]
    assert os.path.exists(out / "indexer" / "indexer.json")


def kill_a_worker_after_first_checkpoint(pattern: str, killed: list) -> None:
    """SIGKILL one Ray Train worker of this test's own Ray (a descendant of this process: the local Ray started
    here), never another run's on the same machine."""
    wait_for(pattern)
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if any("RayTrainWorker" in part for part in cmdline):
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)
            return


def test_killed_worker_is_replaced_and_training_continues(corpus, tmp_path):  # noqa: F811
    out = tmp_path / "kill"
    cfg = config(
        corpus,
        out,
        "indexer.num_positions=1",
        "indexer.batch_size=8",
        "indexer.continuous_epochs=2",
        "indexer.joint_epochs=0",
        "train.checkpoint_every_steps=10",
        "train.max_failures=3",
        "train.engine=deepspeed",  # resumes from a DeepSpeed checkpoint (the stopped run above: the CPU default, DDP)
    )
    killed: list = []
    killer = threading.Thread(
        target=kill_a_worker_after_first_checkpoint,
        args=(f"{out}/ray/learn-ids/{REGISTERED}", killed),
        daemon=True,
    )
    killer.start()
    summary = learn(cfg)
    killer.join(timeout=5)
    assert killed, "no Ray Train worker process was found to kill"
    history = summary["steps"]["1:continuous"]["epochs"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["resumes"] >= 1
    assert summary["positions_done"] == 1
