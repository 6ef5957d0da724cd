"""The CLI: every subcommand's --help lists every option it reads; config errors exit 2 naming the key."""

import dataclasses

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
