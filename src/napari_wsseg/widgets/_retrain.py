"""Retrain's work without Qt: start ``wsseg train`` as a process and follow its progress.

The job never runs in the viewer's process (a stalled UI is what users of
interactive annotators report most): the dock only launches the same command the
CLI offers and reads the JSON-lines progress file it writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_wsseg.training.progress import clear_stop_request, request_stop

NICE = 10  # a training job's niceness above the viewer's (POSIX)


def study_counts(study, modality: str) -> dict[str, int]:
    """How many expert masks and weakly labelled images a job on ``modality`` would use."""
    items = study.snapshot(modality=modality).items
    return {
        "images": len(items),
        "expert_masks": sum(1 for it in items if it.mask),
        "weak_only": sum(1 for it in items if not it.mask and it.labels),
    }


@dataclass
class Job:
    """A training process started from the dock, and what it has reported so far."""

    run_dir: Path
    proc: subprocess.Popen | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    pid: int | None = None
    _offset: int = 0

    @property
    def progress_file(self) -> Path:
        return self.run_dir / "progress.jsonl"

    def poll(self) -> list[dict[str, Any]]:
        """New progress events since the last call (complete lines only)."""
        try:
            with open(self.progress_file, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        new = []
        for line in chunk[:end].splitlines():
            try:
                new.append(json.loads(line))
            except ValueError:
                continue
        self.events.extend(new)
        return new

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and _alive(self.pid)

    def cancel(self) -> None:
        """Ask the job to stop after its current step (it checkpoints first).

        A request file rather than SIGTERM: it reaches a job that has not yet set up
        its signal handler (SIGTERM would kill it), or that runs on another host.
        """
        if self.running:
            request_stop(self.run_dir)

    def returncode(self) -> int | None:
        """The exit code when this viewer started the job; else 0 for a job that
        reported ``done`` and 3 (the CLI's "cancelled") for one that did not."""
        if self.proc is not None:
            return self.proc.poll()
        if self.running:
            return None
        return 0 if self.events and self.events[-1].get("event") == "done" else 3

    def log_tail(self, n: int = 2000) -> str:
        log = self.run_dir / "train.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _spawn(args: list[str], run_dir: Path) -> subprocess.Popen:
    """Start ``wsseg train`` in its own session (it outlives the dock and the viewer),
    :data:`NICE` steps below the viewer's priority: on a laptop's few cores the
    training threads otherwise take the time the UI needs to paint; on an idle machine
    it still gets every core."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "napari_wsseg.cli", "train", *args]
    with open(run_dir / "train.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    if hasattr(os, "setpriority"):  # POSIX: the viewer keeps the CPU it needs
        with contextlib.suppress(OSError):  # the job may have ended already
            os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + NICE)
    (run_dir / "pid").write_text(str(proc.pid))
    return proc


def attach(run_dir: str | Path) -> Job:
    """A job folder found on disk (started earlier, maybe by another viewer)."""
    run_dir = Path(run_dir)
    try:
        pid = int((run_dir / "pid").read_text())
    except (OSError, ValueError):
        pid = None
    job = Job(run_dir, pid=pid)
    job.poll()
    return job


def list_jobs(study_root: str | Path) -> list[tuple[Path, str]]:
    """Run folders of the study's jobs (newest first) with a one-word state."""
    runs = Path(study_root) / "runs"
    if not runs.is_dir():
        return []
    out = []
    for run_dir in sorted((p for p in runs.iterdir() if p.is_dir()), reverse=True):
        job = attach(run_dir)
        last = job.events[-1].get("event", "step") if job.events else "starting"
        state = "running" if job.running else ("stopped" if last in ("step", "start") else last)
        out.append((run_dir, state))
    return out


def start(
    study_root: str | Path,
    method: str,
    settings: dict[str, str],
    steps: int | None,
    device: str = "auto",
    runs_dir: str | Path | None = None,
    epochs: int | None = None,
    parent: str | None = None,
    preset: str | None = None,
    stages: list[str] | None = None,
    auto_promote: bool = False,
) -> Job:
    """Launch ``wsseg train --method ... --study ... --out RUN`` in a new process.

    With ``parent`` the job fine-tunes that version (``--parent``: its config, only
    ``settings`` of training length may differ); ``stages`` are the stages it reruns.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir or Path(study_root) / "runs") / f"{method}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        run_dir, n = base.with_name(f"{base.name}-{n}"), n + 1
    args = ["--method", method, "--study", str(study_root), "--out", str(run_dir)]
    args += ["--device", device]
    if parent:
        args += ["--parent", str(parent)]
    if preset:
        args += ["--preset", preset]
    if stages:
        args += ["--stages", ",".join(stages)]
    if auto_promote:
        args += ["--auto-promote"]
    if steps:
        args += ["--steps", str(int(steps))]
    if epochs:
        args += ["--epochs", str(int(epochs))]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return Job(run_dir, _spawn(args, run_dir))


def plan(parent: str | None, method: str, preset: str) -> dict[str, Any]:
    """What the dock offers before Start (imports the method: call off the UI thread).

    Fine-tuning ``parent``: its training-length settings under ``preset``, its stages
    and those a retrain reruns, and its measured seconds a step. From scratch: every
    config key with the preset's values.
    """
    from napari_wsseg.training import presets

    if parent:
        info = presets.read_version(parent)
        config = dict(info.get("config", {}))
        if preset == "paper":
            paper = presets.paper_defaults(method)
            config.update({k: paper[k] for k in presets.training_keys(config) if k in paper})
        else:
            config.update(presets.QUICK_LR.get(method, {}))
        names = presets.stage_names(method, config)
        steps = presets.stage_plan(method, names, preset, True, None, config)
        settings = {k: config[k] for k in presets.training_keys(config)}
        per_step = presets.step_seconds(parent)
        paper = {}
    else:
        sets, _ = presets.scratch_config(method, preset)
        from napari_wsseg.methods import get_method
        from napari_wsseg.training.configs import config_to_json, make_config, parse_sets

        cls = get_method(method)
        config = config_to_json(
            make_config(cls.Config, parse_sets(cls.Config, [f"{k}={v}" for k, v in sets.items()]))
        )
        names = presets.stage_names(method, config)
        steps = presets.stage_plan(method, names, preset, False, None, config)
        settings, per_step = config, {}
        paper = config_to_json(cls.Config())
    return {
        "settings": settings,
        "stages": names,
        "steps": steps,
        "per_step": per_step,
        "paper": paper,
        "paper_size": presets.paper_size(method, config),
        "overhead_s": presets.overhead_seconds(parent) if parent else None,
        "has_cuda": _has_cuda(),
    }


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def eta_text(plan_: dict[str, Any], run: list[str], steps: int | None, device: str) -> str:
    """The estimate shown before Start, with a warning for a paper-size run on a CPU."""
    from napari_wsseg.training.presets import estimate_seconds

    counts = {
        s: (int(steps) if steps else plan_["steps"].get(s, 0)) for s in plan_["stages"] if s in run
    }
    secs = estimate_seconds(plan_["per_step"], counts)
    if secs is not None and plan_.get("overhead_s"):
        secs += plan_["overhead_s"]
    total = sum(counts.values())
    if secs is None:
        text = f"{total} steps; no measured step time for this model yet"
    else:
        text = f"{total} steps, about {_duration(secs)} (measured step time on this machine)"
    on_cpu = device == "cpu" or (device == "auto" and not plan_.get("has_cuda"))
    if plan_["paper_size"] and on_cpu:
        text += "\n⚠ paper-size model on a CPU: expect hours; pick the quick preset or a GPU"
    return text


def _duration(secs: float) -> str:
    return f"{secs:.0f} s" if secs < 90 else f"{secs / 60:.1f} min"


def on_viewer_close(job: Job, choice: str) -> None:
    """What closing the viewer does to a running job: ``stop`` asks it to stop after its
    step (it checkpoints; Resume continues it), ``keep`` leaves it training in its own
    session (the Retrain dock re-attaches to it at the next launch)."""
    if choice == "stop":
        job.cancel()
    elif choice != "keep":
        raise ValueError(f"on close: expected 'keep' or 'stop', got {choice!r}")


def unreviewed_version(jobs: list[tuple[Path, str]]) -> tuple[Path, Path] | None:
    """(run folder, version folder) of the newest finished job whose version is still
    offered (newer than the current one, neither promoted nor declined)."""
    from napari_wsseg.training.promotion import offered_version

    for run_dir, state in jobs:
        if state != "done":
            continue
        job = attach(run_dir)
        done = [e for e in job.events if e.get("event") == "done" and e.get("version_dir")]
        if not done:
            continue
        version = Path(done[-1]["version_dir"])
        if offered_version(version.parent) == version.name:
            return run_dir, version
    return None


def resume(run_dir: str | Path) -> Job:
    """Continue a cancelled job from its last checkpoint."""
    run_dir = Path(run_dir)
    clear_stop_request(run_dir)  # a request left by a job killed before it could act on it
    job = Job(run_dir, _spawn(["--resume", str(run_dir)], run_dir))
    job.poll()  # skip events of the earlier attempt
    job.events.clear()
    return job


def summary(event: dict[str, Any]) -> str:
    """One status line from a progress event."""
    kind = event.get("event", "step")
    if kind == "step":
        eta = event.get("eta_s")
        eta_txt = f", ETA {eta:.0f} s" if isinstance(eta, int | float) else ""
        loss = event.get("losses", {}).get("loss")
        loss_txt = f", loss {loss:.4f}" if isinstance(loss, int | float) else ""
        total = event.get("total_steps", "?")
        where = f"{event.get('stage', '')} step {event.get('step')}/{total}"
        return where + loss_txt + eta_txt
    return (
        f"{kind}: " + ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event",))[:300]
    )
