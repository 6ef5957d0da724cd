"""The inner run of tests/test_architecture.py::test_a_leaked_process_fails_the_run: a test that leaves a process
running when asked to, in a file of its own so that the inner pytest imports nothing heavy."""

import os
import subprocess

import pytest


def test_leaks_a_process_if_asked():
    if os.environ.get("LMINDEXER_LEAK_ON_PURPOSE") != "1":
        pytest.skip("only inside test_a_leaked_process_fails_the_run")
    subprocess.Popen(["sleep", "300"], start_new_session=True)
