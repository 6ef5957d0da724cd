"""A real local Ray per test module (small CPU count), and paths to shared data."""

import os
import signal
import subprocess
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Train's controller looks at its workers every 2 s by default, and a run's end and each checkpoint report wait for
# that look: ~2 s of a trivial 2-worker run's 10 here, and the tests start about forty runs; polling every 0.25 s
# costs the controller little (one status call per worker)
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# tests/test_storage.py talks to a loopback S3 server (moto), which takes any key; Ray workers inherit these
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

# every process the tests start (Ray's included: the raylet and its workers inherit it) carries this run's mark, so
# that the session's end can find any still alive, whoever its parent is by then
RUN_MARK = f"LMINDEXER_TEST_RUN={os.getpid()}"
os.environ["LMINDEXER_TEST_RUN"] = str(os.getpid())

import pytest  # noqa: E402
import ray  # noqa: E402

from lmindexer.config import load_config  # noqa: E402
from lmindexer.runtime import ensure_ray  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def ctrl_c_able() -> None:
    """preexec_fn of a command a test interrupts: a shell without job control starts background jobs with SIGINT
    ignored, and a child inherits that, so the test's Ctrl-C would go unheard (seen with `make test &`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_at_line(args: list, marker: str, timeout: float = 120, **popen) -> tuple[int, str, float | None]:
    """Run a command, Ctrl-C it when a line of its output contains `marker`, and wait for it to end: (exit code,
    its whole output, seconds from the Ctrl-C to its end, or None if the marker never came)."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=ctrl_c_able, **popen
    )
    lines, sent = [], None
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            proc.send_signal(signal.SIGINT)
            sent = time.time()
            break
    rest, _ = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(lines) + rest, None if sent is None else time.time() - sent


def this_ray() -> dict:
    """The environment of a command a test runs beside its own Ray: the command joins that Ray. Started on its own,
    it would bring up a second local Ray on the same cores, and the two slow each other several-fold (a learn-ids
    that reached its first checkpoint in about a minute alone did not in 240 s beside the idle Ray of its test)."""
    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


def shared_data(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"shared data not present at {path} (only on the project's machines)")
    return path


@pytest.fixture(scope="module")
def ray_session(request):
    """The module's local Ray, without the dashboard (seconds of start-up each) unless the module sets
    RAY_DASHBOARD = True: Ray Tune's trials need it (their placement-group cleaner asks its State API)."""
    dashboard = bool(getattr(request.module, "RAY_DASHBOARD", False))
    ensure_ray(load_config(overrides=["ray.num_cpus=4", f"ray.dashboard={str(dashboard).lower()}"]).ray)
    yield


@pytest.fixture(scope="module", autouse=True)
def fresh_ray_per_module():
    """Each test module ends its local Ray, whoever started it: one Ray kept for the whole run (~40 min, hundreds
    of pipelines, other tests' clusters started and killed beside it) once stopped delivering an actor's ALIVE
    notice to the driver, and the next Ray Data actor pool waited for it forever (seen in CI and on a fresh clone)."""
    yield
    if ray.is_initialized():
        ray.shutdown()


FAST = os.environ.get("LMINDEXER_TESTS") == "fast"  # `make test-fast`: the tests that need no Ray, in seconds


def pytest_collection_modifyitems(config, items):
    """In the fast tier, a test that asks for the module's Ray is skipped before it runs."""
    if not FAST:
        return
    skip = pytest.mark.skip(reason="starts Ray: in `make test`, not the fast tier")
    for item in items:
        if {"ray_session", "cluster"} & set(getattr(item, "fixturenames", ())):  # cluster: `ray start` nodes
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_ray_in_the_fast_tier(monkeypatch):
    """In the fast tier, a test that starts Ray on its own (through a command's code) is skipped where it would."""
    if FAST:

        def refuse(*args, **kwargs):
            pytest.skip("starts Ray: in `make test`, not the fast tier")

        monkeypatch.setattr(ray, "init", refuse)
    yield


def processes_marked(mark: str = RUN_MARK) -> dict[int, str]:
    """{pid: command line} of the live processes whose environment holds `mark`, this one and its ancestors aside."""
    mine = {os.getpid(), os.getppid()}
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark.encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie holds no memory; its parent reaps it
                    continue
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if "multiprocessing.resource_tracker" in cmd or "multiprocessing.forkserver" in cmd:
            continue  # Python's own helpers of this process: they end with it
        found[int(entry)] = cmd
    return found


def pytest_sessionfinish(session, exitstatus):
    """The run fails when a process the tests started is still alive at the end (after Ray's own shutdown had 15 s);
    those processes are killed and named."""
    if ray.is_initialized():
        ray.shutdown()
    deadline = time.time() + float(os.environ.get("LMINDEXER_LEAK_GRACE_S", "15"))
    left = processes_marked()
    while left and time.time() < deadline:
        time.sleep(1)
        left = processes_marked()
    if not left or not os.path.isdir("/proc"):
        return
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    names = "\n".join(f"  {pid}: {cmd[:200]}" for pid, cmd in sorted(left.items()))
    session.config.get_terminal_writer().line(f"\n{len(left)} process(es) the tests started outlived them:\n{names}")
    session.exitstatus = 1
