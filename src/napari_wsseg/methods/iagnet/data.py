"""IAG-Net's data side: reading CT volumes, training samples, chunked inference.

A training sample is one volume seen along one view: the slices at a random
interval r in [1, 5] from a random offset (Sec. IV-C), stacked as (S, 1, H, W). The
attention pooling (4)-(5) runs over all voxels of those slices, so a batch item is
a whole (subsampled) volume, never a single slice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_wsseg.methods.iagnet import losses as L
from napari_wsseg.methods.iagnet.model import VIEW_AXIS, IAGNetModel


def _read_array(path: str, kind: str) -> np.ndarray:
    """A (Z, Y, X) array from ``path``: .npy directly, other files through
    ``napari_wsseg.io`` when it is there, else NIfTI via nibabel ((X, Y, Z) -> (Z, Y, X))."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such {kind} file")
    if p.suffix == ".npy":
        return np.load(p)
    try:
        from napari_wsseg import io as wio

        reader = wio.read_image if kind == "image" else wio.read_mask
    except (ImportError, AttributeError):
        reader = None
    if reader is not None:
        out = reader(path, modality="ct") if kind == "image" else reader(path)
        return np.asarray(out.data if hasattr(out, "data") else out)
    if p.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(str(p)).dataobj).transpose(2, 1, 0)
    raise ValueError(f"{path}: cannot read a CT {kind} (expected .npy, .nii or .nii.gz)")


def load_case(image_path: str, mask_path: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """HU volume (float32) and binary tumour mask (uint8, or None) of one case."""
    vol = np.asarray(_read_array(image_path, "image"), dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"{image_path}: a CT volume must be 3-D (Z, Y, X), got {vol.shape}")
    if mask_path is None:
        return vol, None
    mask = _read_array(mask_path, "mask")
    if mask.shape != vol.shape:
        raise ValueError(f"{mask_path}: mask shape {mask.shape} != image shape {vol.shape}")
    return vol, (mask > 0).astype(np.uint8)


def sample_slices(
    n: int, interval: tuple[int, int], max_slices: int, gen: torch.Generator | None = None
) -> np.ndarray:
    """Slice indices 0..n-1 at a random interval in [lo, hi] from a random offset.

    ``max_slices`` > 0 caps the count by raising the interval to ceil(n / max_slices)
    where needed, so a sample still spans the whole volume (a lesion anywhere in it
    stays reachable for the pooling (4)-(5) and the bags (9)).
    """
    lo, hi = interval
    r = int(torch.randint(lo, hi + 1, (1,), generator=gen))
    if max_slices:
        r = max(r, -(-n // max_slices))
    r = max(1, min(r, n))
    start = int(torch.randint(0, r, (1,), generator=gen))
    return np.arange(start, n, r)


class IAGNetDataset(torch.utils.data.Dataset):
    """Training volumes of Algorithm 1 (D_l: with a mask, D_u: label only).

    ``cases`` rows are (image path, mask path or None, label or None); a missing
    label is read off the mask. Each ``__getitem__`` picks a view among ``views``
    and samples slices (see module docstring); volumes are cached after the first read.
    """

    def __init__(
        self,
        cases: list[tuple[str, str | None, float | None]],
        views: tuple[str, ...],
        window: tuple[float, float],
        interval: tuple[int, int],
        max_slices: int = 0,
    ) -> None:
        self.cases = cases
        self.views = views
        self.window = window
        self.interval = interval
        self.max_slices = max_slices
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor | None, float]] = {}
        self._gen: torch.Generator | None = None  # torch's global RNG: seeded per worker

    def __len__(self) -> int:
        return len(self.cases)

    def _volume(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        if i not in self._cache:
            image, mask_path, label = self.cases[i]
            vol, mask = load_case(image, mask_path)
            if label is None:
                label = float(mask is not None and mask.any())
            x = L.preprocess_hu(torch.from_numpy(vol), self.window).half()
            m = torch.from_numpy(mask) if mask is not None else None
            self._cache[i] = (x, m, float(label))
        return self._cache[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, m, label = self._volume(i)
        view = self.views[int(torch.randint(0, len(self.views), (1,), generator=self._gen))]
        axis = VIEW_AXIS[view]
        idx = torch.from_numpy(
            sample_slices(x.shape[axis], self.interval, self.max_slices, self._gen)
        )
        img = x.index_select(axis, idx).movedim(axis, 0).float()[:, None]
        msk = None if m is None else m.index_select(axis, idx).movedim(axis, 0).float()[:, None]
        return {"image": img, "mask": msk, "label": label, "view": view, "index": i}


@contextmanager
def channels_last(module: torch.nn.Module) -> Iterator[None]:
    """Hold ``module``'s 4-D weights channels_last (NHWC) inside the block, then restore
    them: oneDNN convolutions on NHWC skip a layout reorder per call. The parameters stay
    the same objects (an optimizer holding them is unaffected) and the same values."""
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


@torch.inference_mode()
def infer_volume(
    model: IAGNetModel, volume: Any, window: tuple[float, float], chunk_slices: int = 4
) -> dict[str, Any]:
    """Attention p_x (2), local q_x (14) and P_g (7), each averaged over the model's views.

    ``volume`` is any (Z, Y, X) array-like (numpy, dask, memmap) in HU; it is read
    ``chunk_slices`` slices at a time. The softmax pooling (4)-(5) over the whole
    volume is accumulated chunk by chunk with a running log-sum-exp, so the result
    equals an unchunked pass. Speed and memory: the U-Net runs channels_last, both
    heads are one (C, 2) matmul on the feature map as it lies (no (N, C) copy), the
    pooling is one matmul per chunk, and the views' maps are summed in place into the
    two output volumes. On CUDA (untested here: no GPU in the session that wrote it)
    the U-Net runs in bf16 autocast with the heads and pooling in float32, on chunks of
    at least 16 slices. Progress (slices) goes to :func:`..progress.report`.
    """
    from napari_wsseg.methods.progress import Progress, report

    t0 = time.perf_counter()
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    shape = tuple(int(s) for s in volume.shape)
    p_sum = np.zeros(shape, np.float32)
    q_sum = np.zeros(shape, np.float32)
    pg = {}
    chunk = max(16 if cuda else 1, int(chunk_slices))
    total = sum(shape[VIEW_AXIS[v]] for v in model.views)
    done = 0
    for view in model.views:
        axis = VIEW_AXIS[view]
        heads = model.heads[view]
        w = torch.stack([heads.w_a, heads.w_l], 1)  # (C, 2): a (1) and l (14) in one product
        m_run, s_run = -np.inf, 0.0
        h_run = torch.zeros(model.channels, dtype=torch.float64, device=device)
        with channels_last(model.backbones[view]):
            for s0 in range(0, shape[axis], chunk):
                sl = [slice(None)] * 3
                sl[axis] = slice(s0, min(s0 + chunk, shape[axis]))
                block = np.moveaxis(np.asarray(volume[tuple(sl)]), axis, 0)
                x = L.preprocess_hu(torch.from_numpy(np.ascontiguousarray(block)), window)
                x = x[:, None].contiguous(memory_format=torch.channels_last)
                x = x.to(device, non_blocking=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    fmap = model.feature_map(view, x)  # (S, C, H, W), NHWC in memory
                fmap = fmap.float()  # no-op on CPU
                n, c, hh, ww = fmap.shape
                f = fmap.permute(0, 2, 3, 1).reshape(n, hh * ww, c)  # a view unless padded
                al = torch.matmul(f, w)  # (S, H*W, 2): a_x, l_x
                a = al[..., 0]
                cm = float(a.max())
                e = torch.exp(a - cm)  # (S, H*W)
                m_new = max(m_run, cm)
                old, new = np.exp(m_run - m_new), np.exp(cm - m_new)
                h_chunk = torch.matmul(e[:, None], f).sum((0, 1))  # sum_x e_x f_x, (C,)
                h_run = h_run * old + h_chunk.double() * new
                s_run = s_run * old + float(e.sum(dtype=torch.float64)) * new
                m_run = m_new
                pq = torch.sigmoid_(al).reshape(n, hh, ww, 2).cpu().numpy()
                np.moveaxis(p_sum[tuple(sl)], axis, 0)[...] += pq[..., 0]
                np.moveaxis(q_sum[tuple(sl)], axis, 0)[...] += pq[..., 1]
                done += n
                elapsed = time.perf_counter() - t0
                report(Progress(done, total, elapsed, unit="slices", finished=done == total))
        h = (h_run / s_run).float().to(heads.w_g.device)
        pg[view] = float(torch.sigmoid(L.global_logit(h, heads.w_g)))
    n_views = len(model.views)
    if n_views > 1:
        p_sum /= n_views
        q_sum /= n_views
    return {"p": p_sum, "q": q_sum, "pg": float(np.mean(list(pg.values()))), "pg_views": pg}
