"""Phantom variations for the method benchmarks (issue 15): the defaults give the sample
study's images bit for bit; each new keyword does what its docstring says."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_wsseg.phantoms import mammo, skin, xray
from napari_wsseg.phantoms.xray import _resolve
from napari_wsseg.study.vocab import CHEST_FINDINGS

# SHA-256 (first 16 hex digits) of image + mask + labels for seeds 0, 1, 2, made by the
# generators before the variations were added (commit 18af74d).
BEFORE = {
    "skin": ["f1badb25564bd3ea", "8bf21b8a6afa082b", "3e2085db5e763c6f"],
    "xray": ["78f0dbadb892dbc1", "fb8766931fd8f094", "a647415b9109f9cf"],
    "mammo": ["86423edfd9786142", "67a900ff5771e63e", "bb46ed46b34999f1"],
}
SHAPES = {"skin": (96, 96), "xray": (128, 128), "mammo": (256, 160)}
MODULES = {"skin": skin, "xray": xray, "mammo": mammo}


def _digest(case) -> str:
    d = hashlib.sha256()
    d.update(np.ascontiguousarray(case.image).tobytes())
    d.update(np.ascontiguousarray(case.mask).tobytes())
    d.update(repr(sorted(case.labels.items())).encode())
    return d.hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_defaults_are_bit_identical_to_before(name):
    mod = MODULES[name]
    got = [_digest(mod.make_case(np.random.default_rng(s), None, SHAPES[name])) for s in range(3)]
    assert got == BEFORE[name]


def test_xray_prevalence_per_finding_and_normal_fraction():
    """Rare findings at their prevalence; the others keep 0.3; no normals when asked."""
    rng = np.random.default_rng(0)
    prev = {"lung_lesion": 0.03, "pneumothorax": 0.05}
    draws = [_resolve(rng, None, prev, normal_fraction=0.0) for _ in range(4000)]
    rate = {f: np.mean([d[f] for d in draws]) for f in CHEST_FINDINGS}
    assert rate["lung_lesion"] == pytest.approx(0.03, abs=0.01)
    assert rate["pneumothorax"] == pytest.approx(0.05, abs=0.012)
    assert rate["edema"] == pytest.approx(0.3, abs=0.03)
    case = xray.make_case(np.random.default_rng(1), None, (96, 96), prevalence=0.0)
    assert sum(case.labels.values()) == 0 and case.mask.sum() == 0
    with pytest.raises(ValueError, match="unknown findings"):
        _resolve(rng, None, {"lung_nodule": 0.1})


def test_skin_subregion_classes_and_shared_size():
    """subregion: mask = the whole lesion, the class patch ~f of it; n_classes names."""
    names = skin.class_names(6)
    assert names[:3] == skin.CLASSES and names[5] == "class_5"
    fracs = []
    for i in range(6):
        case = skin.make_case(np.random.default_rng(i), i, (96, 96), subregion=0.3, n_classes=6)
        assert case.labels == {n: int(j == i) for j, n in enumerate(names)}
        assert case.mask.sum() > 0 and case.image.shape == (96, 96, 3)
        fracs.append(case.meta["subregion_fraction"])
    assert 0.1 < np.median(fracs) < 0.5
    # shared size law: the lesion area no longer tells the class (nevus vs melanoma).
    area = {
        c: np.mean(
            [skin.make_case(np.random.default_rng(s), c, (64, 64), size_law="shared").mask.sum()
             for s in range(12)]
        )
        for c in ("melanoma", "nevus")
    }  # fmt: skip
    assert 0.6 < area["nevus"] / area["melanoma"] < 1.6
    with pytest.raises(ValueError, match="subregion"):
        skin.make_case(np.random.default_rng(0), 0, (64, 64), n_classes=5)


def test_mammo_radius_range_is_the_size_law():
    case = mammo.make_case(np.random.default_rng(3), "malignant", (256, 160),
                           radius_range=(0.08, 0.1))  # fmt: skip
    radii = [les["radius_px"] for les in case.meta["lesions"]]
    assert radii and all(0.08 * 256 <= r <= 0.1 * 256 for r in radii)
    with pytest.raises(ValueError, match="radius_range"):
        mammo.make_case(np.random.default_rng(0), 1, (256, 160), radius_range=(0.0, 0.1))
