"""CheXseg: does shrinking the CAM backbone (``small`` for DenseNet121) change the
ordering of p = 0 / 0.9 / 1? (issue 15; ``bench_chexseg.py --regime shrink-check``).

One trial (trial 0 of the paper regime: same pool, test set, weak subset and seeds)
with each backbone. DenseNet121 runs at 256 px so that its stride-32 Grad-CAM is 8x8,
the resolution of the ``small`` encoder (stride 16) at 128 px; at 128 px it would be
4x4. It is a shrink check on one trial, not a claim: no CI. ``estimate_only`` times
classifier and segmentation steps of each backbone on random batches and writes the
projected wall time of the trial instead, for machines where it does not fit.
"""

from __future__ import annotations

import os
import time

import torch
from _report import machine, markdown_table, write_section

CHECKS = (("small", 128), ("densenet121", 256))
TITLE = "CheXseg: does the small CAM backbone change the p ordering? (issue 15)"


def step_seconds(backbone: str, size: int, dev, reps: int = 2) -> tuple[float, float]:
    """Median seconds of one classifier step (batch 16) and one segmentation step
    (batch 8) with Adam, on random X-ray-sized batches, after one warm-up step."""
    from napari_wsseg.methods.chexseg.method import CheXseg

    torch.manual_seed(0)
    model = CheXseg(backbone=backbone, image_size=size, seg_channels=32).build_model().to(dev)
    out = []
    for net, batch in ((model.classifier, 16), (model.segmenter, 8)):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.randn(batch, 1, size, size, device=dev)
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            y = net(x)
            y = y[0] if isinstance(y, tuple) else y
            y.float().square().mean().backward()
            opt.step()
            opt.zero_grad()
            if torch.device(dev).type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out.append(sorted(times[1:])[len(times[1:]) // 2])
    return out[0], out[1]


def ordering(res: dict) -> str:
    """'p=1.0 > p=0.9 > p=0.0' by mIoU of the single trial."""
    ps = sorted(res, key=lambda p: -res[p][0]["miou"])
    return " > ".join(f"p={p}" for p in ps)


def shrink_check(quick: bool, dev, estimate_only: bool) -> None:
    from bench_chexseg import P_VALUES, paper_data, paper_sizes, paper_trials

    _, _, _, _, cls_steps, seg_steps = paper_sizes(quick)
    t0 = time.time()
    if estimate_only:
        rows, totals = [], []
        for bb, size in (*CHECKS, ("densenet121", 128)):
            c, s = step_seconds(bb, size, dev)
            total = cls_steps * c + len(P_VALUES) * seg_steps * s
            totals.append(total)
            rows.append([bb, size, f"{size // (16 if bb == 'small' else 32)}x"
                         f"{size // (16 if bb == 'small' else 32)}", f"{c:.2f}", f"{s:.2f}",
                         f"{total / 60:.0f}"])  # fmt: skip
            print(rows[-1], flush=True)
        ratio = totals[1] / max(totals[0], 1e-9)
        body = (
            f"Not run on this machine: estimate only (`--estimate-only`). Median seconds "
            f"per step on random batches (classifier batch 16, segmentation batch 8, Adam), "
            f"and the projected training time of one paper-regime trial ({cls_steps} "
            f"classifier steps + {len(P_VALUES)} x {seg_steps} segmentation steps; Grad-CAM "
            f"pseudo-labels and scoring not included):\n\n"
            + markdown_table(
                [
                    "backbone",
                    "px",
                    "CAM grid",
                    "classifier s/step",
                    "segmentation s/step",
                    "one trial, min",
                ],
                rows,
            )  # fmt: skip
            + f"\n\nThe DenseNet121 trial at 256 px (8x8 CAMs, as the small encoder's at "
            f"128 px) would take about {ratio:.0f}x the small one's training time. Run "
            f"`bench_chexseg.py --regime shrink-check --device cuda` on a GPU to fill this "
            f"section with the check itself. {time.time() - t0:.0f} s (wall); {machine()}, "
            f"device {dev}, load average {os.getloadavg()[0]:.1f}."
        )
        write_section("chexseg-backbone", TITLE, body)
        return
    pool, test = paper_data(quick)
    res, secs = {}, {}
    for bb, size in CHECKS:
        t = time.time()
        res[bb] = paper_trials(pool, test, quick, [0], bb, size, dev)
        secs[bb] = time.time() - t
    rows = [[bb, size, *[f"{res[bb][p][0]['miou']:.3f}" for p in P_VALUES],
             *[f"{res[bb][p][0].get('iou_lung_lesion', float('nan')):.3f}" for p in P_VALUES],
             ordering(res[bb]), f"{secs[bb]:.0f}"] for bb, size in CHECKS]  # fmt: skip
    same = ordering(res[CHECKS[0][0]]) == ordering(res[CHECKS[1][0]])
    body = (
        f"Shrink check, one trial (trial 0 of the paper-regime section: same data, weak "
        f"subset and seeds), no CI. DenseNet121 (MONAI, random init) at 256 px so its "
        f"Grad-CAM grid is 8x8 like the small encoder's at 128 px; {cls_steps} classifier "
        f"and {seg_steps} segmentation steps each.\n\n"
        + markdown_table(
            [
                "backbone",
                "px",
                *[f"mIoU p={p}" for p in P_VALUES],
                *[f"lung lesion p={p}" for p in P_VALUES],
                "ordering",
                "s",
            ],
            rows,
        )  # fmt: skip
        + f"\n\nSame ordering of p with both backbones: **{'yes' if same else 'no'}**. "
        f"Total {time.time() - t0:.0f} s (wall); {machine()}, device {dev}."
    )
    write_section("chexseg-backbone", TITLE, body)


__all__ = ["shrink_check"]
