"""Default model versions shipped with the package, so the sample study shows overlays
at once (``make run``) without training first.

``default_models/<method>/`` holds one finished version per method (``weights.pt``,
``info.json``, ``job.json``, ``metrics.json``), trained by
``scripts/train_default_models.py`` with the settings in :data:`DEFAULT_TRAINING` on
the sample study grown to :data:`DEFAULT_TRAIN_COUNTS` cases: the same generator and
seed, so its first cases *are* the sample study's (``wsseg demo-data``). Decision: the
sample study alone (4 CT volumes, 3 mammograms) is too small to learn localisation
from, and a default whose maps say nothing would teach a new user nothing.
:func:`install_default_models` copies them into a study's registry as ordinary
versions; retraining from the dock then makes ``v002`` with the
default as its parent. Torch-free: this only copies files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from napari_wsseg.io.atomic import atomic_write, atomic_write_text
from napari_wsseg.training.versions import WEIGHTS, has_version, publish_version, stage_dir

SHIPPED = Path(__file__).resolve().parent / "default_models"

DEFAULT_TRAIN_COUNTS: dict[str, int] = {
    "ct": 32,
    "mammo": 120,
    "slide": 24,
    "xray": 64,
    "skin": 60,
}
DEFAULT_TRAIN_EXPERT: dict[str, int] = {"ct": 8, "mammo": 1, "slide": 1, "xray": 8, "skin": 4}

# Small models whose maps mean something after ~1-3 min each on 2 CPU cores:
# (steps, --set values). steps=None keeps the per-stage ``*_steps`` set here (methods
# with stages of different lengths). The settings follow the benchmarks
# (benchmarks/bench_<method>.py, docs/methods/<method>.md); where they leave the
# paper's defaults, those docs say why.
DEFAULT_TRAINING: dict[str, tuple[int | None, dict[str, str]]] = {
    "iagnet": (
        4000,
        {
            "features": "8,8,16,32,64,16",
            "views": "axial",
            "lr": "1e-3",
            "max_slices": "8",
            "chunk_slices": "16",
            # narrower window than the paper's [-125, 350]: the demo lesions are 30-50 HU
            # below a ~45 HU organ, and this short training learns faster at more contrast
            "hu_min": "0",
            "hu_max": "100",
        },
    ),
    "glam": (
        None,
        {
            "image_size": "368,240",
            "patch_size": "64",
            "global_top_t": "20",
            # 5 %, as the benchmark: a lesion covers few of the 6 x 16 x 16 patch cells
            "local_top_t": "5",
            "local_blocks": "1,1,1,1",
            "lr": "3e-4",
            "joint_lr": "1e-4",
            "global_steps": "1500",
            "local_steps": "600",
            "joint_steps": "200",
        },
    ),
    "distill": (
        None,
        {"max_bag": "128", "lr": "3e-4", "teacher_steps": "600", "student_steps": "400"},
    ),
    "chexseg": (
        None,
        {
            "backbone": "small",
            "image_size": "128",
            "seg_channels": "32",
            "classifier_lr": "1e-3",
            "classifier_steps": "600",
            "seg_steps": "200",
        },
    ),
    "manifold": (
        None,
        {
            "image_size": "64",
            "layers": "1,1,1",
            "widths": "8,16,32",
            "stem_stride": "1",
            "max_pool": "false",
            "dilate_last": "true",
            "per_class": "4",
            "metric_lr": "1e-3",
            "unet_features": "16,16,32,64,128,16",
            "unet_lr": "1e-3",
            "metric_steps": "200",
            "unet_steps": "120",
        },
    ),
}


def shipped_default_models(root: Path = SHIPPED) -> dict[str, Path]:
    """The shipped versions by method (those whose folder holds weights)."""
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / WEIGHTS).is_file()}


def install_default_models(
    study_root: str | Path, methods: list[str] | None = None, root: Path = SHIPPED
) -> list[Path]:
    """Copy each shipped default model into ``study_root/models/<method>/vNNN`` for the
    methods the study has no version of yet; returns the new version folders.

    Each is staged and renamed into place whole: a half-copied version is never listed.
    """
    models = Path(study_root) / "models"
    made = []
    for method, src in shipped_default_models(root).items():
        if (methods is not None and method not in methods) or has_version(models / method):
            continue
        staged = stage_dir(models / method, f"default-{os.getpid()}")
        # ood.json: the statistics of the phantoms it was trained on (issue 13)
        for name in ("job.json", "metrics.json", "ood.json"):
            if (src / name).is_file():
                atomic_write_text(staged / name, (src / name).read_text())
        info = json.loads((src / "info.json").read_text())
        info.pop("version", None)  # the folder's name says it (known only once published)
        info.update(parent=None, source="default model shipped with napari-wsseg")
        atomic_write_text(staged / "info.json", json.dumps(info, indent=1))
        atomic_write(staged / WEIGHTS, lambda tmp, s=src: shutil.copyfile(s / WEIGHTS, tmp))
        vdir = publish_version(models / method, staged)
        made.append(vdir)
    return made
