"""GLAM (Liu et al. 2022): poolings, eq. 1, Algorithm 1, S_l placement, shapes, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods.glam.data import bit_depth, normalise
from napari_wsseg.methods.glam.method import GLAMConfig, GLAMMethod
from napari_wsseg.methods.glam.model import GLAMModel
from napari_wsseg.methods.glam.nets import l1_saliency, top_t_pool
from napari_wsseg.methods.glam.patches import (
    combine_scales,
    select_patches,
    select_windows,
    write_back,
)

TINY = dict(
    image_size=(128, 96),
    patch_size=32,
    global_widths=(4, 8, 8, 16, 16),
    local_widths=(4, 8),
    local_blocks=(1, 1),
    attention_hidden=8,
    k_train=2,
    global_top_t=5.0,
    lr=3e-3,
    joint_lr=1e-3,
)


pytestmark = pytest.mark.usefixtures("seeded_one_thread")  # tests/methods/conftest.py


def test_top_t_pool_app_b_hand_computation():
    """App. B: y = mean of the top t% values (|H+| = ceil(t% n))."""
    s = torch.arange(1.0, 11.0).reshape(1, 1, 2, 5) / 10  # 0.1 .. 1.0
    assert top_t_pool(s, 20.0).item() == pytest.approx((1.0 + 0.9) / 2)
    assert top_t_pool(s, 25.0).item() == pytest.approx((1.0 + 0.9 + 0.8) / 3)  # ceil(2.5)
    assert top_t_pool(s, 100.0).item() == pytest.approx(0.55)  # = GAP (CAM's pooling)
    assert top_t_pool(s, 0.01).item() == pytest.approx(1.0)  # at least one value = max
    with pytest.raises(ValueError):
        top_t_pool(s, 0.0)


def test_global_loss_eq1_bce_plus_l1_hand_computation():
    """Eq. 1: L_g = sum_n BCE(y, y_n) + lambda * sum_(i,j) |S_n(i, j)|."""
    model = GLAMModel(GLAMConfig(**TINY, l1_weight=0.01))
    s0 = torch.tensor([[[[0.2, 0.4], [0.0, 0.6]], [[0.1, 0.1], [0.1, 0.1]]]])
    s1 = torch.full((1, 2, 1, 1), 0.5)
    g = {"maps": [s0, s1], "y_n": [torch.tensor([[0.8, 0.3]]), torch.tensor([[0.5, 0.5]])]}
    y = torch.tensor([[1.0, 0.0]])
    bce = (-np.log(0.8) - np.log(0.7)) / 2 + (-np.log(0.5) - np.log(0.5)) / 2
    l1 = (0.2 + 0.4 + 0.6 + 0.4) + (0.5 + 0.5)
    out = model._global_loss(g, y, None)
    assert out["loss"].item() == pytest.approx(bce + 0.01 * l1, rel=1e-5)
    assert l1_saliency(s0).item() == pytest.approx(1.6)
    # the L1 term is a per-image sum, averaged over the batch
    assert l1_saliency(torch.cat([s0, 2 * s0])).item() == pytest.approx(2.4)


def test_scales_combined_on_s0_grid_with_gammas():
    """App. B: S_g = 0.2 S0 + 0.6 S1 + 0.2 S2, coarse maps brought to S0 by nearest."""
    s0 = torch.zeros(1, 1, 4, 4)
    s1 = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    s2 = torch.ones(1, 1, 1, 1)
    sg = combine_scales([s0, s1, s2], (0.2, 0.6, 0.2))
    assert sg.shape == (1, 1, 4, 4)
    assert torch.allclose(sg[0, 0, :2, :2], torch.full((2, 2), 0.8))
    assert torch.allclose(sg[0, 0, 2:, 2:], torch.full((2, 2), 0.2))


def _reference_algorithm1(s: np.ndarray, window: tuple[int, int], k: int) -> list[tuple[int, int]]:
    """Algorithm 1 written as loops over every position (the specification)."""
    norm = [(c - c.min()) / max(c.max() - c.min(), 1e-12) for c in s]
    s_hat = np.sum(norm, 0)
    h, w = s_hat.shape
    out = []
    for _ in range(k):
        best, arg = -1.0, (0, 0)
        for i in range(h - window[0] + 1):
            for j in range(w - window[1] + 1):
                v = s_hat[i : i + window[0], j : j + window[1]].sum()
                if v > best + 1e-9:
                    best, arg = v, (i, j)
        out.append(arg)
        s_hat[arg[0] : arg[0] + window[0], arg[1] : arg[1] + window[1]] = 0
    return out


def test_algorithm1_hand_made_map_picks_largest_windows_without_overlap():
    """App. A, Algorithm 1: min-max per class, sum, greedy largest-sum windows, zeroing."""
    s = torch.zeros(1, 2, 12, 12)
    s[0, 0, 1:4, 1:4] = 1.0  # class 0: a 3x3 blob of 1.0 (normalised sum 9)
    s[0, 1, 7:11, 6:10] = 0.02  # class 1: faint 4x4 blob, min-max makes it 1.0 (sum 16)
    s[0, 0, 8, 1] = 0.5  # a lone weaker cell
    cells = select_windows(s, (4, 4), 3)[0].tolist()
    assert cells[0] == [7, 6]  # the class-1 blob wins after min-max normalisation
    assert cells[1] in ([0, 0], [0, 1], [1, 0], [1, 1])  # a window holding the 3x3 blob
    assert cells == [list(c) for c in _reference_algorithm1(s[0].numpy(), (4, 4), 3)]
    boxes = [(y, x, y + 4, x + 4) for y, x in cells[:2]]
    (a0, b0, a1, b1), (c0, d0, c1, d1) = boxes
    assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0  # the two lesion windows are disjoint
    # mapped back to a 48x48 image (4 image pixels per cell): patch 16 = 4 cells
    pos = select_patches(s, (48, 48), 16, 2)[0].tolist()
    assert pos[0] == [28, 24] and pos[1] == [c * 4 for c in cells[1]]


def test_algorithm1_matches_loop_reference_on_random_maps():
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        s = torch.rand(2, 2, 9, 7, generator=gen)
        got = select_windows(s, (3, 2), 4)
        for b in range(2):
            assert got[b].tolist() == [
                list(c) for c in _reference_algorithm1(s[b].numpy(), (3, 2), 4)
            ]


def test_patch_positions_clamped_inside_image_and_aligned():
    s = torch.zeros(1, 1, 8, 8)
    s[0, 0, 7, 7] = 1.0  # a hot corner: the window must stay inside
    pos = select_patches(s, (64, 64), 24, 1)[0, 0].tolist()
    assert pos == [40, 40]  # 64 - 24, a multiple of 4
    y, x = pos
    assert 0 <= y <= 64 - 24 and 0 <= x <= 64 - 24


def test_s_l_lands_at_selected_positions():
    """Sec. 3.1: patch maps are remapped to their location in the image (max on overlap)."""
    maps = torch.stack([torch.full((1, 4, 4), 0.3), torch.full((1, 4, 4), 0.7)])[
        None
    ]  # (1,2,1,4,4)
    pos = torch.tensor([[[0, 0], [8, 8]]])  # image pixels, local stride 4 -> cells (0,0), (2,2)
    s_l = write_back(maps, pos, (8, 8), 4)[0, 0]
    assert torch.all(s_l[:2, :2] == 0.3) and torch.all(s_l[2:6, 2:6] == 0.7)
    assert torch.all(s_l[0:2, 2:4] == 0.3) and s_l[6:, :].sum() == 0 and s_l[:, 6:].sum() == 0

    # end to end: S_l of the model is non-zero only inside the chosen patch
    cfg = GLAMConfig(**TINY, m_infer=2)
    model = GLAMModel(cfg).eval()
    out = model.infer(torch.rand(1, 1, 128, 96))
    s_l = out["s_l"][0].amax(0)
    inside = torch.zeros_like(s_l, dtype=torch.bool)
    for y, x in out["pos"][0].tolist():
        inside[y // 4 : (y + 32) // 4, x // 4 : (x + 32) // 4] = True
    assert torch.all(s_l[~inside] == 0) and torch.all(s_l[inside] > 0)
    assert torch.allclose(
        out["s_c"],
        0.5 * F.interpolate(out["s_g"], size=(32, 24), mode="bilinear") + 0.5 * out["s_l"],
    )


def test_predict_shapes_grids_boxes_probabilities():
    method = GLAMMethod(GLAMConfig(**TINY))
    model = method.build_model()
    img = (np.random.default_rng(0).random((256, 192)) * 4095).astype(np.uint16)
    maps = method.predict(model, ImageData(img, "mammo", (0.1, 0.1)))
    assert maps.maps["glam_global"].shape == (2, 8, 6)  # S0: 1/16 of the 128x96 working size
    assert maps.grids["glam_global"].scale == (32.0, 32.0)  # input pixels per map pixel
    assert maps.maps["glam_local"].shape == maps.maps["glam_combined"].shape == (2, 32, 24)
    assert maps.maps["mask_prob"].shape == (2, 256, 192) and maps.mask == "mask_prob"
    assert maps.classes["glam_combined"] == ["malignant", "benign"]
    assert maps.boxes.shape == (1, 4) and maps.box_labels == ["patch 1"]
    y0, x0, y1, x1 = maps.boxes[0]
    assert (y1 - y0, x1 - x0) == (64.0, 64.0)  # patch 32 at half the input resolution
    assert set(maps.probabilities) == {"malignant", "benign"}
    for arr in maps.maps.values():
        assert arr.min() >= 0 and arr.max() <= 1
    with pytest.raises(ValueError, match="2D mammogram"):
        method.predict(model, ImageData(np.zeros((3, 64, 64)), "mammo", (1, 1, 1)))


def test_sixteen_bit_normalisation_uses_real_bit_depth_and_window():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 4096, (64, 64)).astype(np.uint16)  # 12-bit data in 16-bit storage
    assert bit_depth(img) == 12 and bit_depth(img, {"bits_stored": 14}) == 14
    out = normalise(img)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.4 < out.mean() < 0.6  # not squashed into [0, 1/16]
    inv = normalise(img, {"photometric": "MONOCHROME1"})
    assert np.allclose(inv, 1.0 - out)


def _phantom_batch(n: int, size=(128, 96)) -> dict[str, torch.Tensor]:
    from napari_wsseg.methods.glam.data import to_model_input
    from napari_wsseg.phantoms.mammo import make_case

    rng = np.random.default_rng(0)
    kinds = ["malignant", "benign", "normal", "malignant", "normal", "benign"][:n]
    cases = [make_case(rng, k, shape=(256, 192)) for k in kinds]
    x = torch.stack([to_model_input(c.image, size, c.meta) for c in cases])
    y = torch.tensor([[c.labels["malignant"], c.labels["benign"]] for c in cases]).float()
    return {"image": x, "label": y, "label_weight": torch.ones_like(y)}


def _fit(model, method, batch, stage_name, steps) -> list[float]:
    stage = next(s for s in method.stages() if s.name == stage_name)
    opt = torch.optim.Adam(method.trainable(model, stage), lr=stage.lr)
    model.train()
    losses = []
    for _ in range(steps):
        out = method.training_step(model, batch, stage)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    return losses


def test_three_stages_on_tiny_mammo_phantoms_losses_fall():
    """Sec. 3.3: global, then local on the frozen global's patches, then joint."""
    method = GLAMMethod(GLAMConfig(**TINY))
    assert [s.name for s in method.stages()] == ["global", "local", "joint", "masks"]
    assert method.stages()[-1].steps == 0  # ours, run by a fine-tune only
    model = method.build_model()
    batch = _phantom_batch(6)
    lg = _fit(model, method, batch, "global", 15)
    assert np.mean(lg[-3:]) < np.mean(lg[:3])
    frozen = {k: v.clone() for k, v in model.global_net.state_dict().items()}
    ll = _fit(model, method, batch, "local", 15)
    assert np.mean(ll[-3:]) < np.mean(ll[:3])
    for k, v in model.global_net.state_dict().items():  # weights and BN statistics untouched
        assert torch.equal(v, frozen[k]), k
    lj = _fit(model, method, batch, "joint", 10)
    assert np.mean(lj[-3:]) < np.mean(lj[:3])
    assert set(method.training_step(model, batch, method.stages()[2])) >= {
        "loss",
        "l_g",
        "l_l",
        "l_f",
    }


def test_cam_baseline_gap_linear_trains_and_predicts():
    method = GLAMMethod(GLAMConfig(**TINY, cam=True))
    assert [s.name for s in method.stages()] == ["global"]
    model = method.build_model()
    batch = _phantom_batch(4)
    losses = _fit(model, method, batch, "global", 15)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    # GAP + linear == the mean of the class activation map's logits
    model.eval()
    with torch.no_grad():
        g = model.global_out(batch["image"])
        logit_mean = torch.logit(g["s_g"].clamp(1e-7, 1 - 1e-7)).mean((-2, -1))
    assert torch.allclose(torch.sigmoid(logit_mean), g["y_g"], atol=1e-4)
    maps = method.predict(model, ImageData(np.zeros((128, 96), np.uint16), "mammo", (1, 1)))
    assert set(maps.maps) == {"cam", "mask_prob"} and maps.boxes is None


def test_normalisation_keeps_small_bright_masses_unclipped():
    """A mass covering 0.1 % of the pixels stays brighter than the tissue (no p99.5 clip)."""
    img = np.full((100, 100), 2000, np.uint16)
    img[:50] = 2600  # dense tissue
    img[10:13, 10:13] = 3400  # a small mass: 0.09 % of the pixels
    out = normalise(img, {"bits_stored": 12})
    assert out[11, 11] > out[30, 30] + 0.15 > out[80, 80] + 0.15


def test_glam_trains_through_engine_and_predicts(demo_study, tmp_path):
    """The engine runs all three stages on a demo study, registers a model version,
    and the version's predict gives S_g, S_l, S_c and patch boxes."""
    import shutil

    from napari_wsseg.io import read_image
    from napari_wsseg.study import Study
    from napari_wsseg.training.registry import load_model
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    root = tmp_path / "s"
    shutil.copytree(demo_study.root, root)
    config = {**TINY, "global_steps": 2, "local_steps": 2, "joint_steps": 2, "batch_size": 2}
    spec = JobSpec(method="glam", out=str(tmp_path / "run"), study=str(root), config=config)
    result = train(spec)
    assert result.status == "done" and result.version_dir is not None
    assert result.global_step == 6
    method, model = load_model(result.version_dir)
    study = Study.open(root)
    try:
        path = study.images("mammo")[0].path
    finally:
        study.close()
    maps = method.predict(model, read_image(path, modality="mammo"))
    assert {"glam_global", "glam_local", "glam_combined", "mask_prob"} <= set(maps.maps)
    assert maps.boxes is not None and maps.boxes.shape == (1, 4)
    assert set(maps.probabilities) == {"malignant", "benign"}
