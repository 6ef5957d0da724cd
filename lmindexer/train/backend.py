"""Ray Train's torch process group, set up by a controller that never imports torch.

Ray's `TorchConfig` is unpickled in Ray Train's controller actor, and its module imports torch there: about 3 s of
one core per run before any worker may start (measured as an empty fit's start-up on 2 cores). This config does the
same set-up, but everything that touches torch runs in the workers, which import torch anyway: the controller only
sends them functions. The per-worker steps are Ray's own (`ray.train.torch.config`, imported in the worker), so the
process group, its environment variables (RANK, LOCAL_RANK, MASTER_ADDR, ...) and the shutdown are what
`TorchTrainer` gives by default. Ray is pinned to 2.60 (pyproject.toml), the version these private helpers come from.
"""

import os
from dataclasses import dataclass

import ray
from ray.exceptions import GetTimeoutError
from ray.train._internal.utils import get_address_and_port
from ray.train.backend import Backend, BackendConfig
from ray.train.v2._internal.util import TrainingFramework

SHUTDOWN_TIMEOUT_S = 30


@dataclass
class ProcessGroupConfig(BackendConfig):
    """`TorchConfig(backend=..., init_method="env")` without torch in the controller (pass as `torch_config`)."""

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
