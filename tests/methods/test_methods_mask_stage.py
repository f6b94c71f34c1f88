"""Our ``masks`` fine-tune stage (not in the GLAM or Distill papers): BCE + soft Dice on
expert / corrected masks added to the method's weak loss (partial supervision)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_wsseg.methods.mask_loss import bce_dice

pytestmark = pytest.mark.usefixtures("seeded_one_thread")  # tests/methods/conftest.py


def test_bce_dice_hand_computation():
    """Per image: BCE mean over pixels, Dice loss 1 - (2 sum pt + 1) / (sum p + sum t + 1);
    averaged over the images with weight 1 only."""
    p = torch.tensor([[[0.8, 0.2]], [[0.5, 0.5]]])  # (B=2, C=1, 2)
    t = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    out = bce_dice(p, t, torch.tensor([1.0, 0.0]))
    bce = -(math.log(0.8) + math.log(0.8)) / 2
    dice = 1 - (2 * 0.8 + 1) / (1.0 + 1.0 + 1)
    assert float(out["mask_bce"]) == pytest.approx(bce, rel=1e-5)
    assert float(out["mask_dice"]) == pytest.approx(dice, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(bce + dice, rel=1e-5)
    both = bce_dice(p, t, torch.tensor([1.0, 1.0]))
    dice2 = 1 - (2 * 1.0 + 1) / (1.0 + 2.0 + 1)
    assert float(both["mask_dice"]) == pytest.approx((dice + dice2) / 2, rel=1e-5)
    none = bce_dice(p.requires_grad_(), t, torch.zeros(2))
    assert float(none["loss"].detach()) == 0.0 and none["loss"].requires_grad  # no mask: no term
    with pytest.raises(ValueError, match="differ"):
        bce_dice(p, t[:, :, :1], torch.ones(2))


def test_bce_dice_can_leave_the_dice_term_out_for_empty_targets():
    """An empty target's soft Dice loss is ~1 for any probability mass above the
    smoothing, even when every pixel is below 0.5 (a correct mask): with
    ``dice_on_empty=False`` only BCE counts there, and the Dice mean is over the
    images that have target."""
    p = torch.full((2, 1, 128), 0.2)
    t = torch.zeros((2, 1, 128))
    t[1, 0, :16] = 1.0
    w = torch.ones(2)
    on = bce_dice(p[:1], t[:1], w[:1])
    assert float(on["mask_dice"]) == pytest.approx(1 - 1 / (0.2 * 128 + 1), rel=1e-5)
    assert float(on["mask_dice"]) > 0.95  # what pulled the normal slides' tiles to 0
    off = bce_dice(p[:1], t[:1], w[:1], dice_on_empty=False)
    assert float(off["mask_dice"]) == 0.0
    assert float(off["loss"]) == pytest.approx(-math.log(0.8), rel=1e-5)
    mixed = bce_dice(p, t, w, dice_on_empty=False)
    dice1 = 1 - (2 * 0.2 * 16 + 1) / (0.2 * 128 + 16 + 1)
    assert float(mixed["mask_dice"]) == pytest.approx(dice1, rel=1e-5)
    bce1 = -(16 * math.log(0.2) + 112 * math.log(0.8)) / 128
    assert float(mixed["mask_bce"]) == pytest.approx((-math.log(0.8) + bce1) / 2, rel=1e-5)


def _glam_batch():
    from napari_wsseg.methods.glam.data import to_model_input
    from napari_wsseg.phantoms.mammo import make_case

    rng = np.random.default_rng(3)
    cases = [make_case(rng, k, shape=(256, 192)) for k in ("malignant", "benign")]
    x = torch.stack([to_model_input(c.image, (128, 96), c.meta) for c in cases])
    y = torch.tensor([[c.labels["malignant"], c.labels["benign"]] for c in cases]).float()
    masks = []
    for c in cases:
        m = torch.from_numpy(np.stack([c.mask == 1, c.mask == 2]).astype(np.float32))[None]
        masks.append(torch.nn.functional.interpolate(m, size=(128, 96), mode="area")[0])
    return {"image": x, "label": y, "label_weight": torch.ones_like(y),
            "mask": torch.stack(masks), "mask_weight": torch.tensor([1.0, 0.0])}  # fmt: skip


def test_glam_masks_stage_adds_mask_loss_to_joint_and_fits_the_mask():
    from napari_wsseg.methods.glam.method import GLAMConfig, GLAMMethod

    tiny = dict(image_size=(128, 96), patch_size=32, global_widths=(4, 8, 8, 16, 16),
                local_widths=(4, 8), local_blocks=(1, 1), attention_hidden=8, k_train=2,
                global_top_t=5.0, joint_lr=3e-3)  # fmt: skip
    method = GLAMMethod(GLAMConfig(**tiny))
    stage = next(s for s in method.stages() if s.name == "masks")
    model = method.build_model()
    batch = _glam_batch()
    with torch.no_grad():
        torch.manual_seed(1)
        joint = model(batch, stage="joint")
        torch.manual_seed(1)
        masks = model(batch, stage="masks")
    assert {"mask_bce", "mask_dice"} <= set(masks) and "mask_bce" not in joint
    extra = float(masks["mask_bce"] + masks["mask_dice"])  # weight 1: S_g and patch terms
    assert float(masks["loss"]) == pytest.approx(float(joint["loss"]) + extra, rel=1e-4)
    opt = torch.optim.Adam(method.trainable(model, stage), lr=stage.lr)
    seen = []
    for _ in range(12):
        out = method.training_step(model, batch, stage)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        seen.append(float(out["mask_bce"] + out["mask_dice"]))
    assert np.mean(seen[-3:]) < np.mean(seen[:3])


def test_glam_dataset_reads_the_accepted_mask_as_class_fractions(tmp_path):
    from napari_wsseg.io import write_mask
    from napari_wsseg.methods.glam.data import MammoDataset
    from napari_wsseg.study.snapshot import SnapshotItem

    img = np.zeros((64, 48), np.uint16)
    mask = np.zeros((64, 48), np.uint8)
    mask[:32, :24] = 1  # malignant quarter
    mask[32:, 24:] = 2
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", img)
    mpath = write_mask(tmp_path / "m.tif", mask)
    items = [SnapshotItem(0, str(tmp_path / "a.tif"), "mammo", {"malignant": 1}, mask=str(mpath)),
             SnapshotItem(1, str(tmp_path / "a.tif"), "mammo", {"malignant": 0})]  # fmt: skip
    ds = MammoDataset(items, (32, 24), ("malignant", "benign"))
    s0, s1 = ds[0], ds[1]
    assert s0["mask"].shape == (2, 32, 24) and float(s0["mask_weight"]) == 1.0
    assert float(s0["mask"][0].mean()) == pytest.approx(0.25)
    assert float(s0["mask"][1, 20:, 14:].min()) == 1.0 and float(s0["mask"][0, 20:].max()) == 0
    assert float(s1["mask_weight"]) == 0.0 and float(s1["mask"].abs().sum()) == 0.0


def _distill_slide(tmp_path, seed: int, label: int):
    """A phantom slide with its accepted mask, the tiny method, its masks stage and a
    model whose student is started (what a fine-tune loads)."""
    from napari_wsseg.io import write_mask
    from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel
    from napari_wsseg.phantoms.slide import make_case, write_pyramid
    from napari_wsseg.study.snapshot import SnapshotItem

    case = make_case(np.random.default_rng(seed), label, shape=(256, 256))
    path = write_pyramid(tmp_path / f"s{seed}.tif", case.image, 64, 2, compression="zlib")
    mpath = write_mask(tmp_path / f"m{seed}.tif", case.mask)
    item = SnapshotItem(0, str(path), "slide", {"tumor": label}, mask=str(mpath))
    cfg = DistillConfig(channels=(4, 8), hidden=16, feat_dim=8, attn_dim=4, max_bag=64)
    method = DistillToLabel(cfg)
    stage = next(s for s in method.stages() if s.name == "masks")
    model = method.build_model()
    model.student_started.fill_(1)
    return case, item, cfg, method, stage, model


def test_distill_masks_stage_tile_targets_and_loss(tmp_path):
    """Tile targets come from the accepted mask on the tile grid; the stage's loss is
    eq. (5) plus BCE/Dice of the student's tile probabilities (teacher frozen)."""
    from napari_wsseg.methods.distill.losses import student_loss

    case, item, cfg, method, stage, model = _distill_slide(tmp_path, 4, 1)
    assert stage.steps == 0  # ours: only a fine-tune (or --steps) runs it
    ds = method.dataset([item], stage, model)
    sample = ds[0]
    bag = ds.bags[0]
    from napari_wsseg.methods.tiling import tile_labels

    truth = tile_labels(case.mask, bag.grid)[bag.rows, bag.cols]
    assert float(sample["tile_weight"]) == 1.0 and len(sample["tile_label"]) == len(bag)
    assert np.array_equal(sample["tile_label"].numpy(), truth)  # max_bag >= tiles: all
    assert truth.any() and not truth.all()
    batch = method.collate([sample])
    x = batch["tiles"][0]
    with torch.no_grad():
        out = model(batch, stage="masks")
        weak = student_loss(model.student, model.teacher, x, batch["label"][0], cfg)
        prob = torch.sigmoid(model.student.instance_logits(x))
    extra = bce_dice(prob[None, None], torch.from_numpy(truth)[None, None], torch.ones(1))
    assert float(out["loss"]) == pytest.approx(float(weak["loss"] + extra["loss"]), rel=1e-4)
    assert method.trainable(model, stage) == [p for p in model.student.parameters()]
    plain = method.dataset([item], method.stages()[1], model)[0]  # student: no targets
    assert float(plain["tile_weight"]) == 0.0


def test_distill_masks_stage_grades_a_normal_slide_by_bce_only(tmp_path):
    """A normal slide's correction (an empty mask) adds BCE, not the soft Dice of an empty
    target (~1 whatever the tiles' side of 0.5), which shrank the held-out tumours in
    bench_loop (docs/training.md)."""
    from napari_wsseg.methods.distill.losses import student_loss

    case, item, cfg, method, stage, model = _distill_slide(tmp_path, 5, 0)
    assert not case.mask.any()
    batch = method.collate([method.dataset([item], stage, model)[0]])
    x = batch["tiles"][0]
    with torch.no_grad():
        out = model(batch, stage="masks")
        weak = student_loss(model.student, model.teacher, x, batch["label"][0], cfg)
        prob = torch.sigmoid(model.student.instance_logits(x)).clamp(1e-6, 1 - 1e-6)
    bce = float(-torch.log(1 - prob).mean())
    assert float(out["mask_dice"]) == 0.0
    assert float(out["loss"]) == pytest.approx(float(weak["loss"]) + bce, rel=1e-4)
