"""Retrain's work without Qt: start ``wsseg train`` as a process and follow its progress.

The job never runs in the viewer's process (a stalled UI is what users of
interactive annotators report most): the dock only launches the same command the
CLI offers and reads the JSON-lines progress file it writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        return self.proc is not None and self.proc.poll() is None

    def cancel(self) -> None:
        """Ask the job to stop after its current step (it checkpoints first)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, n: int = 2000) -> str:
        log = self.run_dir / "train.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""


def _spawn(args: list[str], run_dir: Path) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "train.log", "ab")  # noqa: SIM115 - owned by the child
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "napari_wsseg.cli", "train", *args]
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def start(
    study_root: str | Path,
    method: str,
    settings: dict[str, str],
    steps: int | None,
    device: str = "auto",
    runs_dir: str | Path | None = None,
) -> Job:
    """Launch ``wsseg train --method ... --study ... --out RUN`` in a new process."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(runs_dir or Path(study_root) / "runs") / f"{method}-{stamp}"
    args = [
        "--method",
        method,
        "--study",
        str(study_root),
        "--out",
        str(run_dir),
        "--device",
        device,
    ]
    if steps:
        args += ["--steps", str(int(steps))]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return Job(run_dir, _spawn(args, run_dir))


def resume(run_dir: str | Path) -> Job:
    """Continue a cancelled job from its last checkpoint."""
    run_dir = Path(run_dir)
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
