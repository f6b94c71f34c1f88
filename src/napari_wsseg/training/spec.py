"""The job spec: everything a training run needs, saved as JSON (or YAML) in its folder.

A job names the method and its config overrides, the study and the snapshot file
that freezes what it trains on, the device, the seed and the step budget. The same
file runs from the dock, from ``wsseg train JOB_FILE`` and under ``torchrun``.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_wsseg.io.base import InputError

DEVICES = ("cpu", "cuda", "auto")


@dataclass
class JobSpec:
    """One training job.

    ``config``: overrides of the method's Config (defaults come from its paper).
    ``snapshot``: the snapshot JSON to train on; when empty the run takes one from
    ``study`` at launch and saves it as ``RUN_DIR/snapshot.json``, so later edits in
    the study never change a running job. ``steps`` overrides every stage's step
    count, ``stage_steps`` single stages by name, ``epochs`` sets each stage to that
    many passes over its (per-process) data; the most specific wins.
    ``parent``: the model version this job starts from (its weights and its config:
    only training-length keys may change, see :mod:`napari_wsseg.training.presets`);
    a stage with ``stage_steps[name] == 0`` is not rerun. ``preset`` records the
    preset the job was planned with; ``auto_promote`` makes the new version current
    when it is not worse than the current one on the study's held-out set. ``guard``
    (with a parent) keeps the parent's weights when the fine-tune is worse on the
    training images whose masks it never saw (:mod:`napari_wsseg.training.guard`).
    """

    method: str
    out: str
    study: str = ""
    snapshot: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    seed: int = 0
    steps: int | None = None
    stage_steps: dict[str, int] = field(default_factory=dict)
    epochs: int | None = None
    val_fraction: float = 0.0
    val_every: int = 0
    checkpoint_every: int = 50
    log_every: int = 1
    parent: str = ""
    amp: bool = True
    channels_last: bool = True
    register: bool = True
    preset: str = ""
    auto_promote: bool = False
    guard: bool = False

    def __post_init__(self) -> None:
        self._check_types()
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.method:
            raise ValueError("a job needs a method")
        if not self.out:
            raise ValueError("a job needs an output folder (out)")

    def _check_types(self) -> None:
        """Each field has its type (a job file is user input: ``steps: "abc"`` must be
        refused here, naming the key, not fail later inside the loop)."""

        def is_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        for key in ("method", "out", "study", "snapshot", "device", "parent"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key!r} must be a string, got {getattr(self, key)!r}")
        for key, low in (("seed", None), ("checkpoint_every", 0), ("val_every", 0)):
            v = getattr(self, key)
            if not is_int(v) or (low is not None and v < low):
                raise ValueError(f"{key!r} must be an integer >= {low or 0}, got {v!r}")
        if not is_int(self.log_every) or self.log_every < 1:
            raise ValueError(f"'log_every' must be an integer >= 1, got {self.log_every!r}")
        for key in ("steps", "epochs"):
            v = getattr(self, key)
            if v is not None and (not is_int(v) or v < 0):
                raise ValueError(f"{key!r} must be an integer >= 0 or null, got {v!r}")
        if not isinstance(self.config, dict) or not all(isinstance(k, str) for k in self.config):
            raise ValueError(f"'config' must be an object of key: value, got {self.config!r}")
        if not isinstance(self.stage_steps, dict) or not all(
            isinstance(k, str) and is_int(v) and v >= 0 for k, v in self.stage_steps.items()
        ):
            raise ValueError(
                f"'stage_steps' must map stage names to integers >= 0, got {self.stage_steps!r}"
            )
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, numbers.Real):
            raise ValueError(f"'val_fraction' must be a number, got {self.val_fraction!r}")
        for key in ("amp", "channels_last", "register", "guard"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key!r} must be true or false, got {getattr(self, key)!r}")

    # --- files --------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any], source: str = "<dict>") -> JobSpec:
        if not isinstance(obj, dict):
            raise InputError(source, f"a job file holds a mapping, got {type(obj).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise InputError(source, f"unknown job keys {unknown}; known: {sorted(known)}")
        try:
            return cls(**obj)
        except (TypeError, ValueError) as err:
            raise InputError(source, f"{err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the job as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically."""
        from napari_wsseg.io.atomic import atomic_write_text

        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_json(), sort_keys=False)
        else:
            text = json.dumps(self.to_json(), indent=1)
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> JobSpec:
        """Read a job file (JSON or YAML); errors name the file and the problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise FileNotFoundError(f"{path}: cannot read job file ({err.strerror})") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                obj = yaml.safe_load(text)
            else:
                obj = json.loads(text)
        except Exception as err:
            raise InputError(path, f"not a valid job file ({err})") from None
        return cls.from_dict(obj, str(path))

    # --- derived ------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def stage_step_count(self, name: str, default: int, batches_per_epoch: int) -> int:
        """Steps of stage ``name``: stage_steps > steps > epochs > the method's own."""
        if name in self.stage_steps:
            return int(self.stage_steps[name])
        if self.steps is not None:
            return int(self.steps)
        if self.epochs is not None:
            return int(self.epochs) * max(1, batches_per_epoch)
        return int(default)
