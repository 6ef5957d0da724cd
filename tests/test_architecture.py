"""The layer contracts hold (import-linter, configured in pyproject.toml) and every training task implements the
training-task Protocol the shared Ray Train loop calls."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmindexer.downstream.seqrec import SeqRecTask
from lmindexer.downstream.train import GeneratorTask
from lmindexer.ids.rqvae import RqvaeTask
from lmindexer.ids.task import IdLearningTask
from lmindexer.models.seqrec import SeqRecConfig
from lmindexer.train.task import TrainingTask

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contracts_are_kept():
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("import-linter is not installed (the [dev] extra)")
    run = subprocess.run([tool], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]


def test_every_training_task_implements_the_protocol():
    tasks = [
        IdLearningTask("init", "out", "joint", 1, 1, 1e-3, 8, 0.1, {}),
        GeneratorTask("init", "out", "generator", 1, 1e-3, 8),
        RqvaeTask({}, "out", None, 1, 1e-3, 8),
        SeqRecTask(SeqRecConfig(items=5, rows=5), np.arange(5)[:, None], "out", 1, 1e-3, 8),
    ]
    for task in tasks:
        assert isinstance(task, TrainingTask), type(task).__name__
        assert task.lr_lambda() is None or callable(task.lr_lambda())
