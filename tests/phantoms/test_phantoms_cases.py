"""Phantom generators: labels agree with masks, seeding is deterministic, types fit."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_wsseg.phantoms import MODULES
from napari_wsseg.study.vocab import CHEST_FINDINGS, VOCABULARY

SMALL = {
    "ct": {"shape": (24, 64, 64)},
    "mammo": {"shape": (368, 240)},
    "slide": {"shape": (256, 256)},
    "xray": {"shape": (128, 128)},
    "skin": {"shape": (64, 64)},
}
DTYPES = {
    "ct": np.int16,
    "mammo": np.uint16,
    "slide": np.uint8,
    "xray": np.uint16,
    "skin": np.uint8,
}
LABELS = {
    "ct": [0, 1],
    "mammo": ["malignant", "benign", "normal", "both"],
    "slide": [0, 1],
    "xray": ["normal", *CHEST_FINDINGS],
    "skin": ["melanoma", "nevus", "keratosis"],
}


def _case(modality, seed, label):
    module = importlib.import_module(MODULES[modality])
    return module.make_case(np.random.default_rng(seed), label, **SMALL[modality])


@pytest.mark.parametrize("modality", sorted(MODULES))
def test_phantoms_labels_match_masks(modality):
    for i, label in enumerate(LABELS[modality]):
        case = _case(modality, i, label)
        assert set(case.labels) == set(VOCABULARY[modality])
        if modality == "xray":
            assert case.mask.shape == (len(CHEST_FINDINGS), *case.image.shape)
            for c, name in enumerate(CHEST_FINDINGS):
                assert case.labels[name] == int(case.mask[c].any()), name
        elif modality == "mammo":
            assert case.labels["malignant"] == int((case.mask == 1).any())
            assert case.labels["benign"] == int((case.mask == 2).any())
        elif modality == "skin":
            assert sum(case.labels.values()) == 1 and case.labels[label] == 1
            assert case.mask.any()
        else:
            (name,) = VOCABULARY[modality]
            assert case.labels[name] == int(case.mask.any())
        if modality != "xray":
            assert case.mask.shape == case.image.shape[: case.mask.ndim]


@pytest.mark.parametrize("modality", sorted(MODULES))
def test_phantoms_deterministic_and_typed(modality):
    a, b = _case(modality, 3, None), _case(modality, 3, None)
    c = _case(modality, 4, None)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.labels == b.labels
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == DTYPES[modality] and a.mask.dtype == np.uint8
    if modality == "mammo":
        assert a.image.max() <= 4095
    if modality in ("slide", "skin"):
        assert a.image.ndim == 3 and a.image.shape[-1] == 3
    assert "spacing" in a.meta


def test_phantoms_ct_lesion_is_hypodense_inside_organ():
    case = _case("ct", 1, 1)
    lesion = case.mask.astype(bool)
    ring = ndi.binary_dilation(lesion, iterations=3) & ~ndi.binary_dilation(lesion)
    organ_near = ring & (np.abs(case.image - case.meta["organ_hu"]) < 40)
    drop = case.image[organ_near].mean() - case.image[lesion].mean()
    # the generator's 30-50 HU drop (noise averages out; partial volume at the rim):
    # clearly hypodense, yet not a different tissue (fat is ~150 HU below the organ)
    assert 20.0 < drop < 60.0
    assert case.meta["spacing"] == (2.5, 0.8, 0.8)
    assert case.image.min() <= -990  # air outside the body


def test_phantoms_mammo_breast_on_laterality_side():
    for side in ("L", "R"):
        case = importlib.import_module(MODULES["mammo"]).make_case(
            np.random.default_rng(0), "malignant", shape=(368, 240), laterality=side
        )
        tissue = case.image > 400
        left = tissue[:, :120].sum() > tissue[:, 120:].sum()
        assert left == (side == "L") and case.meta["laterality"] == side


def test_phantoms_slide_background_and_tumour_texture():
    case = _case("slide", 0, 1)
    white = (case.image.min(axis=-1) > 215).mean()
    assert white >= 0.3
    # tumour nuclei are larger than normal ones (lymphocyte clusters make darkness
    # alone ambiguous; nucleus size is not): an opening by a radius-3 disk keeps
    # most tumour nuclear pixels and few normal ones
    from skimage.morphology import disk

    nuclei = case.image[..., 0] < 180
    kept = ndi.binary_opening(nuclei, structure=disk(3))
    tumour, normal = case.mask == 1, (case.image.min(axis=-1) < 215) & (case.mask == 0)
    assert kept[tumour].sum() / nuclei[tumour].sum() > 0.7
    assert kept[normal].sum() / nuclei[normal].sum() < 0.3


def _xray(seed, label):
    return _case("xray", seed, label)


@pytest.mark.parametrize("finding", ["cardiomegaly", "enlarged_cardiomediastinum"])
def test_phantoms_xray_anatomy_varies_between_cases(finding):
    """Patients differ (placement, habitus, heart and mediastinum): the masks of the
    large findings move and change size between cases, as in real chest films, so a
    few expert masks are no perfect label for every other image."""
    c = CHEST_FINDINGS.index(finding)
    masks = [_xray(seed, finding).mask[c].astype(bool) for seed in range(20)]
    width = masks[0].shape[1]
    centroids = np.array([np.argwhere(m).mean(0) for m in masks])
    assert np.linalg.norm(centroids.std(0)) > 0.02 * width
    areas = np.array([m.sum() for m in masks], dtype=float)
    assert areas.std() / areas.mean() > 0.05
    # no two cases share the region
    assert min(np.mean(masks[0] != m) for m in masks[1:]) > 0.0


def test_phantoms_xray_cardiothoracic_ratio_separates_cardiomegaly():
    """Clinical definition: cardiothoracic ratio (widest cardiac silhouette / internal
    thoracic width) > 0.5 in cardiomegaly, < 0.5 in a normal heart; measured on the
    image (the bright run through the heart's centre), not only the recorded value."""

    def silhouette(case):
        a = case.meta["anatomy"]
        img = ndi.gaussian_filter(case.image.astype(float), 1.0)
        cy, cx = (int(round(t)) for t in a["heart_centre"])
        widest = 0
        for y in range(cy - 6, cy + 7):
            runs, _ = ndi.label(img[y] > 0.5 * 3800)  # heart 0.62, lung 0.18 (x 3800)
            if runs[cx]:
                widest = max(widest, int((runs == runs[cx]).sum()))
        return widest / a["thorax_width"]

    for seed in range(8):
        normal, big = _xray(seed, "normal"), _xray(seed, "cardiomegaly")
        assert normal.meta["anatomy"]["cardiothoracic_ratio"] < 0.5 < silhouette(big)
        assert silhouette(normal) < 0.5 < big.meta["anatomy"]["cardiothoracic_ratio"]
        # the cardiomegaly mask is the heart: its widest row gives the recorded ratio
        heart = big.mask[CHEST_FINDINGS.index("cardiomegaly")].astype(bool)
        widest = max(np.ptp(np.flatnonzero(row)) + 1 for row in heart if row.any())
        ratio = widest / big.meta["anatomy"]["thorax_width"]
        assert abs(ratio - big.meta["anatomy"]["cardiothoracic_ratio"]) < 0.03


def test_phantoms_xray_findings_follow_the_anatomy():
    """A finding's mask sits where its sign is for this patient: an effusion in the
    lower lung below the hila, the tube on this patient's midline, edema around both
    hila, all moving with the patient's placement."""
    for seed in range(6):
        case = _xray(seed, ["pleural_effusion", "support_devices", "edema"])
        a = case.meta["anatomy"]
        eff = np.argwhere(case.mask[CHEST_FINDINGS.index("pleural_effusion")])
        assert eff[:, 0].min() > max(y for y, _ in a["hila"])
        tube = np.argwhere(case.mask[CHEST_FINDINGS.index("support_devices")])
        near_carina = tube[np.abs(tube[:, 0] - a["carina"][0]) < 8]
        assert abs(np.median(near_carina[:, 1]) - a["carina"][1]) < 2.5
        edema = case.mask[CHEST_FINDINGS.index("edema")].astype(bool)
        for hy, hx in a["hila"]:
            y, x = int(round(hy)), int(round(hx))
            assert edema[y - 4 : y + 5, x - 4 : x + 5].any()
