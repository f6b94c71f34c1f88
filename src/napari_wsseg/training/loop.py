"""The stage loop: one optimiser per stage, deterministic batches, checkpoints, stop.

Kept apart from :mod:`runner` (which sets the job up) so the loop reads top to bottom.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.methods.base import Method, Stage, unwrap
from napari_wsseg.study.snapshot import SnapshotItem
from napari_wsseg.training import distributed, state
from napari_wsseg.training.checkpoint import save_checkpoint
from napari_wsseg.training.progress import (
    ProgressWriter,
    Throughput,
    clear_stop_request,
    stop_requested,
)
from napari_wsseg.training.spec import JobSpec


@dataclass
class LoopContext:
    """What the loop needs; built by :func:`napari_wsseg.training.runner.train`."""

    spec: JobSpec
    method: Method
    model: torch.nn.Module
    train_items: list[SnapshotItem]
    val_items: list[SnapshotItem]
    info: distributed.DistInfo
    progress: ProgressWriter
    stop: threading.Event
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    global_step: int = 0
    on_batch: Any = None  # optional hook(stage_index, indices), for tests and tools


def to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    """Move every tensor in a batch to ``device`` (4D float tensors to channels_last)."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, list | tuple) and not isinstance(batch, str):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def use_channels_last(spec: JobSpec, model: torch.nn.Module, device: torch.device) -> bool:
    """channels_last helps 2D convolutions on CUDA (tensor cores); elsewhere it costs."""
    has_conv2d = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return bool(spec.channels_last and device.type == "cuda" and has_conv2d)


def _autocast(spec: JobSpec, device: torch.device):
    if spec.amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class StageLoop:
    """Runs the stages from (stage, step) to the end or to a stop request."""

    def __init__(self, ctx: LoopContext) -> None:
        self.ctx = ctx
        self.stages = ctx.method.stages()
        self.cl = use_channels_last(ctx.spec, ctx.model, ctx.info.device)
        self.meter = Throughput()
        self._frozen = {id(p): p.requires_grad for p in ctx.model.parameters()}
        self.planned = [self._estimate(s) for s in self.stages]

    # --- plan ---------------------------------------------------------------
    def _estimate(self, stage: Stage) -> int:
        per_rank = math.ceil(len(self.ctx.train_items) / self.ctx.info.world)
        nb = math.ceil(per_rank / max(1, stage.batch_size))
        return self.ctx.spec.stage_step_count(stage.name, stage.steps, nb)

    def total_steps(self) -> int:
        return sum(self.planned)

    def _epoch_batches(self, si: int, epoch: int, dataset, stage: Stage) -> list[list[int]]:
        g = state.epoch_generator(self.ctx.spec.seed, si, epoch)
        sampler = self.ctx.method.sampler(dataset, stage, g)
        order = state.epoch_order(len(dataset), g, sampler)
        mine = state.shard(order, self.ctx.info.rank, self.ctx.info.world)
        return state.batches(mine, stage.batch_size)

    # --- validation ----------------------------------------------------------
    def validate(self, si: int, step: int) -> dict[str, float]:
        """Run the method's validation on rank 0 without touching the training RNGs."""
        ctx = self.ctx
        if not ctx.val_items or not ctx.info.is_main:
            return {}
        saved = state.rng_state()
        bare = unwrap(ctx.model)
        was_training = bare.training
        bare.eval()
        try:
            with torch.no_grad():
                metrics = {
                    k: float(v) for k, v in ctx.method.validate(bare, ctx.val_items).items()
                }
        finally:
            bare.train(was_training)
            state.set_rng_state(saved)
        ctx.metrics = metrics
        ctx.progress.emit(
            "val",
            step=ctx.global_step,
            stage=self.stages[si].name,
            stage_step=step,
            metrics=metrics,
        )
        return metrics

    # --- checkpoint -----------------------------------------------------------
    def checkpoint(
        self, si: int, step: int, opt: torch.optim.Optimizer | None, done: bool = False
    ) -> None:
        ctx = self.ctx
        if not ctx.info.is_main:
            return
        payload = {
            "model": unwrap(ctx.model).state_dict(),
            "optimizer": opt.state_dict() if opt is not None else None,
            "stage": si,
            "step": step,
            "global_step": ctx.global_step,
            "rng": state.rng_state(),
            "metrics": dict(ctx.metrics),
            "done": done,
            "method": ctx.spec.method,
        }
        path = save_checkpoint(ctx.run_dir, payload)
        ctx.progress.emit(
            "checkpoint", step=ctx.global_step, stage_index=si, stage_step=step, path=str(path)
        )

    # --- the loop -------------------------------------------------------------
    def _set_trainable(self, stage: Stage) -> list[torch.nn.Parameter]:
        model = self.ctx.model
        for p in model.parameters():
            p.requires_grad_(self._frozen[id(p)])
        params = list(self.ctx.method.trainable(model, stage))
        chosen = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        if not params:
            raise ValueError(f"stage {stage.name!r}: the method returned no trainable parameters")
        return params

    def _restore_trainable(self) -> None:
        for p in self.ctx.model.parameters():
            p.requires_grad_(self._frozen[id(p)])

    def run(
        self, start_stage: int = 0, start_step: int = 0, resume_state: dict[str, Any] | None = None
    ) -> str:
        """Train from (start_stage, start_step); returns ``"done"`` or ``"cancelled"``."""
        for si in range(start_stage, len(self.stages)):
            first = 0 if si != start_stage else start_step
            if self._run_stage(si, first, resume_state if si == start_stage else None):
                return "cancelled"
        self._restore_trainable()
        return "done"

    def _run_stage(self, si: int, step: int, resume_state: dict[str, Any] | None) -> bool:
        ctx, stage = self.ctx, self.stages[si]
        # a stage the job does not rerun, or one of 0 steps (GLAM's and Distill's
        # ``masks`` stage outside a fine-tune): no data set is built for it
        if ctx.spec.stage_step_count(stage.name, stage.steps, 1) == 0:
            self.planned[si] = 0
            return False
        bare = unwrap(ctx.model)
        state.seed_everything(state.derive_seed(ctx.spec.seed, "stage", si))
        dataset = ctx.method.dataset(ctx.train_items, stage, bare)
        if len(dataset) == 0:
            raise ValueError(f"stage {stage.name!r}: no training samples in the snapshot")
        nb = len(self._epoch_batches(si, 0, dataset, stage))
        steps = ctx.spec.stage_step_count(stage.name, stage.steps, nb)
        self.planned[si] = steps
        params = self._set_trainable(stage)
        model = distributed.wrap(bare, ctx.info)
        opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        if resume_state is not None and step > 0:
            if resume_state.get("optimizer") is not None:
                opt.load_state_dict(resume_state["optimizer"])
            state.set_rng_state(resume_state["rng"])
        model.train()
        self.meter.start()
        epoch, plan = -1, []
        while step < steps:
            e, b = divmod(step, nb)
            if e != epoch:
                epoch, plan = e, self._epoch_batches(si, e, dataset, stage)
            idx = plan[b]
            if ctx.on_batch is not None:
                ctx.on_batch(si, idx)
            batch = to_device(
                ctx.method.collate([dataset[i] for i in idx]), ctx.info.device, self.cl
            )
            with _autocast(ctx.spec, ctx.info.device):
                losses = ctx.method.training_step(model, batch, stage)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            step += 1
            ctx.global_step += 1
            self.meter.tick(len(idx) * ctx.info.world)
            self._log(si, step, steps, epoch, losses, opt)
            for msg in ctx.method.warnings(stage, losses) if ctx.info.is_main else ():
                ctx.progress.emit("warning", step=ctx.global_step, stage=stage.name, message=msg)
            if ctx.spec.val_every and ctx.global_step % ctx.spec.val_every == 0:
                self.validate(si, step)
            asked = ctx.stop.is_set() or (ctx.info.is_main and stop_requested(ctx.run_dir))
            stop = distributed.any_flag(asked, ctx.info)
            every = ctx.spec.checkpoint_every
            if stop or (every and ctx.global_step % every == 0 and step < steps):
                self.checkpoint(si, step, opt)
            if stop:
                ctx.progress.emit(
                    "cancelled", step=ctx.global_step, stage=stage.name, stage_step=step
                )
                if ctx.info.is_main:
                    clear_stop_request(ctx.run_dir)  # acted on: a resume must not stop again
                return True
        if step > 0 and ctx.val_items:
            self.validate(si, step)
        if si + 1 < len(self.stages):
            # the last stage's end is checkpointed once, by the runner, as ``done``
            self.checkpoint(si + 1, 0, None)
        return False

    def _log(self, si: int, step: int, steps: int, epoch: int, losses: dict, opt) -> None:
        ctx = self.ctx
        every = max(1, ctx.spec.log_every)
        if not ctx.info.is_main or (step % every and step != steps):
            return
        rate, per_step = self.meter.rate()
        left = (steps - step) + sum(self.planned[si + 1 :])
        vals = {
            k: float(v.detach().float().item())
            for k, v in losses.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }
        ctx.progress.emit(
            "step",
            step=ctx.global_step,
            total_steps=self.total_steps(),
            stage=self.stages[si].name,
            stage_index=si,
            stage_step=step,
            stage_steps=steps,
            epoch=epoch,
            losses=vals,
            lr=float(opt.param_groups[0]["lr"]),
            samples_per_s=rate,
            eta_s=None if per_step is None else float(left * per_step),
        )
