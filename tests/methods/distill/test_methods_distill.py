"""Distill-to-Label: losses against hand computations, tiling, grid alignment, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods import get_method
from napari_wsseg.methods.distill.losses import (
    ball_perturbation,
    bernoulli_kl,
    binary_entropy,
    noise_instances,
    random_subset,
    student_loss,
    teacher_loss,
)
from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel, SlideBags, pad_bags
from napari_wsseg.methods.distill.nets import DistillModel, GatedAttention, MILNet
from napari_wsseg.methods.tiling import collect_tiles, iter_tiles, make_grid

torch.set_num_threads(1)
SMALL = {"channels": (4, 8), "hidden": 16, "feat_dim": 8, "attn_dim": 4}


def _slide(rng: np.random.Generator, gh: int = 6, gw: int = 8, t: int = 8, tumour=()):
    """A (gh*t, gw*t, 3) slide: white background column 0, pink tissue, purple tumour tiles."""
    img = np.full((gh * t, gw * t, 3), 245, np.uint8)
    for r in range(gh):
        for c in range(1, gw):
            colour = (90, 40, 150) if (r, c) in tumour else (230, 150, 190)
            noise = rng.integers(-10, 10, (t, t, 3))
            img[r * t : (r + 1) * t, c * t : (c + 1) * t] = np.clip(
                np.array(colour) + noise, 0, 255
            )
    return img


class CountingArray:
    """A lazily backed array: counts bytes read and refuses any single read over ``limit``."""

    def __init__(self, arr: np.ndarray, limit: int, chunks=None) -> None:
        self.arr, self.limit, self.read_bytes = arr, limit, 0
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        self.chunks = chunks

    def __getitem__(self, key):
        out = self.arr[key]
        if out.nbytes > self.limit:
            raise MemoryError(f"read of {out.nbytes} bytes > {self.limit}")
        self.read_bytes += out.nbytes
        return out

    def __array__(self, dtype=None, copy=None):
        raise MemoryError("whole-level read")


def test_eq2_gated_attention_matches_hand_computation():
    """Eq. (2): a_k = softmax_k(w^T (tanh(V h_k) * sigm(U h_k))); eq. (1) z = sum a_k h_k."""
    att = GatedAttention(dim=2, hidden=2)
    V, U, w = np.array([[1.0, 0.0], [0.5, -1.0]]), np.array([[0.0, 2.0], [1.0, 1.0]]), [1.0, -2.0]
    with torch.no_grad():
        att.V.weight.copy_(torch.tensor(V))
        att.U.weight.copy_(torch.tensor(U))
        att.w.weight.copy_(torch.tensor([w]))
    h = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 0.0]])
    e = np.array([np.dot(w, np.tanh(V @ hk) / (1 + np.exp(-(U @ hk)))) for hk in h])
    a_hand = np.exp(e) / np.exp(e).sum()
    z, a = att(torch.tensor(h, dtype=torch.float32))
    np.testing.assert_allclose(a.detach().numpy(), a_hand, rtol=1e-5)
    np.testing.assert_allclose(z.detach().numpy(), a_hand @ h, rtol=1e-5)
    assert float(a.detach().sum()) == pytest.approx(1.0)


def test_attention_weights_sum_to_one_for_any_bag_size_and_bag_of_one_is_instance():
    torch.manual_seed(0)
    net = MILNet(**SMALL)
    for k in (1, 3, 17):
        with torch.no_grad():
            logit, a = net(torch.rand(k, 3, 8, 8))
        assert a.shape == (k,) and float(a.sum()) == pytest.approx(1.0, abs=1e-6)
    x = torch.rand(5, 3, 8, 8)
    singles = torch.stack([net(x[i : i + 1])[0] for i in range(5)])
    torch.testing.assert_close(net.instance_logits(x), singles)


def test_eq6_bernoulli_kl_and_entropy_hand_values():
    """Eq. (6) H(p, q) = p log(p/q) + (1-p) log((1-p)/(1-q)); L_e = Bernoulli entropy."""
    kl = bernoulli_kl(torch.tensor([0.8, 0.3]), torch.tensor([0.5, 0.3]))
    assert float(kl[0]) == pytest.approx(0.8 * math.log(1.6) + 0.2 * math.log(0.4), rel=1e-5)
    assert float(kl[1]) == pytest.approx(0.0, abs=1e-6)
    ent = binary_entropy(torch.tensor([0.5, 0.9]))
    assert float(ent[0]) == pytest.approx(math.log(2), rel=1e-6)
    assert float(ent[1]) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), rel=1e-5)


def test_vat_perturbations_respect_their_definitions():
    """Eq. (3) sets: X_n noise in [0, 1]; X_delta within the ball; X-bar a strict subset."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 8, 8)
    n = noise_instances(x, 4, g)
    assert n.shape == (4, 3, 8, 8) and float(n.min()) >= 0 and float(n.max()) <= 1
    d = ball_perturbation(x, 0.05, g)
    assert float(d.flatten(1).norm(dim=1).max()) <= 0.05 * math.sqrt(192) + 1e-5
    for _ in range(20):
        idx = random_subset(6, 0.5, 0.9, g)
        assert 1 <= len(idx) < 6 and len(set(idx.tolist())) == len(idx)


def _bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_eq3_teacher_loss_matches_hand_computation():
    """Eq. (3) with the paper's colon lambdas, replaying the same random draws by hand."""
    torch.manual_seed(0)
    cfg = DistillConfig.preset("colon", noise_frac=0.5, n_subsets=2, **SMALL)
    net = MILNet(**SMALL)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor(1.0)
    out = teacher_loss(net, x, y, cfg, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        p = float(torch.sigmoid(net(x)[0]))
        p_n = float(torch.sigmoid(net(torch.cat([x, noise_instances(x, 2, g)]))[0]))
        p_d = float(torch.sigmoid(net((x + ball_perturbation(x, cfg.delta, g)).clamp(0, 1))[0]))
        ents = []
        for _ in range(2):
            q = float(torch.sigmoid(net(x[random_subset(4, 0.5, 0.9, g)])[0]))
            ents.append(_bce(q, q))  # the entropy of q
    hand = {"bce": _bce(p, 1.0), "noise": _bce(p_n, p), "delta": _bce(p_d, p),
            "entropy": float(np.mean(ents))}  # fmt: skip
    for k, v in hand.items():
        assert float(out[k].detach()) == pytest.approx(v, rel=1e-4), k
    total = 1.0 * hand["bce"] + 0.5 * hand["noise"] + 0.3 * hand["delta"] + 0.3 * hand["entropy"]
    assert float(out["loss"].detach()) == pytest.approx(total, rel=1e-4)
    plain = teacher_loss(net, x, y, DistillConfig(vat=False, **SMALL))
    assert set(plain) == {"bce", "loss"} and float(plain["loss"].detach()) == pytest.approx(
        hand["bce"]
    )


def test_eq5_student_loss_matches_hand_computation():
    """Eq. (5) with gamma 0.3/0.5/0.5/0.1 and tau = 3; eq. (4) softening."""
    torch.manual_seed(0)
    cfg = DistillConfig(tau=3.0, **SMALL)
    teacher, student = MILNet(**SMALL), MILNet(**SMALL)
    x, y = torch.rand(3, 3, 8, 8), torch.tensor(0.0)
    out = student_loss(student, teacher, x, y, cfg)
    with torch.no_grad():
        lt, ls = float(teacher(x)[0]), float(student(x)[0])
        lt_k = [float(teacher(x[k : k + 1])[0]) for k in range(3)]
        ls_k = [float(student(x[k : k + 1])[0]) for k in range(3)]

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    def kl(p: float, q: float) -> float:
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    hand = {
        "bce": _bce(sig(ls), 0.0),
        "kd_bag": kl(sig(lt / 3), sig(ls / 3)),
        "kd_instance": np.mean([kl(sig(a / 3), sig(b / 3)) for a, b in zip(lt_k, ls_k)]),
        "entropy": np.mean([_bce(sig(b), sig(b)) for b in ls_k]),
    }
    for k, v in hand.items():
        assert float(out[k].detach()) == pytest.approx(v, rel=1e-4, abs=1e-7), k
    total = 0.3 * hand["bce"] + 0.5 * hand["kd_bag"] + 0.5 * hand["kd_instance"]
    total += 0.1 * hand["entropy"]
    assert float(out["loss"].detach()) == pytest.approx(total, rel=1e-4)


def test_tiling_drops_white_tiles_keeps_coordinates_and_streams():
    rng = np.random.default_rng(0)
    img = _slide(rng, 6, 8, 8)
    img[8:16, 24:32] = 250  # one more all-white tile inside the tissue
    img[16:24, 32:38] = 250  # 6/8 = 75 % white: dropped (>= 75 %)
    img[24:32, 32:37] = 250  # 5/8 white: kept
    lazy = CountingArray(img, limit=2 * 8 * 64 * 3, chunks=(16, 16, 3))
    bag = collect_tiles([lazy], tile=8, max_block_bytes=8 * 64 * 3)
    pos = set(zip(bag.rows.tolist(), bag.cols.tolist()))
    expected = {(r, c) for r in range(6) for c in range(1, 8)} - {(1, 3), (2, 4)}
    assert pos == expected
    assert lazy.read_bytes == img.nbytes  # one pass, in blocks within the limit
    r, c = 4, 5
    k = list(zip(bag.rows.tolist(), bag.cols.tolist())).index((r, c))
    np.testing.assert_array_equal(bag.tiles[k], img[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8])
    big = collect_tiles([lazy], tile=8, cache_bytes=100, max_block_bytes=8 * 64 * 3)
    assert big.tiles is None
    np.testing.assert_array_equal(big.read(np.array([k])), bag.tiles[k : k + 1])


def test_grid_alignment_on_level0_and_level1():
    """Tile at level-0 (y, x) -> map pixel (y // t0, x // t0); Grid puts its centre at the
    tile's centre in level-0 pixels."""
    levels = [np.zeros((64, 96, 3), np.uint8), np.zeros((32, 48, 3), np.uint8)]
    for level, t0 in ((0, 8), (1, 16)):
        grid = make_grid(levels, tile=8, level=level)
        assert grid.shape == (64 // t0, 96 // t0)
        g = grid.grid()
        assert g.scale == (t0, t0)
        for y, x in ((0, 0), (17, 40), (63, 95)):
            i, j = y // t0, x // t0
            top_left = grid.origin0(np.array([i]), np.array([j]))[0]
            assert top_left[0] <= y < top_left[0] + t0 and top_left[1] <= x < top_left[1] + t0
            centre = (top_left[0] + (t0 - 1) / 2, top_left[1] + (t0 - 1) / 2)
            assert (g.translate[0] + i * g.scale[0], g.translate[1] + j * g.scale[1]) == centre


def test_predict_maps_are_overlayable_and_streaming_pool_is_exact():
    rng = np.random.default_rng(1)
    img = _slide(rng, 5, 7, 8, tumour={(2, 3), (3, 3)})
    method = DistillToLabel(DistillConfig(tile=8, predict_batch=4, **SMALL))
    torch.manual_seed(0)
    model = method.build_model()
    image = ImageData([img, img[::2, ::2]], "slide", (0.5, 0.5), rgb=True, multiscale=True)
    maps = method.predict(model, image)
    assert (
        set(maps.maps) == {"instance_prob", "mask_prob", "attention"} and maps.mask == "mask_prob"
    )
    for name, m in maps.maps.items():
        assert m.shape == (5, 7) and m.min() >= 0 and m.max() <= 1
        assert (m[:, 0] == 0).all()  # background column
        assert maps.grids[name].scale == (8.0, 8.0)
    assert maps.maps["attention"].max() == pytest.approx(1.0)
    bag = collect_tiles([img], 8)
    x = torch.from_numpy(bag.tiles).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        p_bag = float(torch.sigmoid(model.student(x)[0]))
        p_inst = torch.sigmoid(model.student.instance_logits(x)).numpy()
    assert maps.probabilities["tumor"] == pytest.approx(p_bag, rel=1e-5)
    np.testing.assert_allclose(maps.maps["instance_prob"][bag.rows, bag.cols], p_inst, rtol=1e-5)


def test_dataset_samples_bags_and_collate_pads():
    rng = np.random.default_rng(2)
    bags = [collect_tiles([_slide(rng, 4, 5, 8)], 8), collect_tiles([_slide(rng, 2, 3, 8)], 8)]
    ds = SlideBags(bags, [1.0, 0.0], max_bag=10)
    a, b = ds[0], ds[1]
    assert a["tiles"].shape == (10, 3, 8, 8) and b["tiles"].shape == (4, 3, 8, 8)
    batch = pad_bags([a, b])
    assert batch["tiles"].shape == (2, 10, 3, 8, 8) and batch["mask"].sum(1).tolist() == [10, 4]
    assert get_method("distill") is DistillToLabel


def test_teacher_then_student_training_lowers_losses_and_freezes_teacher():
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    cfg = DistillConfig(tile=8, max_bag=12, channels=(8, 16), hidden=32, feat_dim=16, attn_dim=4)
    method = DistillToLabel(cfg)
    model = method.build_model()
    bags, labels = [], []
    for i in range(8):
        pos = i % 2 == 0
        tum = {(r, c) for r in range(4) for c in range(1, 5) if rng.random() < 0.4} if pos else ()
        bags.append(collect_tiles([_slide(rng, 4, 5, 8, tumour=tum)], 8))
        labels.append(float(pos))
    ds = SlideBags(bags, labels, cfg.max_bag)
    batch = method.collate([ds[i] for i in range(8)])
    for stage in [s for s in method.stages() if s.name != "masks"]:  # the paper's
        opt = torch.optim.Adam(method.trainable(model, stage), lr=3e-3)
        frozen = [p.detach().clone() for p in model.teacher.parameters()]
        with torch.no_grad():
            before = float(model(batch, stage=stage.name)["bce"])
        for step in range(100):
            loss = method.training_step(model, method.collate([ds[step % 8]]), stage)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = float(model(batch, stage=stage.name)["bce"])
        assert after < 0.8 * before, (stage.name, before, after)
        if stage.name == "student":
            for p, q in zip(model.teacher.parameters(), frozen):
                assert torch.equal(p, q)


def test_bad_slide_shape_names_the_file():
    image = ImageData(np.zeros((16, 16), np.uint8), "slide", (1.0, 1.0), meta={"path": "s.tif"})
    with pytest.raises(ValueError, match=r"s\.tif.*expected \(Y, X, 3\)"):
        DistillToLabel().predict(DistillModel(DistillConfig(**SMALL)), image)
    assert len(list(iter_tiles([np.zeros((4, 4, 3), np.uint8)], 8))) == 0


def test_dataset_and_validate_through_the_reader(tmp_path):
    """Slides written as pyramidal TIFFs go through read_image (lazy dask levels)."""
    from napari_wsseg.io import write_mask
    from napari_wsseg.phantoms.slide import make_case, write_pyramid
    from napari_wsseg.study.snapshot import SnapshotItem

    rng = np.random.default_rng(4)
    items = []
    for i in range(2):
        case = make_case(rng, i, shape=(256, 256))
        path = write_pyramid(tmp_path / f"s{i}.tif", case.image, 64, 2, compression="zlib")
        mask = write_mask(tmp_path / f"m{i}.tif", case.mask)
        items.append(SnapshotItem(i, str(path), "slide", {"tumor": i}, reference_mask=str(mask)))
    method = DistillToLabel(DistillConfig(max_bag=16, **SMALL))
    torch.manual_seed(0)
    model = method.build_model()
    ds = method.dataset(items, method.stages()[0], model)
    assert len(ds) == 2 and ds[1]["tiles"].shape[1:] == (3, 32, 32)
    assert ds[1]["tiles"].shape[0] <= 16 and float(ds[1]["label"]) == 1.0
    metrics = method.validate(model, items)
    assert 0 <= metrics["bag_auc"] <= 1 and 0 <= metrics["instance_accuracy"] <= 1


def method_validate(res) -> dict[str, float]:
    """The run's method validated on its snapshot's held-out slide."""
    from napari_wsseg.training.snapshots import HELD_OUT, load_snapshot_file

    snap = load_snapshot_file(res.run_dir / "snapshot.json")
    return res.method.validate(res.model, [it for it in snap.items if it.split == HELD_OUT])


def test_distill_trains_through_the_engine_and_registers_a_model(demo_study, tmp_path):
    """Teacher then student through ``training.runner`` on a copy of the demo study:
    a model version is registered, reloads, and predicts tile maps on the slide grid."""
    import shutil

    from napari_wsseg.io import read_image
    from napari_wsseg.training.registry import load_model
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    spec = JobSpec(
        method="distill",
        out=str(tmp_path / "run"),
        study=str(root),
        steps=2,
        val_fraction=0.5,
        checkpoint_every=0,
        config={"max_bag": 16, **SMALL},
    )
    res = train(spec)
    # 2 teacher + 2 student steps + 2 of our masks stage (``steps`` sets every stage)
    assert res.status == "done" and res.global_step == 6
    assert res.version_dir is not None and (res.version_dir / "weights.pt").exists()
    assert int(res.model.student_started) == 1  # the student stage ran (copied teacher)
    # of the demo's two slides the study holds one out (study/heldout.py): it is not
    # trained on, and one slide leaves no validation split
    info = json.loads((res.version_dir / "info.json").read_text())
    assert info["n_held_out_images"] == 1 and info["n_train_images"] == 1
    assert "bag_accuracy" in method_validate(res)  # validate() runs on the held-out slide
    method, model = load_model(res.version_dir)
    assert method.name == "distill" and method.config.max_bag == 16
    slide = next(p for p in sorted((root / "images" / "slide").iterdir()))
    image = read_image(str(slide), modality="slide")
    maps = method.predict(model, image)
    h, w = image.data[0].shape[:2]
    t = method.config.tile
    for name in ("instance_prob", "attention", "mask_prob"):
        assert maps.maps[name].shape == (h // t, w // t)
        assert maps.grids[name].scale == (float(t), float(t))
        assert 0.0 <= maps.maps[name].min() and maps.maps[name].max() <= 1.0
    assert maps.maps["attention"].max() == pytest.approx(1.0)
    assert 0.0 <= maps.probabilities["tumor"] <= 1.0


def test_eq3_vat_targets_carry_no_gradient():
    """Eq. (3): the clean prediction T(X) is a fixed soft target of L_n and L_delta. The
    gradient of each VAT term must equal that of a BCE against a constant target, replayed
    with the same random draws; a missing ``.detach()`` adds d(target) terms and fails."""
    torch.manual_seed(3)
    cfg = DistillConfig.preset("colon", noise_frac=0.5, n_subsets=1, **SMALL)
    net = MILNet(**SMALL)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor(1.0)
    params = [p for p in net.parameters() if p.requires_grad]
    out = teacher_loss(net, x, y, cfg, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        target = torch.sigmoid(net(x)[0])  # a plain number: no graph behind it
    x_n = torch.cat([x, noise_instances(x, 2, g)])
    x_d = (x + ball_perturbation(x, cfg.delta, g)).clamp(0, 1)
    for name, xb in (("noise", x_n), ("delta", x_d)):
        got = torch.autograd.grad(out[name], params, retain_graph=True, allow_unused=True)
        ref_loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb)[0], target)
        ref = torch.autograd.grad(ref_loss, params, allow_unused=True)
        for a, b in zip(got, ref):
            if b is None:
                assert a is None or float(a.abs().max()) == 0.0
                continue
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
        # And the check has teeth: with the target left attached the gradient differs.
        attached = torch.sigmoid(net(x)[0])
        bad = torch.nn.functional.binary_cross_entropy_with_logits(net(xb)[0], attached)
        bad_g = torch.autograd.grad(bad, params, allow_unused=True)
        diff = sum(float((u - v).abs().sum()) for u, v in zip(bad_g, ref) if v is not None)
        assert diff > 1e-6, name


def test_tile_dice_per_slide_counts_false_tiles_on_a_normal_slide():
    """validate's ``dice``: 2|T & P| / (|T| + |P|) per slide, 1 for empty and empty."""
    from napari_wsseg.methods.distill.predict import _tile_dice

    t = np.array([1, 1, 0, 0], bool)
    assert _tile_dice(t, np.array([1, 0, 1, 0], bool)) == pytest.approx(2 * 1 / 4)
    assert _tile_dice(np.zeros(4, bool), np.zeros(4, bool)) == 1.0
    assert _tile_dice(np.zeros(4, bool), np.array([0, 0, 0, 1], bool)) == 0.0


def test_mask_is_gated_by_the_slide_probability():
    """Ours (docs/methods/distill.md, "A slide mask gated by the slide's label"): the
    mask map is the tile probabilities on a slide called tumour, zeros on one called
    normal; the instance map is never changed; ``gate_mask=False`` leaves it as is."""
    from napari_wsseg.methods.distill.predict import gated

    inst = np.array([[0.2, 0.7], [0.9, 0.0]], np.float32)
    cfg = DistillConfig()
    assert cfg.gate_mask and cfg.threshold == 0.5
    np.testing.assert_array_equal(gated(inst, 0.49, cfg), np.zeros((2, 2), np.float32))
    on_tumour = gated(inst, 0.5, cfg)  # at the threshold: called tumour
    np.testing.assert_array_equal(on_tumour, inst)
    assert on_tumour is not inst and inst[0, 1] == np.float32(0.7)
    off = DistillConfig(gate_mask=False)
    np.testing.assert_array_equal(gated(inst, 0.1, off), inst)
