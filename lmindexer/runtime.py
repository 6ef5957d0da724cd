"""Ray start-up shared by the CLI, jobs/ and tests."""

from __future__ import annotations

import contextlib
import logging
import os

import ray
import ray.data

from . import ray_private
from .config import RayConfig

log = logging.getLogger("lmindexer")
QUIET = "LMINDEXER_QUIET"  # set by quiet_libraries: Ray Train's own INFO lines are cut too (train.loop.fit)


def quiet() -> bool:
    return os.environ.get(QUIET) == "1"


_quieted = False  # quiet_libraries ran in this process (a command's choice); else ensure_ray runs it


def quiet_libraries(verbose: bool = False) -> None:
    """Before Ray starts: unless `verbose`, library chatter is cut at its source in this process and in every Ray
    process started from it (they inherit the environment): Ray Data's per-dataset INFO lines (3 per epoch of every
    fit) and Hugging Face's weight loading/saving progress bars. Warnings stay."""
    import sys

    global _quieted
    _quieted = True
    if not sys.stdout.isatty():  # no ANSI colour codes in logs and pipes (Ray colours its worker-line prefixes)
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if verbose:
        return
    os.environ.setdefault(QUIET, "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "RAY_DATA_LOG_LEVEL" not in os.environ:  # the variable would override every level of the config below
        try:  # Ray Data's own default config (ray_private): without it, one level for console and file
            if "RAY_DATA_LOGGING_CONFIG" not in os.environ:  # the user's own config stays
                os.environ["RAY_DATA_LOGGING_CONFIG"] = ray_data_logging_config()
            ray_private.configure_ray_data_logging()  # this process configured Ray Data's loggers at its import
        except (ImportError, AttributeError, KeyError, LookupError):
            os.environ.pop("RAY_DATA_LOGGING_CONFIG", None)
            os.environ["RAY_DATA_LOG_LEVEL"] = "WARNING"
    # Ray Train's dataset actor sets a deprecated Ray Data option on every fit (a warning in every run's log)
    deprecated = "ignore:`ExecutionOptions.exclude_resources` is deprecated"
    filters = os.environ.get("PYTHONWARNINGS", "")
    if deprecated not in filters:
        os.environ["PYTHONWARNINGS"] = ",".join(w for w in (filters, deprecated) if w)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers read the variable above when it was imported


def ray_data_logging_config() -> str:
    """A Ray Data logging config file (Ray's own default, in a temporary folder) whose console shows warnings and
    errors only, and not the warning each Ray Data process gives that progress bars are off (a line per fit); the
    ray-data.log file in Ray's session folder keeps every other line, as by default."""
    import tempfile

    import yaml

    config = ray_private.ray_data_default_logging()
    if config is None:
        raise LookupError("Ray Data's default logging config is not available")
    config["handlers"]["console"]["level"] = "WARNING"
    config["loggers"]["ray.data._internal.progress"] = {
        "level": "ERROR",
        "handlers": list(config["loggers"]["ray.data"]["handlers"]),
        "propagate": False,
    }
    path = os.path.join(tempfile.gettempdir(), f"lmindexer-ray-data-logging-{os.getuid()}.yaml")
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), suffix=".yaml", delete=False) as f:
        yaml.safe_dump(config, f)
    os.replace(f.name, path)  # whole, even when two commands start at once
    return path


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def data_context(settings: RayConfig) -> None:
    """This process's Ray Data settings (a dataset carries them to the tasks and actors that run it): the shuffle
    and the parquet reader. Every process that builds datasets sets them: the driver, and each Tune trial."""
    context = ray.data.DataContext.get_current()
    context.shuffle_strategy = ray.data.context.ShuffleStrategy(settings.shuffle)
    context.use_datasource_v2 = settings.parquet_v2


@contextlib.contextmanager
def shuffle_strategy(name: str, input_batch_bytes: int | None = None):
    """Ray Data's shuffle for the datasets read inside the block (this process's DataContext; the configured one
    again after it). A dataset copies the context when it is read and its transforms share that copy, so a
    dataset read before the block keeps the configured shuffle. `input_batch_bytes`: shuffle_v2's map side
    coalesces its input blocks up to this many bytes per task (Ray's default, 1 GiB, hands a whole column of a
    million rows to one task)."""
    context = ray.data.DataContext.get_current()
    before = context.shuffle_strategy, context.shuffle_input_batch_bytes
    context.shuffle_strategy = ray.data.context.ShuffleStrategy(name)
    if input_batch_bytes is not None:
        context.shuffle_input_batch_bytes = input_batch_bytes
    try:
        yield
    finally:
        context.shuffle_strategy, context.shuffle_input_batch_bytes = before


def ensure_ray(settings: RayConfig) -> None:
    """Connect to ray.address (of the `settings`), or start a local Ray with more logical CPUs than cores; set Ray
    Data's shuffle and parquet reader (the hash shuffle's aggregator actors and the V2 reader's footer actors cost
    seconds per step on small machines).

    On small machines Train workers and Ray Data tasks must run side by side, or Ray Data never gets scheduled.
    A local Ray serves its dashboard (127.0.0.1:8265, or the next free port): Ray Train's placement-group cleaner
    (started in Ray Tune trials, see ray_private._Trainer) asks the State API, which lives there, and without it logs
    a warning every second of every trial.
    """
    data_context(settings)
    if ray.is_initialized():
        return
    if not _quieted:  # a bench or a user's script: the same quiet start as the commands
        quiet_libraries()
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray Train's controller looks at its workers every 2 s by default: the end of every training run waited for
    # that poll, and so did every report after the first (its queue holds one). The driver passes it to the
    # controller, on a local Ray or a cluster.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    address = settings.address or os.environ.get("RAY_ADDRESS", "")  # `ray job submit` sets RAY_ADDRESS
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    local = {"address": "local", "num_cpus": settings.num_cpus or 2 * (os.cpu_count() or 1)}
    if quiet():  # Ray's start-up lines (one with colour codes, one that token authentication is on) become one
        local["logging_level"] = logging.WARNING
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    import torch  # here, not at the CLI's start-up (1.3 s)

    if not torch.cuda.is_available():  # a local Ray on a machine without GPUs: DeepSpeed then need not guess (and
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # warn so from every worker); workers inherit it
    # Ray Train starts a preemption watcher actor (one more process per training run, which logs an ERROR line about
    # its constructor arguments) that watches for node drains: a local Ray has no node to lose. Clusters keep it.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if settings.dashboard:
        try:
            context = ray.init(**local, include_dashboard=True, dashboard_host="127.0.0.1")
            if quiet():  # Ray's own line says so otherwise
                log.info("local Ray started; its dashboard is at http://%s", context.dashboard_url or "127.0.0.1:8265")
            return
        except Exception as err:  # e.g. "The current node timed out during startup" on a loaded machine
            ray.shutdown()
            log.warning(
                "local Ray did not start with its dashboard (%s); starting it without (ray.dashboard=false "
                "skips this try)",
                str(err).splitlines()[0][:200],
            )
    ray.init(**local, include_dashboard=False)


# rows of one group-by partition past which a larger input gets more partitions: under shuffle_v2 one reduce task
# holds its partition whole (and the group function's numpy copy of it), so this bounds a worker's memory
PARTITION_ROWS = 50_000


def partitions_for(cpus: float, rows: int = 0) -> int:
    """Group-by partitions for `rows` rows on `cpus` CPUs: two per CPU (Ray's default of 200 crawls on small
    machines), and more once a partition would pass PARTITION_ROWS rows."""
    return max(2, int(cpus) * 2, -(-rows // PARTITION_ROWS))


def shuffle_partitions(rows: int = 0) -> int:
    """partitions_for this Ray cluster's CPUs (rows: the group-by's input rows, where known). Ray applies the
    number to the hash shuffle (shuffle_v2) only; the sort shuffle picks its own."""
    return partitions_for(ray.cluster_resources().get("CPU", 1), rows)


def worker_threads(cpus_per_worker: float, workers: int, cores: int) -> int:
    """torch threads of a CPU worker or inference actor: its whole reserved CPUs, or for a fractional reservation its
    share of the machine's cores (torch's default, every core per worker, oversubscribes the CPUs when workers share
    a machine; Ray's, one thread for a fractional CPU, leaves cores idle when fewer workers than cores run)."""
    if cpus_per_worker >= 1:
        return int(cpus_per_worker)
    return max(1, cores // max(1, workers))


class Progress:
    """Logs how much of a long step is done, its rate and the time left, at most every `every` seconds and once at
    the end of a step that lasted that long: `Progress("assign-ids codes", rows).update(n)` after each batch of n."""

    def __init__(self, what: str, total: int, every: float = 30.0, clock=None):
        import time

        self.what, self.total, self.every, self.done = what, total, every, 0
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f} s left" if left != float("inf") else "time left unknown"
        share = 100 * self.done / max(self.total, 1)
        return f"{self.what}: {self.done:,} of {self.total:,} ({share:.0f}%), {rate:,.0f}/s, {eta}"

    def update(self, n: int) -> None:
        """Count n more; log when `every` seconds passed since the last line, and at the end of a step that lasted
        that long (a short step stays quiet)."""
        self.done += n
        now = self.clock()
        if now - self.last >= self.every or (self.done >= self.total and now - self.start >= self.every):
            self.last = now
            log.info(self.line())
