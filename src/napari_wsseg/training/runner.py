"""Run a job: set up the run folder, the method and the devices, then the stage loop.

``train(spec)`` runs a job from its start (or from its last checkpoint with
``resume=True``); ``resume(run_dir)`` continues a stopped job from its folder. SIGTERM
asks the loop to stop after the current step; it then writes a checkpoint and
returns ``status="cancelled"``. A finished job is registered as a model version in
its study (see :mod:`napari_wsseg.training.registry`).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.io import faults
from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.io.base import InputError
from napari_wsseg.methods import get_method
from napari_wsseg.methods.base import Method, unwrap
from napari_wsseg.training import distributed, snapshots, state
from napari_wsseg.training.checkpoint import load_checkpoint, remove_temp_files, safe_load
from napari_wsseg.training.configs import make_config
from napari_wsseg.training.loop import LoopContext, StageLoop
from napari_wsseg.training.presets import apply_parent
from napari_wsseg.training.progress import ProgressWriter
from napari_wsseg.training.spec import JobSpec

JOB = "job.json"
# The run's registration token (see ``versions``): written before the final checkpoint,
# read again by a resume, so a job that registered and died finds its version.
TOKEN = "register.token"


@dataclass
class RunResult:
    """How a run ended: ``status`` is ``done`` or ``cancelled``."""

    status: str
    run_dir: Path
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    version_dir: Path | None = None
    model: torch.nn.Module | None = None
    method: Method | None = None


def build_method(spec: JobSpec) -> Method:
    """The job's method with its config overrides applied."""
    cls = get_method(spec.method)
    return cls(make_config(cls.Config, spec.config))


def prepare_run(spec: JobSpec) -> Path:
    """Create the run folder with ``job.json`` and the frozen ``snapshot.json``.

    A job with a parent is saved with the parent's config merged in
    (:func:`presets.apply_parent`). Idempotent: an existing snapshot is kept (a
    resumed job trains on what it started with).
    """
    apply_parent(spec)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_temp_files(run_dir)  # a killed writer's temp files: only this job writes here
    if not (run_dir / JOB).exists():
        spec.save(run_dir / JOB)
    snap_path = run_dir / snapshots.SNAPSHOT
    if not snap_path.exists():
        if spec.snapshot:
            snap = snapshots.load_snapshot_file(spec.snapshot)
        elif spec.study:
            modality = getattr(get_method(spec.method), "modality", None)
            snap = snapshots.take_snapshot(spec.study, modality, spec.val_fraction, spec.seed)
        else:
            raise ValueError(f"{run_dir / JOB}: the job names neither a study nor a snapshot")
        atomic_write_text(snap_path, snapshots.dump(snap))
    return run_dir


class _Sigterm:
    """Sets ``event`` on SIGTERM while installed (main thread only)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.previous: Any = None

    def __enter__(self) -> _Sigterm:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def train(
    spec: JobSpec,
    *,
    resume: bool = False,
    stop: threading.Event | None = None,
    on_batch: Any = None,
    on_registered: Any = None,
) -> RunResult:
    """Run ``spec`` to the end, or until ``stop`` is set / SIGTERM arrives.

    ``on_registered(spec, version_dir, method, model, items)``, called on rank 0 once
    the new version is stored and before ``done``, may return a dict (the held-out
    scores ``wsseg train`` adds from the evaluation floor), emitted as ``held_out``.
    """
    apply_parent(spec)
    info = distributed.setup(spec.device)
    progress = None
    try:
        run_dir = spec.run_dir
        if info.is_main:
            prepare_run(spec)
        distributed.barrier(info)
        method = build_method(spec)
        snap = snapshots.load_snapshot_file(run_dir / snapshots.SNAPSHOT)
        items = snapshots.method_items(snap, getattr(method, "modality", None), str(run_dir))
        snapshots.split_items(items, spec.val_fraction, spec.seed)
        train_items = [it for it in items if it.split not in ("val", snapshots.HELD_OUT)]
        val_items = [it for it in items if it.split == "val"]
        progress = ProgressWriter(run_dir, enabled=info.is_main)
        ckpt = load_checkpoint(run_dir) if resume else None
        if ckpt is not None and ckpt.get("done"):
            return _finished(spec, method, ckpt, info, progress, items)
        state.seed_everything(state.derive_seed(spec.seed, "init"))
        model = method.build_model()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
        elif spec.parent:
            model.load_state_dict(safe_load(Path(spec.parent) / "weights.pt"))
        model.to(info.device)
        stop = stop if stop is not None else threading.Event()
        ctx = LoopContext(
            spec,
            method,
            model,
            train_items,
            val_items,
            info,
            progress,
            stop,
            run_dir,
            on_batch=on_batch,
        )
        loop = StageLoop(ctx)
        start_stage, start_step = 0, 0
        if ckpt is not None:
            start_stage, start_step = int(ckpt["stage"]), int(ckpt["step"])
            ctx.global_step = int(ckpt.get("global_step", 0))
            ctx.metrics = dict(ckpt.get("metrics", {}))
        progress.emit(
            "start",
            method=spec.method,
            total_steps=loop.total_steps(),
            stages=[s.name for s in loop.stages],
            world_size=info.world,
            device=str(info.device),
            resumed=ckpt is not None,
            from_step=ctx.global_step,
            n_train=len(train_items),
            n_val=len(val_items),
        )
        with _Sigterm(stop):
            status = loop.run(start_stage, start_step, ckpt)
        if status == "cancelled":
            distributed.barrier(info)  # every rank stopped at the same step (any_flag)
            return RunResult(
                "cancelled", run_dir, ctx.global_step, ctx.metrics, None, unwrap(model), method
            )
        kept = None
        if spec.guard and info.is_main:  # ours: never hand back worse than the parent
            from napari_wsseg.training.guard import apply_guard

            verdict = apply_guard(spec, method, unwrap(model), train_items)
            progress.emit("guard", **verdict)
            kept = float(verdict.get("kept_parent", False))
        metrics = ctx.metrics or loop.validate(len(loop.stages) - 1, 0)
        if kept is not None:
            metrics = {**metrics, "guard_kept_parent": kept}
        if info.is_main:
            _token(run_dir, fresh=True)
        loop.checkpoint(len(loop.stages), 0, None, done=True)
        version = _register(spec, method, unwrap(model), metrics, items, info, progress)
        if version is not None:
            _after_register(spec, version, method, unwrap(model), items, progress, on_registered)
        faults.point("register:before-done")
        progress.emit(
            "done",
            step=ctx.global_step,
            metrics=metrics,
            version_dir=str(version) if version else None,
        )
        # ranks leave together: gloo aborts a rank that destroys its group while rank 0
        # still writes the version ("terminate called without an active exception")
        distributed.barrier(info)
        return RunResult("done", run_dir, ctx.global_step, metrics, version, unwrap(model), method)
    except BaseException as err:
        if progress is not None and not isinstance(err, KeyboardInterrupt):
            progress.emit(
                "error",
                message=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(limit=8),
            )
        raise
    finally:
        if progress is not None:
            progress.close()
        distributed.teardown(info)


def resume(
    run_dir: str | Path,
    *,
    stop: threading.Event | None = None,
    on_batch: Any = None,
    on_registered: Any = None,
) -> RunResult:
    """Continue the job in ``run_dir`` from its last checkpoint (same data order, RNGs)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "no such run folder")
    if not (run_dir / JOB).exists():
        raise InputError(
            run_dir,
            f"this run has no {JOB}: it was stopped before it started (nothing was "
            "trained), so there is nothing to resume; start the job again",
        )
    spec = JobSpec.load(run_dir / JOB)
    if Path(spec.out).resolve() != run_dir.resolve():
        spec.out = str(run_dir)  # the folder was moved: follow it
    return train(spec, resume=True, stop=stop, on_batch=on_batch, on_registered=on_registered)


def _after_register(spec, version, method, model, items, progress, hook) -> None:
    """Store the measured step times next to the version, then run the hook."""
    events = _events(spec.run_dir)
    per_stage = step_seconds_of(events)
    result = None
    if hook is not None:
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                result = hook(spec, version, method, model, items)
        finally:
            model.train(was_training)
    if per_stage:
        # wall time of the job so far (from its start event) less its steps: data set-up,
        # saving, scoring; the dock adds it to steps x step time for its estimate
        starts = [e["time"] for e in events if e.get("event") == "start"]
        stepped = sum(
            per_stage.get(str(e.get("stage")), 0.0) for e in events if e.get("event") == "step"
        )
        timing = {"step_seconds": per_stage}
        if starts:
            timing["overhead_s"] = max(0.0, time.time() - starts[-1] - stepped)
        atomic_write_text(version / "timing.json", json.dumps(timing, indent=1))
    if result:
        progress.emit("held_out", version_dir=str(version), scores=result)


def step_seconds_of(events: list[dict]) -> dict[str, float]:
    """Median seconds between consecutive step events, per stage (this machine's rate)."""
    gaps: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    for ev in events:
        if ev.get("event") != "step" or not isinstance(ev.get("time"), int | float):
            continue
        stage = str(ev.get("stage", ""))
        if stage in last:
            gaps.setdefault(stage, []).append(float(ev["time"]) - last[stage])
        last[stage] = float(ev["time"])
    return {k: float(sorted(v)[len(v) // 2]) for k, v in gaps.items() if v}


def _token(run_dir: Path, fresh: bool) -> str:
    """The run's registration token: a new one (``fresh``), or the one on disk."""
    import uuid

    path = Path(run_dir) / TOKEN
    if not fresh:
        try:
            token = path.read_text().strip()
        except OSError:
            token = ""
        if token.isalnum():
            return token
    token = uuid.uuid4().hex
    atomic_write_text(path, token + "\n")
    return token


def _register(spec, method, model, metrics, items, info, progress) -> Path | None:
    study = spec.study
    if not (spec.register and study and info.is_main):
        return None
    from napari_wsseg.training.registry import register_model

    summary = snapshots.snapshot_summary(items)
    token = _token(spec.run_dir, fresh=False)
    extra = _ood_file(spec, method, items, progress)
    return register_model(study, spec, method, model, metrics, summary, token, extra)


def _ood_file(spec, method, items, progress) -> dict[str, str]:
    """The version's out-of-distribution statistics, of the images this run learnt from
    (its train split; its validation and held-out cases set the cut), kept with it so an
    image added to the study later is judged against what the model saw."""
    from napari_wsseg.training import ood

    fitted_on = f"the snapshot of its run {Path(spec.run_dir) / snapshots.SNAPSHOT}"
    try:
        stats = ood.fit_items(items, method.modality, fitted_on, spec.parent or None)
    except (OSError, ValueError) as err:  # e.g. one training image: Explain fits later
        msg = f"no out-of-distribution statistics kept with the version: {err}"
        if progress is not None:
            progress.emit("warning", message=msg)
        return {}
    return {ood.FILE: json.dumps(stats, indent=1)}


def _finished(spec, method, ckpt, info, progress, items) -> RunResult:
    """Resume of a job that had already finished: nothing to train."""
    model = method.build_model()
    model.load_state_dict(ckpt["model"])
    version = None
    for ev in reversed(_events(spec.run_dir)):
        if ev.get("event") == "done" and ev.get("version_dir"):
            version = Path(ev["version_dir"])
            break
    if version is not None and not (version / "weights.pt").is_file():
        version = None  # the folder was moved away or is not complete: register again
    if version is None:
        version = _register(spec, method, model, ckpt.get("metrics", {}), items, info, progress)
        progress.emit(
            "done",
            step=ckpt.get("global_step", 0),
            metrics=ckpt.get("metrics", {}),
            version_dir=str(version) if version else None,
        )
    return RunResult(
        "done",
        spec.run_dir,
        int(ckpt.get("global_step", 0)),
        dict(ckpt.get("metrics", {})),
        version,
        model,
        method,
    )


def _events(run_dir: Path) -> list[dict]:
    from napari_wsseg.training.progress import read_progress

    return read_progress(run_dir)
