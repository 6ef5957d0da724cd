"""Every use of Ray's non-public API, behind one door, each with its reason and a fallback to the public API.

The project pins Ray 2.60 (pyproject.toml); these are the 2.60 names. Ray may move or change any of them in a minor
release. Each helper below tries the private name and, where it is missing (ImportError, AttributeError) or where
`LMINDEXER_RAY_PUBLIC=1` asks for it, does the same job with Ray's public API at some cost, which its docstring
names. So a Ray upgrade breaks at most this file, and `tests/test_architecture.py` runs a training run, a group
step and the logging set-up with the public fallbacks (and checks that no other module imports Ray's private names).

What each private use buys, on 2 CPU cores:
- `torch_config`: Ray Train's torch process group set up without importing torch in Ray Train's controller actor
  (about 3 s of a core per run); public: `ray.train.torch.TorchConfig`.
- `Trainer`: a TorchTrainer whose Ctrl-C stops the run at once and raises KeyboardInterrupt in the driver (Ray's own
  handler aborts gracefully and returns, so a command went on to its next step), and which does not start two
  helper actors a run here does not need (about 3 s of a core each); public: `TorchTrainer` as it is.
- `quiet_train_context`: the logger of Ray Train's per-report INFO lines, named by its file's path; public: those
  lines stay.
- `ray_data_default_logging`: Ray Data's own default logging config, to keep it with a quieter console; public:
  `RAY_DATA_LOG_LEVEL=WARNING` (one level for console and file).
- `concat_blocks`: Ray Data's concatenation of blocks whose tensor columns differ in shape (as Ray Data's groupby
  gives them); public: `pyarrow.concat_tables` with type promotion (blocks of one tensor shape only).
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.exceptions import GetTimeoutError
from ray.train.backend import Backend, BackendConfig
from ray.train.torch import TorchTrainer

log = logging.getLogger("lmindexer")
PUBLIC = "LMINDEXER_RAY_PUBLIC"  # "1": every helper takes its public fallback
SHUTDOWN_TIMEOUT_S = 30


def public_only() -> bool:
    return os.environ.get(PUBLIC) == "1"


# ---- Ray Train: the process group (ray.train._internal, ray.train.v2._internal, ray.train.torch.config's _ names)
@dataclass
class ProcessGroupConfig(BackendConfig):
    """`TorchConfig(backend=..., init_method="env")` without torch in the controller: everything that touches torch
    runs in the workers, which import torch anyway. The per-worker steps are Ray's own (`ray.train.torch.config`,
    imported in the worker), so the process group, its environment variables (RANK, LOCAL_RANK, MASTER_ADDR, ...)
    and the shutdown are what `TorchTrainer` gives by default."""

    backend: str = "gloo"
    timeout_s: int = 1800

    @property
    def backend_cls(self):
        return _ProcessGroup

    @property
    def train_func_context(self):
        return _DeviceContext

    @property
    def framework(self):
        from ray.train.v2._internal.util import TrainingFramework

        return TrainingFramework.TORCH

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": "env", "timeout_s": self.timeout_s}


class _DeviceContext:
    """Around the train function in each worker: Ray's context (it sets the worker's default CUDA device)."""

    def __enter__(self):
        from ray.train.torch.config import TorchConfigContextManager

        TorchConfigContextManager().__enter__()

    def __exit__(self, *exc):
        return False


class _ProcessGroup(Backend):
    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config: ProcessGroupConfig):
        from ray.train._internal.utils import get_address_and_port

        addr, port = worker_group.execute_single(0, get_address_and_port)
        size = len(worker_group)
        joins = [worker_group.execute_single_async(i, _join, addr, port, i, size, backend_config) for i in range(size)]
        ray.get(joins)

    def on_shutdown(self, worker_group, backend_config: ProcessGroupConfig):
        try:
            ray.get(worker_group.execute_async(_leave, len(worker_group) > 1), timeout=SHUTDOWN_TIMEOUT_S)
        except GetTimeoutError:
            pass  # as Ray's own: a worker stuck in a collective must not hold the run's end


def _join(addr: str, port: int, rank: int, size: int, cfg: ProcessGroupConfig) -> None:
    """In worker `rank`: the torch distributed environment and the process group (Ray's steps, in order)."""
    from ray.train.torch import config as torch_config

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)
    torch_config._set_torch_distributed_env_vars()
    torch_config._setup_torch_process_group(cfg.backend, rank, size, "env://", cfg.timeout_s)


def _leave(destroy: bool) -> None:
    from ray.train.torch import config as torch_config

    torch_config._shutdown_torch(destroy_process_group=destroy)


def torch_config(backend: str) -> BackendConfig:
    """The process-group config of a TorchTrainer run: ours, or (public) Ray's TorchConfig, which imports torch in
    the controller."""
    private = (
        "ray.train._internal.utils:get_address_and_port",
        "ray.train.v2._internal.util:TrainingFramework",
        "ray.train.torch.config:_setup_torch_process_group",
    )
    if not public_only() and all(_has(name) for name in private):
        return ProcessGroupConfig(backend=backend)
    from ray.train.torch import TorchConfig

    return TorchConfig(backend=backend)


def _has(name: str) -> bool:
    """Whether `module:attribute` imports."""
    import importlib

    module, _, attr = name.partition(":")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


# ---- Ray Train: the trainer (TorchTrainer's private hooks) --------------------------------------------------------
class _Trainer(TorchTrainer):
    """TorchTrainer whose Ctrl-C stops the run and raises KeyboardInterrupt in the driver at once. Checkpoints
    already reported are kept: running the command again resumes."""

    def _create_default_callbacks(self) -> list:
        """Ray Train's callbacks less two helper actors a run here does not need: the dataset manager when the rows
        came in memory (no datasets), and the placement-group cleaner outside Ray Tune. The cleaner frees the
        workers' reserved CPUs if the controller dies without stopping them; a group's reservation otherwise ends
        with the driver's job, which is soon after in a command (the failed fit ends it), but not in a Tune search,
        whose scheduler kills trials."""
        callbacks = super()._create_default_callbacks()
        try:
            from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
            from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
        except ImportError:  # another Ray layout: keep them all
            return callbacks
        drop = () if self.datasets else (DatasetsCallback,)
        if not self.run_config.callbacks:  # no TuneReportCallback: not a Tune trial
            drop += (PlacementGroupCleanerCallback,)
        return [c for c in callbacks if not isinstance(c, drop)]

    def _register_sigint_handler(self, controller) -> None:
        def stop(signum, frame):
            try:
                ray.get(controller.abort.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - the controller may be gone already; stopping is what matters
                pass
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, stop)


def trainer_class() -> type:
    """`_Trainer` where Ray 2.60's hooks exist, else (public) TorchTrainer: Ctrl-C then ends the run gracefully and
    the command goes on, and every helper actor starts."""
    hooks = ("_create_default_callbacks", "_register_sigint_handler")
    if public_only() or not all(hasattr(TorchTrainer, h) for h in hooks):
        return TorchTrainer
    return _Trainer


def quiet_train_context() -> list[str]:
    """Logger names of Ray Train's per-report INFO lines ("Reporting training result", "Checkpoint successfully
    created") beyond the ray.train tree: the v2 context logger is named by its file's path. Public: none."""
    if public_only():
        return []
    try:
        from ray.train.v2._internal.execution import context

        return [context.__file__]
    except ImportError:
        return []


# ---- Ray Data --------------------------------------------------------------------------------------------------
def ray_data_default_logging() -> dict | None:
    """A copy of Ray Data's default logging config (its console handler, its file handler in Ray's session folder,
    its loggers), or None where only the public RAY_DATA_LOG_LEVEL is to be used."""
    import copy

    if public_only():
        return None
    try:
        from ray.data._internal import logging as ray_data_logging

        return copy.deepcopy(ray_data_logging.DEFAULT_CONFIG)
    except (ImportError, AttributeError):
        return None


def configure_ray_data_logging() -> None:
    """Ray Data reads its logging config when it is imported: configure it again after the variable changed."""
    from ray.data._internal import logging as ray_data_logging

    ray_data_logging.configure_logging()


def concat_blocks(parts: list[pa.Table]) -> pa.Table:
    """Ray Data's own block concatenation (it unifies tensor columns of different shapes into variable-shaped
    tensors, as a Ray Data groupby gives them); public: pyarrow's, with type promotion."""
    if not public_only():
        try:
            from ray.data._internal.arrow_ops.transform_pyarrow import concat

            return concat(parts, promote_types=True)
        except ImportError:
            pass
    return pa.concat_tables(parts, promote_options="permissive")
