"""The CLI: every subcommand's --help lists every option it reads; config errors exit 2 naming the key."""

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmindexer.cli import STAGES, build_parser, main
from lmindexer.config import Config


@pytest.mark.parametrize("stage", list(STAGES))
def test_help_lists_every_option(stage, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([stage, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    root = Config()
    for section in STAGES[stage][1]:
        obj = getattr(root, section) if section else root
        for f in dataclasses.fields(obj):
            if not dataclasses.is_dataclass(getattr(obj, f.name)):
                assert f"{section + '.' if section else ''}{f.name}=" in text


# each command's stage entry (the run command sequences them; tune and serve work over whole configs)
ENTRIES = {
    "prepare": "lmindexer.stages.prepare:prepare",
    "init-model": "lmindexer.stages.init_model:init_model",
    "learn-ids": "lmindexer.stages.learn_ids:learn_ids",
    "assign-ids": "lmindexer.stages.assign_ids:assign_ids",
    "baseline-ids": "lmindexer.stages.baseline_ids:baseline_ids",
    "id-report": "lmindexer.stages.id_report:id_report",
    "train-generator": "lmindexer.stages.train_generator:train_generator",
    "evaluate": "lmindexer.stages.evaluate:evaluate",
}


def test_the_stages_folder_holds_one_module_per_command():
    """lmindexer/stages/ reads as the pipeline: one module per command, named after it, whose entry is too."""
    from lmindexer.cli import STAGES

    commands = set(STAGES) - {"run", "tune", "serve"}  # those three work over whole configs, not one stage
    folder = Path(__file__).resolve().parents[1] / "lmindexer" / "stages"
    assert {p.stem for p in folder.glob("*.py")} - {"__init__"} == {c.replace("-", "_") for c in commands}
    assert set(ENTRIES) == commands
    for command, entry in ENTRIES.items():
        name = command.replace("-", "_")
        assert entry == f"lmindexer.stages.{name}:{name}"


@pytest.mark.parametrize("stage", sorted(ENTRIES))
def test_help_shows_every_section_the_stage_reads(stage):
    """The sections in a command's --help include every settings section its stage entry takes (by its signature)."""
    import importlib
    import inspect

    root = Config()
    sections = [f.name for f in dataclasses.fields(root) if dataclasses.is_dataclass(getattr(root, f.name))]
    section_of = {type(getattr(root, name)).__name__: name for name in sections}
    module, name = ENTRIES[stage].split(":")
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    read = {section_of[p.annotation] for p in params if p.annotation in section_of}
    assert read and read <= set(STAGES[stage][1]), (read, STAGES[stage][1])
    assert {"ray", "storage"} <= set(STAGES[stage][1])  # the RunContext's sections


def test_bad_override_exits_2_naming_the_key(capsys):
    assert main(["prepare", "data.nope=1"]) == 2
    assert "'data.nope'" in capsys.readouterr().err


def test_a_missing_input_fails_at_once_in_one_line(tmp_path, capsys):
    """No Ray start-up first, no traceback: the data's fault gets one line and exit 2, as a config error does."""
    assert main(["prepare", f"output_dir={tmp_path}", f"data.input={tmp_path}/nope.jsonl"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lmindexer: prepare: input not found: {tmp_path}/nope.jsonl"]
    import ray

    assert not ray.is_initialized()


def test_quiet_libraries_filters_at_the_source():
    """Without --verbose: Ray Data's console shows warnings and errors but not its progress-bar notice, Ray's
    deprecated-option warning is filtered for every Ray process started from here, and a --verbose run is untouched
    (each in a fresh interpreter: the settings are process-wide)."""
    probe = (
        "import logging, os, sys\n"
        "from lmindexer.runtime import quiet_libraries\n"
        "quiet_libraries(verbose=sys.argv[1] == 'verbose')\n"
        "progress = logging.getLogger('ray.data._internal.progress')\n"
        "console = [h for h in logging.getLogger('ray.data').handlers if h.name == 'console']\n"
        "print(progress.getEffectiveLevel(), console[0].level if console else None,\n"
        "      'exclude_resources' in os.environ.get('PYTHONWARNINGS', ''), os.environ.get('LMINDEXER_QUIET'))\n"
    )
    set_here = ("RAY_DATA_LOG_LEVEL", "RAY_DATA_LOGGING_CONFIG", "PYTHONWARNINGS", "LMINDEXER_QUIET")  # (an earlier
    env = {k: v for k, v in os.environ.items() if k not in set_here}  # in-process CLI test sets them in this process)
    probes = [  # side by side: each spends its seconds importing Ray and torch
        subprocess.Popen([sys.executable, "-c", probe, mode], stdout=subprocess.PIPE, text=True, env=env)
        for mode in ("quiet", "verbose")
    ]
    quiet, verbose = (p.communicate(timeout=120)[0].split() for p in probes)
    assert [p.returncode for p in probes] == [0, 0]
    assert quiet == [str(logging.ERROR), str(logging.WARNING), "True", "1"]
    assert verbose[2:] == ["False", "None"] and verbose[0] != str(logging.ERROR)
