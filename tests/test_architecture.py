"""The layer contracts hold (import-linter, configured in pyproject.toml), every training task implements the
training-task Protocol the shared Ray Train loop calls, and Ray's non-public API is used behind one door
(lmindexer/ray_private.py) whose public fallbacks work."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmindexer.downstream.generator_training import GeneratorTask
from lmindexer.downstream.seqrec_training import SeqRecTask
from lmindexer.ids.indexer_task import IdLearningTask
from lmindexer.ids.rqvae_training import RqvaeTask
from lmindexer.models.seqrec import SeqRecConfig
from lmindexer.paths import RunContext
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


# every stage's entry: its own settings section first, then the RunContext
OWN_SETTINGS = {
    "lmindexer.stages.prepare:prepare": ("DataConfig", "RunContext"),
    "lmindexer.stages.prepare:prepare_once": ("DataConfig", "RunContext"),
    "lmindexer.stages.init_model:init_model": ("ModelConfig", "RunContext"),
    "lmindexer.stages.id_report:id_report": ("ReportConfig", "RunContext"),
    "lmindexer.stages.assign_ids:assign_ids": ("AssignConfig", "RunContext"),
    "lmindexer.stages.assign_ids:finished_table": ("AssignConfig", "RunContext"),
    "lmindexer.stages.learn_ids:learn_ids": ("IndexerConfig", "RunContext"),
    "lmindexer.stages.baseline_ids:baseline_ids": ("BaselineConfig", "RunContext"),
    "lmindexer.stages.train_generator:train_generator": ("GeneratorConfig", "RunContext"),
    "lmindexer.stages.evaluate:evaluate": ("EvaluateConfig", "RunContext"),
}


# the edges, where a whole Config is split into a stage's settings and its RunContext: the command line, the pipeline
# that sequences stages, Tune (a search over whole configs), Serve (a command over a finished run), the config itself
EDGES = {"cli.py", "pipeline.py", "tune.py", "serve.py", "config.py", "paths.py"}


def test_only_the_edges_take_the_whole_config():
    """No function below the edges has a parameter annotated `Config` or named `cfg` (other than a section's)."""
    found = []
    for path in sorted((ROOT / "lmindexer").rglob("*.py")):
        if path.relative_to(ROOT / "lmindexer").as_posix() in EDGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for arg in node.args.args + node.args.kwonlyargs:
                hint = ast.unparse(arg.annotation) if arg.annotation else ""
                if hint == "Config" or (arg.arg == "cfg" and not hint.endswith("Config")):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg}: {hint or '?'})")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("entry", sorted(OWN_SETTINGS))
def test_a_stage_gets_its_own_settings_and_a_run_context(entry):
    """No whole Config in the entry's signature: its first two parameters are its section and the run context."""
    import importlib
    import inspect

    module, name = entry.split(":")
    params = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters.values())
    assert tuple(p.annotation for p in params[:2]) == OWN_SETTINGS[entry]
    assert all(p.annotation != "Config" for p in params), [p.annotation for p in params]


PRIVATE_HOOKS = {"_create_default_callbacks", "_register_sigint_handler"}


def private_ray_uses(path: Path) -> list[str]:
    """Imports of Ray's private modules or names, and overrides of TorchTrainer's private hooks, in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray"):
            private = "._internal" in node.module or "._private" in node.module
            private |= any(a.name.startswith("_") for a in node.names)
            if private:
                found.append(f"{path.name}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [
                f"{path.name}:{node.lineno} import {a.name}"
                for a in node.names
                if a.name.startswith("ray") and ("._internal" in a.name or "._private" in a.name)
            ]
        elif isinstance(node, ast.FunctionDef) and node.name in PRIVATE_HOOKS:
            found.append(f"{path.name}:{node.lineno} def {node.name}")
    return found


def test_rays_private_api_is_used_in_one_module_only():
    door = ROOT / "lmindexer" / "ray_private.py"
    elsewhere = [u for p in sorted((ROOT / "lmindexer").rglob("*.py")) if p != door for u in private_ray_uses(p)]
    assert elsewhere == [], "Ray's private API outside lmindexer/ray_private.py: " + "; ".join(elsewhere)
    assert private_ray_uses(door), "the door's check finds nothing: it would not see a private use either"


def test_the_public_fallbacks_train_group_and_configure_logging(tmp_path, monkeypatch, ray_session):
    """With LMINDEXER_RAY_PUBLIC=1 every helper takes Ray's public API: a SeqRec trains on Ray Train with the public
    TorchTrainer and TorchConfig, an in-process group step concatenates with pyarrow, and Ray Data's logging falls
    back to a level. A Ray upgrade that removes a private name leaves these paths."""
    import pyarrow as pa
    from ray.train.torch import TorchConfig, TorchTrainer

    from lmindexer import ray_private
    from lmindexer.config import load_config
    from lmindexer.downstream.seqrec_training import SeqRecSettings, fit_seqrec
    from lmindexer.raydata import map_groups
    from lmindexer.runtime import ray_data_logging_config

    monkeypatch.setenv(ray_private.PUBLIC, "1")
    assert ray_private.trainer_class() is TorchTrainer and isinstance(ray_private.torch_config("gloo"), TorchConfig)
    assert ray_private.quiet_train_context() == [] and ray_private.ray_data_default_logging() is None
    with pytest.raises(LookupError):
        ray_data_logging_config()
    table = pa.table({"key": [2, 1, 2], "x": [1.0, 2.0, 3.0]})
    grouped = map_groups(table, "key", lambda g: {"key": g["key"][:1], "total": [g["x"].sum()]})
    assert grouped.to_pydict() == {"key": [1, 2], "total": [2.0, 4.0]}
    cfg = load_config(overrides=[f"output_dir={tmp_path}", "train.num_workers=1", "train.log_every_steps=0"])
    histories = [[(s + i) % 6 + 1 for i in range(5)] for s in range(60)]
    settings = SeqRecSettings(epochs=1, batch_size=16, max_len=8, dim=16, layers=1, heads=1)
    model = fit_seqrec(cfg.train, RunContext.of(cfg), str(tmp_path / "seqrec"), histories, 6, settings)
    assert not model.training and os.path.exists(tmp_path / "seqrec" / "seqrec.pt")
    monkeypatch.delenv(ray_private.PUBLIC)
    assert ray_private.trainer_class() is not TorchTrainer  # Ray 2.60's hooks are there: the private path is taken


def test_a_leaked_process_fails_the_run():
    """conftest's session-end check: a process a test starts and leaves running fails the whole run, and is
    killed and named (the inner run is tests/test_leak_on_purpose.py, which leaks only when asked to)."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_leak_on_purpose.py"],
        cwd=ROOT,
        env={**os.environ, "LMINDEXER_LEAK_ON_PURPOSE": "1", "LMINDEXER_TESTS": "fast", "LMINDEXER_LEAK_GRACE_S": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and "1 passed" in run.stdout, run.stdout[-2000:]
    assert "outlived them" in run.stdout and "sleep 300" in run.stdout


BENCH_HELPERS = {"__init__", "provenance", "shared_data", "results"}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "bench").glob("*.py")))
def test_every_bench_imports_and_names_its_command(name):
    """A bench is run rarely and by hand: at least every one imports, and its docstring says how to run it."""
    import importlib

    module = importlib.import_module(f"bench.{name}")
    if name not in BENCH_HELPERS:
        assert f"bench.{name}" in (module.__doc__ or "") or f"bench/{name}" in (module.__doc__ or ""), name
