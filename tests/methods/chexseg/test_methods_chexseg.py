"""CheXseg: sampler, threshold selection, losses, stages and predict on tiny phantoms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsseg.io import write_mask
from napari_wsseg.methods import get_method
from napari_wsseg.methods.base import Stage
from napari_wsseg.methods.chexseg.data import PMixSampler, pseudo_masks, select_thresholds
from napari_wsseg.methods.chexseg.nets import CheXsegModel, distill_loss, masked_bce
from napari_wsseg.phantoms.xray import make_case
from napari_wsseg.study.snapshot import SnapshotItem
from napari_wsseg.study.vocab import CHEST_FINDINGS


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
def test_pmix_sampler_draw_frequencies(p):
    """Sec. 4.1: each draw is expert with probability p (binomial 5-sigma bound)."""
    n, n_e, n_w = 20000, 5, 15
    draws = np.array(list(PMixSampler(n_e, n_w, p, n, torch.Generator().manual_seed(0))))
    assert len(draws) == n and draws.min() >= 0 and draws.max() < n_e + n_w
    frac = (draws < n_e).mean()
    assert abs(frac - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12
    if p == 0.0:
        assert (draws >= n_e).all()
    if p == 1.0:
        assert (draws < n_e).all()
    if 0 < p < 1:  # uniform within each kind
        counts_e = np.bincount(draws[draws < n_e], minlength=n_e)
        expect = n * p / n_e
        assert np.abs(counts_e - expect).max() <= 5 * np.sqrt(expect)
    same = list(PMixSampler(n_e, n_w, p, 50, torch.Generator().manual_seed(1)))
    assert same == list(PMixSampler(n_e, n_w, p, 50, torch.Generator().manual_seed(1)))


def test_pmix_sampler_refuses_a_kind_it_cannot_draw():
    with pytest.raises(ValueError, match="needs examples"):
        PMixSampler(0, 10, 1.0, 5)
    with pytest.raises(ValueError, match="needs examples"):
        PMixSampler(3, 0, 0.0, 5)
    assert set(PMixSampler(0, 4, 0.5, 100)) <= {0, 1, 2, 3}  # only weak exists


def test_threshold_selection_maximises_iou_hand_example():
    """App. A.1: per-class threshold maximising IoU of (cam >= t) & label on experts."""
    # class 0, two images of 4 pixels; class 1 is never present -> default threshold
    cams = torch.tensor(
        [[[0.9, 0.6, 0.3, 0.1], [0, 0, 0, 0]], [[0.8, 0.4, 0.2, 0.0], [0, 0, 0, 0]]]
    )
    gt = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]], [[1, 0, 0, 0], [0, 0, 0, 0]]]).bool()
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # by hand: t in (0.4, 0.6]: image 1 -> {0,1} IoU 1; image 2 -> {0} IoU 1: mean 1.0
    #          t = 0.35: image 2 -> {0,1} vs {0}: 1/2 -> mean 0.75
    thr, best = select_thresholds(cams, gt, labels, grid=[0.35, 0.5, 0.7], default=0.42)
    assert thr[0] == pytest.approx(0.5) and best[0] == pytest.approx(1.0)
    assert thr[1] == pytest.approx(0.42) and torch.isnan(best[1])
    # with t = 0.7: image 1 -> {0} vs {0,1}: 1/2; image 2 -> 1 => 0.75 (< 1)
    thr2, best2 = select_thresholds(cams, gt, labels, grid=[0.35, 0.7])
    assert thr2[0] == pytest.approx(0.35) and best2[0] == pytest.approx(0.75)
    # pseudo-masks only for findings labelled positive
    pm = pseudo_masks(cams, torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([0.5, 0.0]))
    assert pm[0, 0].tolist() == [True, True, False, False] and pm[0, 1].all()
    assert not pm[1].any()


def test_class_average_dice_loss_hand():
    """App. B.2 class-average Dice: 1 - mean_c (2 sum p g + e) / (sum p + sum g + e)."""
    model = CheXsegModel("small", 2, 8)
    logits = torch.tensor([[[[0.0, 2.0]], [[-1.0, 1.0]]], [[[1.0, -2.0]], [[0.5, 0.0]]]])
    target = torch.tensor([[[[1, 1]], [[0, 1]]], [[[0, 0]], [[1, 0]]]]).float()
    p = torch.sigmoid(logits)
    e = 1e-5
    per_class = [
        (2 * (p[:, c] * target[:, c]).sum() + e) / (p[:, c].sum() + target[:, c].sum() + e)
        for c in range(2)
    ]
    hand = 1 - torch.stack(per_class).mean()
    assert torch.allclose(model.dice(logits, target), hand, atol=1e-6)


def test_distillation_and_classifier_losses_hand():
    """App. B.4: BCE with sigmoid temperature tau; masked BCE on known labels."""
    s, t, tau = torch.tensor([2.0, -4.0]), torch.tensor([10.0, -30.0]), 10.0
    q = torch.sigmoid(t / tau)
    ps = torch.sigmoid(s / tau)
    hand = -(q * ps.log() + (1 - q) * (1 - ps).log()).mean()
    assert torch.allclose(distill_loss(s, t, tau), hand, atol=1e-6)
    logits, lab = torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 0.0]])
    known = torch.tensor([[1.0, 0.0]])
    assert torch.allclose(
        masked_bce(logits, lab, known), -torch.log(torch.sigmoid(torch.tensor(1.0)))
    )


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """8 X-ray phantoms (64 px) as PNG files, 3 with expert masks, 2 held out."""
    import imageio.v3 as iio

    root = tmp_path_factory.mktemp("xr")
    rng = np.random.default_rng(0)
    items = []
    labels = ["cardiomegaly", "normal", ["cardiomegaly", "support_devices"], "pleural_effusion"]
    for i in range(8):
        case = make_case(rng, labels[i % 4], shape=(64, 64))
        path = root / f"x{i}.png"
        iio.imwrite(path, case.image, extension=".png")
        mpath = write_mask(root / f"m{i}.tif", case.mask)
        items.append(
            SnapshotItem(
                image_id=i,
                path=str(path),
                modality="xray",
                labels={k: float(v) for k, v in case.labels.items()},
                mask=str(mpath) if i < 3 else None,
                reference_mask=str(mpath),
                split="train" if i < 6 else "val",
            )
        )
    return items


def _steps(method, model, ds, stage, n, sampler=None):
    """n Adam steps on the stage's trainable parameters; returns the losses."""
    params = method.trainable(model, stage)
    opt = torch.optim.Adam(params, lr=stage.lr)
    order = list(sampler) if sampler is not None else list(range(len(ds)))
    batch = method.collate([ds[i] for i in order[: stage.batch_size]])
    model.train()
    out = []
    for _ in range(n):
        loss = method.training_step(model, batch, stage)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


def test_chexseg_stages_train_and_predict(tiny_study):
    torch.manual_seed(0)
    cls = get_method("chexseg")
    method = cls(backbone="small", image_size=32, seg_channels=16, p_expert=0.5)
    model = method.build_model()
    train = [it for it in tiny_study if it.split == "train"]
    st_c, st_s = method.stages()
    assert (st_c.name, st_s.name) == ("classifier", "segmentation")
    st_c, st_s = Stage("classifier", 1, 6, 3e-3), Stage("segmentation", 1, 6, 3e-3)
    losses = _steps(method, model, method.dataset(train, st_c, model), st_c, 25)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    ds = method.dataset(train, st_s, model)
    # the segmentation encoder starts from the classifier's weights
    for a, b in zip(model.classifier.encoder.parameters(), model.segmenter.encoder.parameters()):
        assert torch.equal(a, b)
    assert (ds.n_expert, ds.n_weak) == (3, 3)
    assert not torch.isnan(model.cam_thresholds).all()
    for i in range(len(ds)):  # pseudo-masks only where the finding is labelled
        s = ds[i]
        lab = torch.tensor([train[i].labels[f] for f in CHEST_FINDINGS]).bool()
        assert not s["mask"][~lab].any()
    sampler = method.sampler(ds, st_s, torch.Generator().manual_seed(0))
    losses = _steps(method, model, ds, st_s, 25, sampler)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert not model.init_from_classifier("segmenter")  # a resumed stage keeps its weights
    maps = method.predict(model, method_image(tiny_study[6]))
    assert maps.maps["gradcam"].shape == (10, 64, 64) == maps.maps["mask_prob"].shape
    assert maps.classes["mask_prob"] == list(CHEST_FINDINGS) and maps.mask == "mask_prob"
    assert set(maps.probabilities) == set(CHEST_FINDINGS)
    assert 0 <= maps.maps["gradcam"].min() and maps.maps["gradcam"].max() <= 1
    metrics = method.validate(model, tiny_study[6:])
    assert 0.0 <= metrics["miou"] <= 1.0


def method_image(item):
    from napari_wsseg.io import read_image

    return read_image(item.path, modality="xray")


def test_distill_mode_teacher_then_student(tiny_study):
    torch.manual_seed(1)
    method = get_method("chexseg")(backbone="small", image_size=32, seg_channels=8, mode="distill")
    model = method.build_model()
    names = [s.name for s in method.stages()]
    assert names == ["classifier", "teacher", "student"]
    train = tiny_study[:6]
    st_t, st_s = Stage("teacher", 1, 3, 3e-3), Stage("student", 1, 6, 3e-3)
    ds_t = method.dataset(train, st_t, model)
    assert len(ds_t) == 3  # expert masks only
    _steps(method, model, ds_t, st_t, 3)
    ds_s = method.dataset(train, st_s, model)
    assert len(ds_s) == 6 and ds_s[0]["soft"].shape == (10, 8, 8)
    losses = _steps(method, model, ds_s, st_s, 20)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="mode"):
        method.__class__(mode="nope")


def test_chexseg_trains_through_the_engine(demo_study, tmp_path):
    """Both stages run through ``training.runner`` on a copy of the demo study; the
    registered version reloads and predicts Grad-CAM, mask probabilities, probabilities."""
    import shutil

    from napari_wsseg.io import read_image
    from napari_wsseg.training.registry import list_models, load_model
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    config = {"backbone": "small", "image_size": 48, "seg_channels": 8}
    config |= {"classifier_batch": 4, "seg_batch": 2, "explain_batch": 4}
    spec = JobSpec("chexseg", str(tmp_path / "run"), study=str(root), config=config)
    spec.steps, spec.val_fraction, spec.checkpoint_every = 2, 0.25, 0
    res = train(spec)
    assert res.status == "done" and res.global_step == 4  # classifier 2 + segmentation 2
    assert res.version_dir is not None and (res.version_dir / "weights.pt").exists()
    assert 0.0 <= res.metrics["miou"] <= 1.0  # Method.validate on the held-out X-ray
    (entry,) = [m for m in list_models(root) if m["method"] == "chexseg"]
    assert entry["info"]["n_expert_masks"] >= 1 and entry["info"]["config"]["image_size"] == 48
    method, model = load_model(res.version_dir)
    assert bool(model.initialised[0]) and torch.isfinite(model.cam_thresholds).all()
    trained = res.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    path = next(p for p in (root / "images" / "xray").iterdir())
    image = read_image(path, modality="xray")
    maps = method.predict(model, image)
    shape = (len(CHEST_FINDINGS), *image.spatial_shape)
    assert maps.maps["gradcam"].shape == shape == maps.maps["mask_prob"].shape
    assert maps.mask == "mask_prob" and set(maps.probabilities) == set(CHEST_FINDINGS)
    assert np.isfinite(maps.maps["mask_prob"]).all() and maps.maps["gradcam"].max() <= 1


@pytest.mark.parametrize(("backbone", "grid"), [("small", (16.0, 0.0)), ("resnet18", (32.0, 0.0))])
def test_chexseg_gradcam_cells_sit_on_their_receptive_fields(backbone, grid):
    """3x3/s2/p1 convolutions centre cell i on stride*i: the Grad-CAM grid must too
    (interpolate(align_corners=False) put the 'small' encoder's maps 7.5 px off)."""
    from napari_wsseg.methods.chexseg.nets import Classifier, make_encoder
    from napari_wsseg.methods.saliency import layer_grid

    torch.manual_seed(0)
    clf = Classifier(make_encoder(backbone), len(CHEST_FINDINGS)).eval()
    x = torch.rand(1, 1, 128, 128)
    assert layer_grid(clf, x) == (grid, grid)
    if backbone == "small":  # the gradient support of cell 2 is centred on pixel 32
        x.requires_grad_(True)
        a = clf.act(clf.encoder(x)[1])
        (g,) = torch.autograd.grad(a[:, :, 2, 2].sum(), x)
        rows = torch.nonzero(g.abs().sum((0, 1, 3)) > 0).flatten()
        assert (rows.min() + rows.max()) / 2 == grid[0] * 2 + grid[1]
    method = get_method("chexseg")(backbone=backbone, image_size=128)
    assert method.config.cam_align == "receptive_field"
    # the pseudo-label maps are the raw Grad-CAM resampled on that grid
    from napari_wsseg.methods.saliency import explain, normalize_maps, upsample_maps

    model = method.build_model()
    model.classifier.load_state_dict(clf.state_dict())
    raw = explain(clf, x.detach(), normalize=False, upsample=False).maps
    want = normalize_maps(upsample_maps(raw, (128, 128), (grid, grid)))
    assert (method._cams(model, x.detach()) - want).abs().max() < 1e-5
    with pytest.raises(ValueError, match="cam_align"):
        get_method("chexseg")(cam_align="corners")
