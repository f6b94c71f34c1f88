"""IAG-Net: each equation against a hand computation, then the model end to end."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods import get_method
from napari_wsseg.methods.base import unwrap
from napari_wsseg.methods.iagnet import losses as L
from napari_wsseg.methods.iagnet.data import infer_volume, load_case, sample_slices
from napari_wsseg.methods.iagnet.method import IAGNet
from napari_wsseg.methods.iagnet.model import IAGNetModel
from napari_wsseg.study.snapshot import SnapshotItem

TINY = (4, 4, 8, 8, 8, 4)  # BasicUNet widths for tests; C = 4


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_preprocess_hu_window():
    v = torch.tensor([-1000.0, -125.0, 112.5, 350.0, 2000.0])
    assert torch.allclose(L.preprocess_hu(v), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_eq1_eq2_attention_logit_and_probability():
    """(1) a_x = w_a^T f_x, (2) p_x = sigmoid(a_x), through the model's heads."""
    model = IAGNetModel(views=("axial",), features=TINY)
    f = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, -1.0, 0.0, 0.0]])
    with torch.no_grad():
        model.heads["axial"].w_a.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    a = f @ model.heads["axial"].w_a
    assert torch.allclose(a, torch.tensor([-1.5, 2.5]))
    p = L.attention_probability(a)
    assert torch.allclose(p, torch.tensor([sig(-1.5), sig(2.5)]))


def test_eq3_attention_loss():
    """(3): p = [0.5, 0.75], y = [1, 0] -> -ln 0.5 - ln 0.25 = 3 ln 2 (mean: 1.5 ln 2)."""
    a = torch.tensor([0.0, math.log(3.0)])
    y = torch.tensor([1.0, 0.0])
    assert L.attention_loss(a, y).item() == pytest.approx(3 * math.log(2.0), rel=1e-6)
    assert L.attention_loss(a, y, "mean").item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_eq4_eq5_softmax_attention_pooling():
    """(4) alpha = softmax(a) = [1/4, 3/4]; (5) h = sum alpha f = [1, 6]."""
    a = torch.tensor([0.0, math.log(3.0)])
    assert torch.allclose(L.attention_weights(a), torch.tensor([0.25, 0.75]))
    f = torch.tensor([[4.0, 0.0], [0.0, 8.0]])
    assert torch.allclose(L.attention_pool(a, f), torch.tensor([1.0, 6.0]))


def test_eq6_eq7_global_classifier_bce():
    """(7) P_g = sigmoid(w_g^T h) = sigmoid(-2); (6) y=1 -> ln(1 + e^2), y=0 -> ln(1 + e^-2)."""
    logit = L.global_logit(torch.tensor([1.0, 6.0]), torch.tensor([1.0, -0.5]))
    assert logit.item() == pytest.approx(-2.0)
    assert L.global_loss(logit, torch.tensor(1.0)).item() == pytest.approx(math.log(1 + math.e**2))
    assert L.global_loss(logit, torch.tensor(0.0)).item() == pytest.approx(
        math.log(1 + math.e**-2)
    )


def test_eq9_kmeans_split_hand_example():
    """(9): {0.1, 0.15, 0.2} vs {0.8, 0.9}; errata: tumour bag X_f is the high side."""
    p = torch.tensor([0.1, 0.2, 0.15, 0.9, 0.8])
    assert L.kmeans2_threshold(p).item() == pytest.approx(0.2)
    xf, xb = L.split_bags(p)
    assert xf.tolist() == [False, False, False, True, True]
    assert (xb == ~xf).all()


def test_eq9_kmeans_split_is_the_exact_optimum():
    """(9) against brute force over every 2-partition of 9 random values."""
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        v = torch.rand(9, generator=gen, dtype=torch.float64)
        best = math.inf
        for mask in itertools.product([0, 1], repeat=9):
            m = torch.tensor(mask, dtype=torch.bool)
            if m.all() or not m.any():
                continue
            sse = ((v[m] - v[m].mean()) ** 2).sum() + ((v[~m] - v[~m].mean()) ** 2).sum()
            best = min(best, float(sse))
        xf = v > L.kmeans2_threshold(v)
        got = ((v[xf] - v[xf].mean()) ** 2).sum() + ((v[~xf] - v[~xf].mean()) ** 2).sum()
        assert float(got) == pytest.approx(best, rel=1e-9)


def test_eq10_to_eq13_bag_loss_with_errata_labels():
    """(10)-(11) via (13): bag logits mean(2, 0) = 1 and mean(-1, -3) = -2;
    (12) with labels 1/0: ln(1 + e^-1) + ln(1 + e^-2)."""
    l = torch.tensor([2.0, 0.0, -1.0, -3.0])
    p = torch.tensor([0.9, 0.8, 0.1, 0.2])
    want = math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))
    assert L.unannotated_local_loss(l, p).item() == pytest.approx(want, rel=1e-6)


def test_eq13_linear_classifier_commutes_with_bag_average():
    """(13): w_l^T (mean f over the bag) == mean of w_l^T f_x."""
    gen = torch.Generator().manual_seed(0)
    f, w = torch.randn(10, 4, generator=gen), torch.randn(4, generator=gen)
    bag = torch.tensor([True, False] * 5)
    assert torch.allclose(f[bag].mean(0) @ w, L.bag_logit(f @ w, bag))


def test_eq12_constant_attention_gives_no_tumour_bag():
    """(9) on a constant map: X_f = {p > t_a} is empty, only the background bag counts."""
    l = torch.tensor([0.0, 0.0])
    loss = L.unannotated_local_loss(l, torch.tensor([0.5, 0.5]))
    assert loss.item() == pytest.approx(math.log(2.0))


def test_eq14_eq15_annotated_local_loss():
    """(14) q = sigmoid(l) = [0.5, 0.75]; (15) y = [0, 1] -> ln 2 + ln 4/3."""
    loss = L.annotated_local_loss(torch.tensor([0.0, math.log(3.0)]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(math.log(2) + math.log(4 / 3), rel=1e-6)


def test_eq16_lambda_is_max_attention_or_one():
    p = torch.tensor([0.2, 0.7, 0.4], requires_grad=True)
    lam = L.adaptive_lambda(p)
    assert lam.item() == pytest.approx(0.7) and not lam.requires_grad
    assert L.adaptive_lambda(p, constant=True).item() == 1.0


def test_eq17_to_eq19_total_loss():
    """(19): L = L_global + beta (L_att + L_L), beta = 20."""
    t = L.total_loss(torch.tensor(0.5), torch.tensor(0.25), torch.tensor(0.125))
    assert t.item() == pytest.approx(0.5 + 20 * 0.375)


def _sample(view, label, mask, seed=0, shape=(3, 1, 16, 20)):
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(shape, generator=gen)
    m = None if mask is None else (torch.rand(shape, generator=gen) > 0.8).float()
    return {"image": img, "mask": m, "label": label, "view": view}


def test_eq8_eq16_eq18_batch_composition():
    """(8) mean of l_G; (18)/(16) means over annotated / weak-only positives with
    lambda = max p; negatives feed only (8); total (19)."""
    torch.manual_seed(0)
    model = IAGNetModel(views=("axial", "coronal"), features=TINY)
    batch = [
        _sample("axial", 1.0, True, 1),
        _sample("coronal", 1.0, None, 2),
        _sample("axial", 0.0, None, 3),
    ]
    out = model(batch)
    with torch.no_grad():
        terms = []
        for s in batch:
            f, a, l = model.instance_scores(s["view"], s["image"])
            h = L.attention_pool(a, f)
            terms.append(
                (
                    a,
                    l,
                    L.global_loss(
                        L.global_logit(h, model.heads[s["view"]].w_g), torch.tensor(s["label"])
                    ),
                )
            )
        g = sum(t[2] for t in terms) / 3
        y0 = batch[0]["mask"].reshape(-1)
        att = L.attention_loss(terms[0][0], y0)
        ll = L.annotated_local_loss(terms[0][1], y0)
        p1 = torch.sigmoid(terms[1][0])
        lu = p1.max() * L.unannotated_local_loss(terms[1][1], p1)
    assert out["global"].item() == pytest.approx(g.item(), rel=1e-5)
    assert out["att"].item() == pytest.approx(att.item(), rel=1e-5)
    assert out["local_annotated"].item() == pytest.approx(ll.item(), rel=1e-5)
    assert out["local_unannotated"].item() == pytest.approx(lu.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx((g + 20 * (att + ll + lu)).item(), rel=1e-5)


def test_ablation_switches_drop_their_terms():
    batch = [_sample("axial", 1.0, True, 1), _sample("axial", 1.0, None, 2)]
    torch.manual_seed(0)
    glob = IAGNetModel(views=("axial",), features=TINY, local_loss=False)(batch)
    assert glob["loss"].item() == pytest.approx(glob["global"].item(), rel=1e-6)
    torch.manual_seed(0)
    loc = IAGNetModel(views=("axial",), features=TINY, global_loss=False)(batch)
    assert loc["global"].item() == 0.0 and loc["loss"].item() > 0
    items = [
        SnapshotItem(1, "a.npy", "ct", {"pdac": 1}, mask="a_mask.npy"),
        SnapshotItem(2, "b.npy", "ct", {"pdac": 1}),
        SnapshotItem(3, "c.npy", "ct", {"pdac": 0}),
    ]
    assert len(IAGNet(use_unannotated=False).training_cases(items)) == 2
    assert len(IAGNet().training_cases(items)) == 3


def test_unannotated_warmup_delays_eq12():
    """With ``unannotated_warmup=1`` the first training pass has no eq. (12) term."""
    torch.manual_seed(0)
    model = IAGNetModel(views=("axial",), features=TINY, unannotated_warmup=1).train()
    batch = [_sample("axial", 1.0, None, 2)]
    assert model(batch)["local_unannotated"].item() == 0.0
    assert model(batch)["local_unannotated"].item() > 0.0
    assert int(model.steps_seen) == 2


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_feature_map_shape_2d(view):
    model = IAGNetModel(views=(view,), features=TINY)
    fmap = model.feature_map(view, torch.rand(2, 1, 20, 28))
    assert fmap.shape == (2, 4, 20, 28)


def test_sample_slices_interval_in_1_to_5():
    gen = torch.Generator().manual_seed(0)
    steps = set()
    for _ in range(50):
        idx = sample_slices(30, (1, 5), 0, gen)
        d = np.diff(idx)
        assert len(set(d.tolist())) <= 1 and idx[0] < (d[0] if len(d) else 30)
        steps.add(int(d[0]))
    assert steps == {1, 2, 3, 4, 5}
    capped = sample_slices(30, (1, 1), 7, gen)  # interval raised to ceil(30 / 7) = 5
    assert len(capped) <= 7 and set(np.diff(capped).tolist()) == {5}


def _phantom(rng, positive, shape=(12, 24, 24)):
    """HU noise around 40 with a bright 60 HU... 150 HU cube in positives."""
    vol = rng.normal(40.0, 10.0, shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    if positive:
        z, y, x = rng.integers(2, 8), rng.integers(3, 15), rng.integers(3, 15)
        mask[z : z + 4, y : y + 6, x : x + 6] = 1
        vol[mask > 0] += 150.0
    return vol, mask


def _study(tmp_path, n_pos=4, n_neg=2, n_annot=2, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n_pos + n_neg):
        pos = i < n_pos
        vol, mask = _phantom(rng, pos)
        np.save(tmp_path / f"v{i}.npy", vol)
        np.save(tmp_path / f"m{i}.npy", mask)
        items.append(
            SnapshotItem(
                i,
                str(tmp_path / f"v{i}.npy"),
                "ct",
                {"pdac": int(pos)},
                mask=str(tmp_path / f"m{i}.npy") if i < n_annot else None,
                reference_mask=str(tmp_path / f"m{i}.npy"),
            )
        )
    return items


def test_training_steps_reduce_loss(tmp_path):
    torch.manual_seed(0)
    items = _study(tmp_path)
    method = get_method("iagnet")(features=TINY, views=("axial",), lr=1e-2)
    stage = method.stages()[0]
    model = method.build_model()
    data = method.dataset(items, stage, model)
    opt = torch.optim.Adam(model.parameters(), lr=stage.lr)
    losses = []
    for _ in range(40):
        batch = method.collate([data[i] for i in torch.randperm(len(data))[:1].tolist()])
        loss = method.training_step(model, batch, stage)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    metrics = method.validate(model, items)
    assert set(metrics) == {"dice", "sensitivity", "specificity"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_predict_maps_shapes_ranges_and_gate():
    torch.manual_seed(0)
    method = IAGNet(features=TINY, chunk_slices=3)
    model = method.build_model()
    vol, _ = _phantom(np.random.default_rng(1), True)
    maps = method.predict(model, ImageData(vol, "ct", (2.5, 0.8, 0.8)))
    assert set(maps.maps) == {"attention", "local", "mask_prob"} and maps.mask == "mask_prob"
    for m in maps.maps.values():
        assert m.shape == vol.shape and m.dtype == np.float32
        assert 0.0 <= m.min() and m.max() <= 1.0
    pg = maps.probabilities["pdac"]
    assert 0.0 < pg < 1.0
    want = (maps.maps["attention"] + maps.maps["local"]) / 2 if pg > 0.5 else 0.0
    assert np.allclose(maps.maps["mask_prob"], want)  # (22) at threshold 0.5; (21) gate
    with pytest.raises(ValueError, match="CT volume"):
        method.predict(model, ImageData(np.zeros((4, 8, 8, 3)), "ct", (1, 1, 1), rgb=True))


def test_chunked_inference_equals_unchunked():
    torch.manual_seed(0)
    model = IAGNetModel(features=TINY).eval()
    vol, _ = _phantom(np.random.default_rng(2), True)
    one = infer_volume(model, vol, L.HU_WINDOW, chunk_slices=1000)
    few = infer_volume(model, vol, L.HU_WINDOW, chunk_slices=5)
    assert np.allclose(one["p"], few["p"], atol=1e-5)
    assert np.allclose(one["q"], few["q"], atol=1e-5)
    assert one["pg"] == pytest.approx(few["pg"], abs=1e-5)
    # and the streamed pooling equals eqs. (4)-(7) on the whole axial stack at once
    with torch.inference_mode():
        x = L.preprocess_hu(torch.from_numpy(vol))[:, None]
        f, a, _ = model.instance_scores("axial", x)
        pg = torch.sigmoid(L.global_logit(L.attention_pool(a, f), model.heads["axial"].w_g))
    assert few["pg_views"]["axial"] == pytest.approx(pg.item(), abs=1e-5)


def test_mask_shape_mismatch_names_the_file(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((4, 8, 8), np.float32))
    np.save(tmp_path / "m.npy", np.zeros((4, 8, 9), np.uint8))
    with pytest.raises(ValueError, match="m.npy"):
        load_case(str(tmp_path / "v.npy"), str(tmp_path / "m.npy"))


def test_iagnet_trains_through_the_engine(demo_study, tmp_path):
    """Algorithm 1 runs through ``training.runner`` on a copy of the demo study (one
    annotated and one weak-only CT); the registered version reloads and predicts
    attention (2), local (14) and mask_prob (22) volumes of the image's shape, and P_g (7)."""
    import shutil

    from napari_wsseg.io import read_image
    from napari_wsseg.training.registry import list_models, load_model
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    config = {"features": TINY, "views": "axial,coronal", "max_slices": 4, "chunk_slices": 16}
    spec = JobSpec("iagnet", str(tmp_path / "run"), study=str(root), config=config)
    spec.steps, spec.checkpoint_every = 3, 0
    res = train(spec)
    assert res.status == "done" and res.global_step == 3
    assert res.version_dir is not None and (res.version_dir / "weights.pt").exists()
    (entry,) = [m for m in list_models(root) if m["method"] == "iagnet"]
    assert tuple(entry["info"]["config"]["features"]) == TINY
    method, model = load_model(res.version_dir)
    assert unwrap(model).views == ("axial", "coronal") and int(unwrap(model).steps_seen) == 3
    trained = res.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    path = next(p for p in (root / "images" / "ct").iterdir())
    image = read_image(path, modality="ct")
    maps = method.predict(model, image)
    assert set(maps.maps) == {"attention", "local", "mask_prob"} and maps.mask == "mask_prob"
    for m in maps.maps.values():
        assert m.shape == tuple(image.data.shape) and np.isfinite(m).all()
    assert 0.0 < maps.probabilities["pdac"] < 1.0


def test_fast_inference_path_matches_autograd_path():
    """Inference runs the U-Net channels_last with a var_mean instance norm: same values
    as the training (autograd) path, and the weights get their layout back afterwards."""
    from napari_wsseg.methods.iagnet.data import channels_last

    torch.manual_seed(0)
    model = IAGNetModel(views=("axial",), features=TINY).eval()
    for p in model.parameters():  # non-trivial instance-norm affine parameters
        p.data += 0.1 * torch.randn_like(p)
    x = torch.rand(3, 1, 20, 24)
    with torch.enable_grad():
        slow = model.feature_map("axial", x).detach()  # nn.InstanceNorm2d kernel
    backbone = model.backbones["axial"]
    with torch.inference_mode(), channels_last(backbone):
        conv = backbone.conv_0.conv_0.conv
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        fast = model.feature_map("axial", x.contiguous(memory_format=torch.channels_last))
    assert conv.weight.is_contiguous()
    assert fast.shape == slow.shape == (3, TINY[-1], 20, 24)
    assert torch.allclose(fast, slow, atol=1e-5)
