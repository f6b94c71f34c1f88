"""Manifold-driven attention (Adiga et al.): network, eq. 2 margin loss, distance-weighted
sampling, class-balanced / DCML batches, a few training steps and predict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods import get_method
from napari_wsseg.methods.manifold import method as mf
from napari_wsseg.methods.manifold.data import ClassBalancedSampler, DCMLSampler
from napari_wsseg.methods.manifold.losses import (
    cluster_embeddings,
    distance_weights,
    margin_loss,
    sample_pairs,
    subspace_slices,
)
from napari_wsseg.methods.manifold.nets import AttentionModule, TruncatedResNet
from napari_wsseg.study.snapshot import SnapshotItem

NAMES = ("melanoma", "nevus", "keratosis")
SMALL = dict(
    image_size=32,
    layers=(1, 1, 1),
    widths=(8, 16, 32),
    stem_stride=1,
    max_pool=False,
    embedding_dim=16,
    unet_features=(8, 8, 16, 32, 64, 8),
    n_learners=2,
    recluster_every=2,
    metric_lr=3e-3,
    unet_lr=3e-3,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/methods/conftest.py


@pytest.fixture
def skin_items(monkeypatch):
    """30 tiny RGB images: a disc whose colour gives the class, on a skin-like background.
    Images live in memory; the method's loaders are pointed at them."""
    rng = np.random.default_rng(0)
    store: dict[str, np.ndarray] = {}
    items = []
    yy, xx = np.mgrid[:32, :32]
    colours = np.array([[90, 40, 30], [150, 100, 60], [60, 60, 110]], float)
    for i in range(30):
        c = i % 3
        cy, cx = rng.uniform(11, 21, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(5, 8) ** 2
        img = np.full((32, 32, 3), [205, 165, 145], float) + rng.normal(0, 6, (32, 32, 3))
        img[disc] = colours[c] + rng.normal(0, 6, (int(disc.sum()), 3))
        store[f"img{i}.png"] = img.clip(0, 255).astype(np.uint8)
        store[f"mask{i}.png"] = disc.astype(np.uint8)
        labels = {n: int(j == c) for j, n in enumerate(NAMES)}
        items.append(SnapshotItem(i, f"img{i}.png", "skin", labels, reference_mask=f"mask{i}.png"))
    monkeypatch.setattr(
        mf, "load_item_image", lambda it: ImageData(store[it.path], "skin", (1.0, 1.0), rgb=True)
    )
    monkeypatch.setattr(mf, "load_item_mask", lambda p: store[p])
    return items, store


def run_stage(method, model, items, stage, steps):
    """Drive one stage through the Method protocol; the list of total losses."""
    ds = method.dataset(items, stage, model)
    sampler = method.sampler(ds, stage, torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=stage.batch_size,
        sampler=sampler,
        shuffle=sampler is None,
        collate_fn=method.collate,
        generator=torch.Generator().manual_seed(0),
    )
    opt = torch.optim.Adam(method.trainable(model, stage), lr=stage.lr)
    losses: list[float] = []
    while len(losses) < steps:
        for batch in loader:
            model.train()
            out = method.training_step(model, batch, stage)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            losses.append(float(out["loss"].detach()))
            if len(losses) == steps:
                break
    return losses


def test_registry_and_resnet50_stage3_shape():
    """METHOD is registered; the default backbone is ResNet-50 cut after stage 3 (1024 ch, /16)."""
    assert get_method("manifold") is mf.ManifoldAttention
    net = TruncatedResNet()
    f = net(torch.zeros(1, 3, 64, 64))
    assert f.shape == (1, 1024, 4, 4) and net.out_channels == 1024 and net.stride == 16


def test_dilated_stage3_halves_the_stride_with_the_same_weights():
    """dilate_last: stride 4 -> 2 (32x32 maps at 64 px), same parameter count."""
    torch.manual_seed(0)
    kw = dict(layers=(1, 2, 2), widths=(4, 8, 8), stem_stride=1, max_pool=False)
    plain, dil = TruncatedResNet(**kw), TruncatedResNet(**kw, dilate_last=True)
    x = torch.randn(1, 3, 64, 64)
    assert plain(x).shape[-2:] == (16, 16) and plain.stride == 4
    assert dil(x).shape[-2:] == (32, 32) and dil.stride == 2
    n = sum(p.numel() for p in plain.parameters())
    assert n == sum(p.numel() for p in dil.parameters())
    # Later blocks of stage 3 see through a dilation of 2; earlier stages untouched.
    assert dil.layer3[1].conv2.dilation == (2, 2)
    assert dil.layer2[0].conv2.stride == (2, 2)


def test_attention_module_eq1_shape_and_range():
    """Eq. 1: a_i = A(f_i) is one (m x n) map in (0, 1) with 128, 32, 1 3x3 filters."""
    torch.manual_seed(0)
    att = AttentionModule(24)
    convs = [m for m in att.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 32, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)
    with torch.no_grad():
        a = att(10 * torch.randn(2, 24, 7, 5))
    assert a.shape == (2, 1, 7, 5)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and float(a.std()) > 0


def test_margin_loss_eq2_hand_computation():
    """Eq. 2: [alpha + mu (D - beta)]_+ averaged over the non-zero pairs (Wu et al.)."""
    d = torch.tensor([0.5, 1.5, 1.3, 0.9])
    mu = torch.tensor([1.0, 1.0, -1.0, -1.0])
    # alpha=0.2, beta=1.2: [0.2-0.7]+=0, [0.2+0.3]=0.5, [0.2-0.1]=0.1, [0.2+0.3]=0.5
    loss, active = margin_loss(d, mu, alpha=0.2, beta=1.2)
    assert int(active) == 3
    assert float(loss) == pytest.approx((0.5 + 0.1 + 0.5) / 3)


def test_distance_weights_match_inverse_q_on_tiny_example():
    """Wu et al.: w ∝ 1/q(d), q(d) ∝ d^(n-2)(1-d²/4)^((n-3)/2), d clipped at 0.5,
    zero for positives, self and d >= 1.4."""
    n = 4
    dist = torch.tensor(
        [[0.0, 0.3, 0.8, 1.1], [0.3, 0.0, 1.0, 1.5], [0.8, 1.0, 0.0, 0.6], [1.1, 1.5, 0.6, 0.0]]
    )
    labels = torch.tensor([0, 1, 2, 2])
    w = distance_weights(dist, labels, dim=n)

    def inv_q(d):
        d = max(d, 0.5)
        return 1.0 / (d ** (n - 2) * (1 - d * d / 4) ** ((n - 3) / 2))

    row0 = [0.0, inv_q(0.3), inv_q(0.8), inv_q(1.1)]
    expect0 = np.array(row0) / max(row0)
    np.testing.assert_allclose(w[0].numpy(), expect0, rtol=1e-5)
    assert float(w[1, 3]) == 0.0  # d = 1.5 > 1.4 gives no loss: never sampled
    assert float(w[2, 3]) == 0.0 and float(w[3, 2]) == 0.0  # same class
    # One negative per positive pair, always of another class.
    a, p, mu = sample_pairs(dist, labels, n, generator=torch.Generator().manual_seed(0))
    pos = mu > 0
    assert sorted(zip(a[pos].tolist(), p[pos].tolist())) == [(2, 3), (3, 2)]
    assert (labels[a[~pos]] != labels[p[~pos]]).all() and int((~pos).sum()) == 2


def test_class_balanced_sampler_gives_8_per_class():
    """Every consecutive batch of 8 C indices holds exactly 8 images of each class."""
    labels = np.array([0] * 20 + [1] * 5 + [2] * 11)
    s = ClassBalancedSampler(labels, per_class=8, generator=torch.Generator().manual_seed(1))
    idx = list(s)
    assert len(idx) == len(s) and len(idx) % 24 == 0
    for b in range(0, len(idx), 24):
        counts = np.bincount(labels[idx[b : b + 24]], minlength=3)
        assert counts.tolist() == [8, 8, 8]
    assert len(set(idx[:24]) & set(range(20))) == 8  # class 0 drawn without replacement


def test_dcml_subspaces_and_cluster_assignment():
    """DCML: d split into K contiguous sub-spaces; k-means groups, relabelled to the old
    learners by overlap; the sampler draws each batch from its learner's cluster."""
    sl = subspace_slices(128, 4)
    assert [(s.start, s.stop) for s in sl] == [(0, 32), (32, 64), (64, 96), (96, 128)]
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    emb = np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(20, 3))
    first = cluster_embeddings(emb, 2, seed=0)
    assert len(set(first[:10])) == 1 and len(set(first[10:])) == 1 and first[0] != first[10]
    swapped = 1 - first
    again = cluster_embeddings(emb, 2, seed=5, previous=swapped)
    np.testing.assert_array_equal(again, swapped)
    labels = np.tile([0, 1], 10)
    state: dict = {}
    s = DCMLSampler(labels, lambda: emb, k=2, per_class=3, recluster_every=2, state=state)
    idx = list(s)
    assert state["epochs"] == 1 and len(idx) == len(s)
    for b in range(0, len(idx), 6):
        batch = [(j % 20, j // 20 - 1) for j in idx[b : b + 6]]
        learner = batch[0][1]
        assert learner in (0, 1) and all(t[1] == learner for t in batch)
        assert {int(s.assign[i]) for i, _ in batch} == {learner}
        assert np.bincount(labels[[i for i, _ in batch]]).tolist() == [3, 3]


def test_stages_follow_the_config():
    names = lambda m: [s.name for s in m.stages()]  # noqa: E731
    assert names(mf.ManifoldAttention()) == ["metric_dcml", "metric_full", "unet"]
    assert names(mf.ManifoldAttention(dcml=False)) == ["metric", "unet"]
    assert names(mf.ManifoldAttention(mode="gradcam")) == ["classifier", "unet"]
    assert names(mf.ManifoldAttention(mode="supervised")) == ["unet"]
    st = mf.ManifoldAttention(metric_steps=300).stages()
    assert (st[0].steps, st[1].steps, st[0].batch_size) == (250, 50, 24)


def test_training_steps_lower_the_losses_and_predict_shapes(skin_items):
    """DCML metric stage, full-embedding stage and proxy-label U-Net train through the
    protocol; losses fall; predict gives image-sized maps and class probabilities."""
    items, store = skin_items
    torch.manual_seed(0)
    method = mf.ManifoldAttention(**SMALL)
    model = method.build_model()
    dcml, full, unet = method.stages()
    metric = run_stage(method, model, items, dcml, 16)
    assert np.mean(metric[-4:]) < np.mean(metric[:4])
    run_stage(method, model, items, full, 2)
    seg = run_stage(method, model, items, unet, 12)
    assert np.mean(seg[-3:]) < np.mean(seg[:3])
    assert float(model.centroids.norm(dim=1).min()) == pytest.approx(1.0, abs=1e-4)
    image = ImageData(store["img0.png"][:30, :28], "skin", (1.0, 1.0), rgb=True)
    maps = method.predict(model, image)
    assert set(maps.maps) == {"attention", "mask_prob"} and maps.mask == "mask_prob"
    for m in maps.maps.values():
        assert m.shape == (30, 28) and m.min() >= 0 and m.max() <= 1
    assert set(maps.probabilities) == set(NAMES)
    assert math.isclose(sum(maps.probabilities.values()), 1.0, rel_tol=1e-5)
    val = method.validate(model, items[:3])
    assert set(val) == {"dice", "dice_init", "accuracy"}
    assert all(0.0 <= v <= 1.0 for v in val.values())


def test_plain_metric_learning_loss_falls(skin_items):
    """ML baseline (dcml=False): the margin loss on class-balanced batches falls."""
    items, _ = skin_items
    torch.manual_seed(1)
    method = mf.ManifoldAttention(dcml=False, **SMALL)
    model = method.build_model()
    losses = run_stage(method, model, items, method.stages()[0], 12)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_expert_masks_replace_proxy_masks_and_bad_labels_raise(skin_items):
    """Partial supervision: an accepted mask is used as is; one class only is refused."""
    items, store = skin_items
    items[0].mask = "mask0.png"
    method = mf.ManifoldAttention(**SMALL)
    model = method.build_model()
    ds = method.dataset(items[:6], method.stages()[-1], model)
    assert ds.masks[0].numpy().tolist() == (store["mask0.png"] > 0).astype(int).tolist()
    only = [it for it in items if it.labels["nevus"]]
    with pytest.raises(ValueError, match="at least two classes"):
        method.dataset(only, method.stages()[0], model)
    with pytest.raises(ValueError, match="mode must be one of"):
        mf.ManifoldAttention(mode="cam").build_model()


def test_gradcam_baseline_trains_and_predicts(skin_items):
    """Baseline: classifier CE falls; Grad-CAM proxies feed the U-Net; predict gives a
    (C, Y, X) Grad-CAM in [0, 1] and classifier probabilities."""
    items, store = skin_items
    torch.manual_seed(2)
    method = mf.ManifoldAttention(mode="gradcam", **SMALL)
    model = method.build_model()
    cls_stage, unet = method.stages()
    ce = run_stage(method, model, items, cls_stage, 10)
    assert np.mean(ce[-3:]) < np.mean(ce[:3])
    ds = method.dataset(items[:6], unet, model)
    assert ds.masks.shape == (6, 32, 32) and 0 < float(ds.masks.float().mean()) < 1
    maps = method.predict(model, ImageData(store["img1.png"], "skin", (1.0, 1.0), rgb=True))
    assert maps.maps["gradcam"].shape == (3, 32, 32) and maps.classes["gradcam"] == list(NAMES)
    assert maps.maps["gradcam"].min() >= 0 and maps.maps["gradcam"].max() <= 1
    assert math.isclose(sum(maps.probabilities.values()), 1.0, rel_tol=1e-5)


def test_runs_through_the_training_engine(skin_items, tmp_path):
    """The engine drives all three DCML stages (ints from the samplers, learners decoded)
    and the trained model predicts."""
    from napari_wsseg.study.snapshot import Snapshot
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    items, store = skin_items
    snap = tmp_path / "snapshot.json"
    Snapshot("memory", items).save(snap)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()}
    spec = JobSpec(
        method="manifold",
        out=str(tmp_path / "run"),
        snapshot=str(snap),
        config=config,
        steps=2,
        register=False,
        amp=False,
        channels_last=False,
        checkpoint_every=0,
    )
    result = train(spec)
    assert result is not None
    events = (tmp_path / "run" / "progress.jsonl").read_text()
    for stage in ("metric_dcml", "metric_full", "unet"):
        assert stage in events


def test_attention_collapse_is_detected_and_logged_by_the_engine(
    skin_items, tmp_path, monkeypatch
):
    """A class whose mean attention falls near 0 (the collapse of docs/methods/manifold.md)
    raises one 'warning' progress event naming the class; healthy classes raise none."""
    from napari_wsseg.methods.manifold import model as mf_model
    from napari_wsseg.study.snapshot import Snapshot
    from napari_wsseg.training.progress import read_progress
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    real = mf_model.class_attention_means

    def collapsed(att, labels, n_classes):  # keratosis (class 2) coded by ~zero attention
        out = real(att, labels, n_classes)
        out[2] = 1e-3
        return out

    monkeypatch.setattr(mf_model, "class_attention_means", collapsed)
    items, _ = skin_items
    snap = tmp_path / "snapshot.json"
    Snapshot("memory", items).save(snap)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in SMALL.items()}
    config.update(dcml=False, metric_steps=12, unet_steps=1)
    spec = JobSpec(method="manifold", out=str(tmp_path / "run"), snapshot=str(snap),
                   config=config, register=False, amp=False, channels_last=False,
                   checkpoint_every=0)  # fmt: skip
    train(spec)
    warns = [e for e in read_progress(tmp_path / "run") if e.get("event") == "warning"]
    assert len(warns) == 1, warns
    assert warns[0]["stage"] == "metric" and "'keratosis'" in warns[0]["message"]
    assert warns[0]["step"] == 10  # after the monitor's 10-step warm-up
