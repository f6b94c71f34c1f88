"""CheXseg on the X-ray phantoms: mIoU for p in {0, 0.5, 0.9, 1} (Sec. 4.1 / Table 1).

A few expert masks plus many image-level (weak) labels. One classifier is trained on
all training images' labels; for each p a segmentation network starts from its
encoder and trains on expert masks (probability p) and Grad-CAM pseudo-labels (1-p).
p = 0 is weak-only, p = 1 expert-only. This default regime ("few experts", 8 expert
masks among 328 images) is our own question, not the paper's.

``--regime paper`` (issue 15) follows Sec. 4.1: more expert masks than saliency-labelled
images (200 : 100 in the paper; 2 : 1 here), the classifier trained on a larger
image-label pool (the paper's DenseNet121 saw all of CheXpert), rare findings (lung
lesion 3 %, pneumothorax 4 % prevalence, as in CheXpert, where p = 1 collapses on them)
and 3 trials, each with a different weak subset (and seed). Per-finding IoU and the
claims p = 0.9 > p = 1 and p = 0.9 > p = 0 are paired per trial with 95 % t-CIs. What
is shrunk: the CAM backbone is the CPU ``small`` encoder at 128 px, not DenseNet121 at
512 px; the segmentation net is a 32-channel DeepLabv3+.

``--regime shrink-check`` runs trial 0 of the paper regime with the ``small`` encoder
and with DenseNet121 (at 256 px, so its stride-32 CAMs are 8x8 like the small encoder's
at 128 px) and says whether the ordering of p = 0 / 0.9 / 1 is the same; with
``--estimate-only`` it times a few steps of each backbone and writes the projected
wall time instead (on this 2-core CPU the DenseNet121 trial does not fit; see
docs/methods/chexseg.md). ``--device cuda`` moves models and batches to the GPU.

Run: ``.venv/bin/python benchmarks/bench_chexseg.py [--quick]
[--regime sample|paper|shrink-check] [--estimate-only] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import add_device_arg, device_of, to  # noqa: E402
from _report import machine, markdown_table, write_section  # noqa: E402

RARE = {"lung_lesion": 0.03, "pneumothorax": 0.04}


def make_items(
    root: Path, n: int, n_expert: int, seed: int, shape: int, split: str, prevalence=0.3
):
    import imageio.v3 as iio

    from napari_wsseg.io import write_mask
    from napari_wsseg.phantoms.xray import make_case
    from napari_wsseg.study.snapshot import SnapshotItem

    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        case = make_case(rng, None, shape=(shape, shape), prevalence=prevalence)
        path = root / f"{split}_{i:04d}.png"
        iio.imwrite(path, case.image, extension=".png")
        mpath = str(write_mask(root / f"{split}_{i:04d}_mask.tif", case.mask))
        items.append(
            SnapshotItem(
                image_id=i,
                path=str(path),
                modality="xray",
                labels={k: float(v) for k, v in case.labels.items()},
                mask=mpath if i < n_expert else None,
                reference_mask=mpath,
                split=split,
            )
        )
    return items


def run_stage(method, model, items, stage, seed, device="cpu"):
    """A small loop over the method protocol (sampler, collate, training_step); the
    batches go to ``device`` (where the model already is)."""
    ds = method.dataset(items, stage, model)
    g = torch.Generator().manual_seed(seed)
    params = method.trainable(model, stage)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=stage.lr)
    model.train()
    step, losses, kinds = 0, [], []
    while step < stage.steps:
        sampler = method.sampler(ds, stage, g)
        order = (
            list(sampler) if sampler is not None else torch.randperm(len(ds), generator=g).tolist()
        )
        for i in range(0, len(order) - stage.batch_size + 1, stage.batch_size):
            batch = to(method.collate([ds[j] for j in order[i : i + stage.batch_size]]), device)
            if "expert" in batch:
                kinds.append(float(batch["expert"].float().mean()))
            loss = method.training_step(model, batch, stage)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if step >= stage.steps:
                break
    return ds, losses, kinds


def pseudo_quality(method, ds, train) -> float:
    """Mean over findings of the pseudo-labels' IoU against the weak images' reference
    masks (a diagnostic only: training never sees those masks)."""
    from napari_wsseg.methods.chexseg.data import class_ious, label_vector, load_xray_mask

    weak = [it for it in train if not it.mask]
    size = method.config.image_size
    pm = torch.stack([ds[ds.n_expert + i]["mask"] for i in range(len(weak))])
    gt = torch.stack([load_xray_mask(it.reference_mask, size) for it in weak])
    lab = torch.stack([label_vector(it)[0] for it in weak]).bool()
    return float(np.nanmean(class_ious(pm, gt, lab | gt.flatten(2).any(-1)).numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--regime", choices=("sample", "paper", "shrink-check"), default="sample")
    ap.add_argument("--estimate-only", action="store_true", help="shrink-check: time steps")
    add_device_arg(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    if args.regime == "paper":
        return paper_regime(args.quick, dev)
    if args.regime == "shrink-check":
        from _chexseg_check import shrink_check

        return shrink_check(args.quick, dev, args.estimate_only)
    q = args.quick
    # the paper's regime: few expert masks, many image-level labels
    n_train, n_expert, n_test = (60, 4, 16) if q else (328, 8, 40)
    cls_steps, seg_steps = (120, 60) if q else (600, 200)
    seeds = [0] if q else [0, 1]
    size, shape = (64, 128) if q else (128, 128)  # Grad-CAM 8x8 at 128 px (paper: 10x10)
    from napari_wsseg.methods.base import Stage
    from napari_wsseg.methods.chexseg.method import CheXseg

    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="bench_chexseg_"))
    train = make_items(tmp, n_train, n_expert, 11, shape, "train")
    test = make_items(tmp, n_test, 0, 12, shape, "test")
    t_data = time.time() - t0
    method = CheXseg(backbone="small", image_size=size, seg_channels=32, explain_batch=16)
    torch.manual_seed(0)
    model = method.build_model().to(dev)
    cls = Stage("classifier", cls_steps, 16, 1e-3)
    _, cls_losses, _ = run_stage(method, model, train, cls, 0, dev)
    results, p_values = {}, [0.0, 0.5, 0.9, 1.0]
    for p in p_values:
        for seed in seeds:
            method.config.p_expert = p
            torch.manual_seed(100 + seed)
            m = copy.deepcopy(model)
            ds, losses, kinds = run_stage(
                method, m, train, Stage("segmentation", seg_steps, 8, 1e-3), seed, dev
            )
            met = method.validate(m, test)
            thr = m.cam_thresholds.clone()
            if p == p_values[0] and seed == seeds[0]:
                pseudo = pseudo_quality(method, ds, train)
            results.setdefault(p, []).append((met["miou"], float(np.mean(kinds)), losses))
            print(
                f"p={p} seed={seed} mIoU={met['miou']:.3f} expert frac={np.mean(kinds):.2f} "
                f"loss {np.mean(losses[:10]):.3f}->{np.mean(losses[-10:]):.3f}",
                flush=True,
            )
    rows = []
    for p in p_values:
        vals = [r[0] for r in results[p]]
        label = {0.0: "weak only", 1.0: "experts only"}.get(p, "mix")
        rows.append(
            [
                f"{p}",
                label,
                f"{np.mean(vals):.3f}",
                " / ".join(f"{v:.3f}" for v in vals),
                f"{np.mean([r[1] for r in results[p]]):.2f}",
            ]
        )
    means = {p: np.mean([r[0] for r in results[p]]) for p in p_values}
    best_mix = max(means[0.5], means[0.9])
    verdict = (
        "reproduced: a mix beats both ends"
        if best_mix > max(means[0.0], means[1.0])
        else "NOT reproduced: a mix does not beat both ends"
    )
    table = markdown_table(
        ["p", "supervision", "test mIoU (mean)", "per seed", "expert fraction drawn"], rows
    )
    body = (
        f"X-ray phantoms ({shape}x{shape}, trained at {size}x{size}): {n_train} training images "
        f"with image-level labels, {n_expert} of them with expert masks, {n_test} test images. "
        f"Backbone `small` (CPU), classifier {cls_steps} steps (batch 16, lr 1e-3; final BCE "
        f"{np.mean(cls_losses[-20:]):.3f}), segmentation DeepLabv3+ (32 ch) {seg_steps} steps "
        f"(batch 8, lr 1e-3, class-average Dice) per p and seed ({len(seeds)} seeds), encoder "
        f"from the classifier. mIoU: per-finding IoU of masks at 0.5 pooled over the test "
        f"images, averaged over findings present. Grad-CAM thresholds chosen on the expert "
        f"images: {[round(float(t), 2) for t in thr]}; pseudo-label quality on the "
        f"{n_train - n_expert} weak training images (mean IoU per finding against their "
        f"reference masks, not used in training): {pseudo:.3f}.\n\n"
        f"{table}\n\nPaper ordering (Table 1, p=0.9 best, above p=1 and p=0): {verdict}. "
        f"Total time {time.time() - t0:.0f} s (data {t_data:.0f} s); {machine()}, device "
        f"{args.device}.\n"
    )
    print(body)
    write_section("chexseg", "CheXseg: expert/pseudo-label mixing p on X-ray phantoms", body)


P_VALUES = [0.0, 0.9, 1.0]


def paper_sizes(quick: bool) -> tuple:
    """(experts, weak per trial, weak pool, test, classifier steps, segmentation steps)."""
    return (20, 10, 40, 24, 120, 60) if quick else (100, 50, 200, 80, 600, 200)


def paper_data(quick: bool) -> tuple[list, list]:
    """The paper regime's pool (experts first) and test items, in a temporary folder."""
    n_exp, _, n_pool, n_test, _, _ = paper_sizes(quick)
    tmp = Path(tempfile.mkdtemp(prefix="bench_chexseg_paper_"))
    # experts + a pool of weak images (image labels for the classifier, 3 weak subsets)
    pool = make_items(tmp, n_exp + n_pool, n_exp, 21, 128, "train", RARE)
    # rare in training; enriched in the test set so that their IoU rests on > 2 cases
    test = make_items(tmp, n_test, 0, 22, 128, "test", dict.fromkeys(RARE, 0.15))
    return pool, test


def paper_trials(pool, test, quick: bool, trials, backbone="small", size=None, dev="cpu"):
    """validate() dicts per p and trial: one classifier on experts + pool, then per
    trial (its own weak subset and seed) one segmentation run per p."""
    from napari_wsseg.methods.base import Stage
    from napari_wsseg.methods.chexseg.method import CheXseg

    n_exp, n_weak, n_pool, _, cls_steps, seg_steps = paper_sizes(quick)
    size = size or (64 if quick else 128)
    method = CheXseg(backbone=backbone, image_size=size, seg_channels=32, explain_batch=16)
    torch.manual_seed(0)
    model = method.build_model().to(dev)
    run_stage(method, model, pool, Stage("classifier", cls_steps, 16, 1e-3), 0, dev)
    res = {p: [] for p in P_VALUES}
    for trial in trials:
        weak = np.random.default_rng(trial).choice(n_pool, n_weak, replace=False)
        items = pool[:n_exp] + [pool[n_exp + int(i)] for i in weak]
        for p in P_VALUES:
            method.config.p_expert = p
            torch.manual_seed(100 + trial)
            m = copy.deepcopy(model)
            run_stage(method, m, items, Stage("segmentation", seg_steps, 8, 1e-3), trial, dev)
            res[p].append(method.validate(m, test))
            print(f"{backbone} trial {trial} p={p}: mIoU {res[p][-1]['miou']:.3f}", flush=True)
    return res


def paper_regime(quick: bool, dev="cpu") -> None:
    """Sec. 4.1's ratio (experts 2 : weak 1), rare findings, 3 trials, per-finding CIs."""
    from _stats import CLAIM_HEADER, claim_row, fmt_ci

    from napari_wsseg.study.vocab import CHEST_FINDINGS

    n_exp, n_weak, n_pool, n_test, cls_steps, seg_steps = paper_sizes(quick)
    trials, size = 3, 64 if quick else 128
    t0 = time.time()
    pool, test = paper_data(quick)
    p_values = P_VALUES
    res = paper_trials(pool, test, quick, range(trials), "small", size, dev)
    rows = []
    for f in CHEST_FINDINGS:
        k = f"iou_{f}"
        n_pos = sum(int(it.labels[f] > 0) for it in test)
        rows.append([f, n_pos] + [fmt_ci([r.get(k, float("nan")) for r in res[p]], 3)
                                  for p in p_values])  # fmt: skip
    rows.append(["mIoU", "", *[fmt_ci([r["miou"] for r in res[p]], 3) for p in p_values]])
    regime = f"X-ray {n_exp} experts : {n_weak} weak, rare findings, {trials} trials"
    claims = [
        claim_row("p=0.9 > p=1, mIoU", "+0.036 (0.299 vs 0.263)",
                  [a["miou"] - b["miou"] for a, b in zip(res[0.9], res[1.0])], regime),
        claim_row("p=0.9 > p=0, mIoU", "+0.143 (0.299 vs 0.156)",
                  [a["miou"] - b["miou"] for a, b in zip(res[0.9], res[0.0])], regime),
    ]  # fmt: skip
    for f in RARE:
        k = f"iou_{f}"
        diffs = [a.get(k, 0.0) - b.get(k, 0.0) for a, b in zip(res[0.9], res[1.0])]
        claims.append(claim_row(f"p=0.9 > p=1, {f} IoU", "p=1 collapses", diffs, regime))
    body = (
        f"Sec. 4.1's regime: {n_exp} training images with expert masks and, per trial, "
        f"{n_weak} others with Grad-CAM pseudo-labels, drawn from a pool of {n_pool} "
        f"image-labelled X-rays (the classifier trains on experts + pool, {cls_steps} "
        f"steps). Rare findings: training prevalence {RARE} (test set: 0.15 each, so "
        f"their IoU rests on more than two cases); the others 0.3 "
        f"(`make_case(prevalence=...)`). Phantoms 128x128, nets at {size}x{size} (`small` "
        f"encoder for the CAMs instead of DenseNet121; DeepLabv3+ 32 ch, {seg_steps} steps "
        f"per p and trial). {trials} trials = different weak subsets and seeds; {n_test} "
        f"test images. Cells: IoU mean [95 % CI] over trials ('–': finding absent).\n\n"
        + markdown_table(["finding", "test positives", *[f"p={p}" for p in p_values]], rows)
        + "\n\n"
        + markdown_table(CLAIM_HEADER, claims)
        + f"\n\nTotal {time.time() - t0:.0f} s (wall){' (--quick)' if quick else ''}; "
        f"{machine()}, device {dev}. The CAM backbone is shrunk (`small`, not "
        "DenseNet121): see the CheXseg backbone section for the check of that shrink."
    )
    write_section("chexseg-regime", "CheXseg in the paper's regime (issue 15)", body)
    from _summary import write_summary

    write_summary()


if __name__ == "__main__":
    main()
