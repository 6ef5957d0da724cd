"""One interface over DeepSpeed (ZeRO 0-3, bf16) and plain DDP: forward, step, save, load, full weights."""

from __future__ import annotations

import builtins
import contextlib
import math
import os

import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..runtime import quiet


def use_bf16(cfg: TrainConfig) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and cfg.use_gpu)


def lr_multiplier(step: int, total: int, warmup: float, kind: str) -> float:
    """Learning-rate factor at optimizer step `step` of `total`: a linear warm-up over the first `warmup` share of
    the steps, then constant, linear decay to 0 or cosine decay to 0."""
    if kind == "constant" or total <= 0:
        return 1.0
    ramp = max(1, int(total * warmup))
    if step < ramp:
        return (step + 1) / ramp
    left = max(0.0, 1 - (step - ramp) / max(1, total - ramp))
    return left if kind == "linear" else 0.5 * (1 - math.cos(math.pi * left))


def forward_precision(engine: str, bf16: bool, device) -> contextlib.AbstractContextManager:
    """The forward pass's precision context. DeepSpeed keeps fp32 master weights itself (its bf16 optimizer); DDP
    keeps fp32 weights and AdamW state and runs the forward in bf16 autocast, so small updates are not lost to bf16
    rounding (a bf16 weight of 0.5 never moves at lr 1e-4)."""
    if engine == "deepspeed" or not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def skip_shm_comm_op(deepspeed) -> None:
    """On CPU, DeepSpeed's communication backend compiles a shared-memory op at its first start (g++, ~60 s of both
    cores, redone whenever the venv's path changes, as on every fresh clone). Only its tensor-parallel inference
    all-reduce uses that op, never training: marked incompatible, the backend goes without it (plain gloo)."""
    ops = getattr(deepspeed.ops, "__compatible_ops__", None)
    if isinstance(ops, dict):
        ops["deepspeed_shm_comm"] = False


def engine_kind(cfg: TrainConfig) -> str:
    """train.engine, with auto resolved: DeepSpeed on GPUs, DDP on CPUs. On a CPU DeepSpeed's engine costs a share
    of the steps (bench/train_throughput.py, 2 workers: 0.92x the plain loop at ZeRO-2 against 1.09x for DDP in the
    same run), and importing it costs each worker ~1-3 s of one core per run."""
    if cfg.engine == "auto":
        return "deepspeed" if cfg.use_gpu else "ddp"
    return cfg.engine


def zero_stage(cfg: TrainConfig, world_size: int) -> int:
    """The ZeRO stage a run uses: train.zero_stage, or 0 for a single fp32 worker. ZeRO shards optimizer state,
    gradients (and at 3 weights) across workers; with one there is nothing to shard. Under bf16 the configured stage
    stays: at stage 0 DeepSpeed's bf16 optimizer does not expose its fp32 master weights to
    `safe_get_full_fp32_param`, and `full_weights` would hand on the bf16-rounded copies (tests/test_models.py)."""
    return cfg.zero_stage if world_size > 1 or use_bf16(cfg) else 0


def deepspeed_config(cfg: TrainConfig, batch_size: int, stage: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": use_bf16(cfg)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


@contextlib.contextmanager
def silenced_print():
    """print() writes nothing inside the block. DeepSpeed prints (does not log) that its shared-memory op was built,
    twice per worker and training run; Ray Train patches print() to log what is printed through its logger as well as
    to stdout, so redirecting stdout alone still left one copy on the driver's screen."""
    saved = builtins.print
    builtins.print = lambda *args, **kwargs: None
    try:
        yield
    finally:
        builtins.print = saved


class Engine:
    """Wraps a model and an AdamW optimizer (a torch one: no DeepSpeed op has to be compiled)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, lr: float, batch_size: int, lr_lambda=None):
        """`lr_lambda`: step -> learning-rate factor (a schedule), stepped after every optimizer step."""
        import ray.train.torch

        self.cfg, self.kind = cfg, engine_kind(cfg)
        self.device = ray.train.torch.get_device()
        params = [p for p in model.parameters() if p.requires_grad]
        self.zero_stage = zero_stage(cfg, dist.get_world_size() if dist.is_initialized() else 1)
        if self.kind == "deepspeed":
            import deepspeed

            if self.device.type == "cpu":
                skip_shm_comm_op(deepspeed)
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
            with silenced_print() if quiet() else contextlib.nullcontext():
                self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
                    model=model,
                    optimizer=opt,
                    lr_scheduler=sched,
                    config=deepspeed_config(cfg, batch_size, self.zero_stage),
                )
            if self.zero_stage == 3:
                for weight in getattr(model, "external_weights", list)():
                    deepspeed.zero.register_external_parameter(model, weight)
            self.module = self.model.module
        else:  # fp32 weights and optimizer state; bf16 only inside autocast (see __call__)
            self.module = model.to(self.device)
            # DDP's search for unused parameters costs a pass and warns when there are none: a model that uses every
            # parameter in every forward says so (ddp_find_unused = False)
            unused = getattr(model, "ddp_find_unused", True)
            self.model = ray.train.torch.prepare_model(
                self.module, move_to_device=False, parallel_strategy_kwargs={"find_unused_parameters": unused}
            )
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda) if lr_lambda else None

    def __call__(self, **batch):
        with forward_precision(self.kind, use_bf16(self.cfg), self.device):
            return self.model(**{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()})

    def step(self, loss: torch.Tensor) -> None:
        if self.kind == "deepspeed":
            self.model.backward(loss)
            self.model.step()
            return
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def save(self, path: str) -> None:
        """Every rank calls this; DeepSpeed writes its shards, DDP only rank 0."""
        os.makedirs(path, exist_ok=True)
        if self.kind == "deepspeed":
            self.model.save_checkpoint(path, tag="ckpt")
        elif dist.get_rank() == 0:
            torch.save(
                {
                    "model": self.module.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                },
                os.path.join(path, "ddp.pt"),
            )

    def load(self, path: str) -> None:
        if self.kind == "deepspeed":
            self.model.load_checkpoint(path, tag="ckpt")
            return
        state = torch.load(os.path.join(path, "ddp.pt"), map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])

    @contextlib.contextmanager
    def full_weights(self):
        """All ranks enter; inside, every parameter is whole (ZeRO-3 gathers its shards) and fp32: under DeepSpeed
        bf16 the module's own weights are bf16 copies, so they are swapped for the optimizer's fp32 master weights
        until the block ends (what is saved or decoded there is what training reached, not its bf16 rounding)."""
        if self.kind != "deepspeed":
            yield self.module
            return
        import deepspeed

        params = list(self.module.parameters())
        gather = (
            deepspeed.zero.GatheredParameters(params, modifier_rank=None)
            if self.zero_stage == 3
            else contextlib.nullcontext()
        )
        with gather:
            if not use_bf16(self.cfg):
                yield self.module
                return
            kept = [p.data for p in params]
            for p in params:
                master = deepspeed.utils.safe_get_full_fp32_param(p) if p.requires_grad else None
                p.data = master.to(p.device) if master is not None else p.data.float()
            try:
                yield self.module
            finally:
                for p, data in zip(params, kept):
                    p.data = data
