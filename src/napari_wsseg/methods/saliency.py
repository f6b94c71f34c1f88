"""Class activation maps for any convolutional classifier, 2D or 3D.

Methods: ``gradcam`` (Selvaraju et al. 2017), ``gradcampp`` (Chattopadhyay et al.
2018), ``layercam`` (Jiang et al. 2021), ``hirescam`` (Draelos & Carin 2020),
``xgradcam`` (Fu et al. 2020) and ``cam`` (Zhou et al. 2016, for models ending in
global average pooling + a linear layer).

Speed design: the floor of Grad-CAM is one inference forward pass. We run the model
once under ``torch.no_grad()``; a forward hook on the target layer swaps the layer's
output for a detached leaf tensor that requires grad and switches grad mode on
(grad mode is a thread-local flag, so it stays on for every module that runs after
the hook, until the outer ``no_grad`` block exits and restores it). The autograd
graph therefore starts at the target activation: the network below it runs without
recording, and only the part above it (for DenseNet/ResNet: pooling + the linear
layer) is differentiated. K classes cost that one forward plus K backward passes
through the head (``torch.autograd.grad`` w.r.t. the leaf only, so parameter
gradients are neither computed nor accumulated). All hooks live inside a context
manager and are removed even when the forward raises.

MONAI's ``monai.visualize.GradCAM`` gives the same Grad-CAM (checked in the tests)
but repeats a full grad-enabled forward per class, post-processes with an inverted
normaliser (max -> 0) and leaves its hooks registered on the model; hence this module.

Upsampling (``align``): MONAI and most Grad-CAM code resize the map with
``interpolate(align_corners=False)``, which puts feature cell ``i`` of a stride-``s``
layer on input pixel ``s*i + (s-1)/2``. That is where the cell's receptive field is
centred only when every downsampling step is an even, unpadded window (2x2 pooling).
A 3x3 stride-2 convolution with padding 1 centres output ``i`` on input ``2i``; four of
them (a stride-16 encoder) put the map 7.5 px below and right of the evidence.
``align='receptive_field'`` records each convolution / pooling layer's kernel, stride,
padding and dilation during the forward pass, composes them into the target layer's
grid (cell ``i`` centred on ``stride*i + offset`` per axis; see :func:`layer_grid`) and
resamples the map on that grid. ``align='interpolate'`` (default) keeps MONAI's
convention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("gradcam", "gradcampp", "layercam", "hirescam", "xgradcam", "cam")

_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
ALIGNS = ("interpolate", "receptive_field")


@dataclass
class SaliencyResult:
    """Maps (B, K, *spatial) on the input grid plus the logits (B, C) of the same forward."""

    maps: torch.Tensor
    logits: torch.Tensor
    classes: list[int]


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, _CONV) for m in module.modules())


def default_target_layer(model: nn.Module) -> str:
    """A sensible layer to explain: the output of the last convolutional block.

    A model may name its own layer with a ``saliency_layer`` attribute (str).
    Otherwise, at each container level we take the last child holding a
    convolution, extended over the elementwise layers (activation, norm, dropout)
    that follow it, or into the first activation of the next container (MONAI's
    DenseNet121 -> ``class_layers.relu``, its ResNets -> ``layer4``). A child that
    holds both convolutions and a head (pooling / linear) is entered recursively.
    """
    model = getattr(model, "module", model)
    own = getattr(model, "saliency_layer", None)
    if isinstance(own, str):
        return own
    prefix, container = "", model
    while True:
        children = list(container.named_children())
        idx = [i for i, (_, c) in enumerate(children) if _has_conv(c)]
        if not idx:
            if not prefix:
                raise ValueError(f"{type(model).__name__} has no convolution layer to explain")
            return prefix.rstrip(".")
        i = idx[-1]
        name, child = children[i]
        heads = [m for m in child.modules() if isinstance(m, (nn.Linear, nn.Flatten))]
        if heads and len(list(child.children())) > 0:
            prefix, container = f"{prefix}{name}.", child
            continue
        chosen = f"{prefix}{name}"
        for nxt_name, nxt in children[i + 1 :]:
            if isinstance(nxt, _ELEMENTWISE):
                chosen = f"{prefix}{nxt_name}"
                continue
            first = next(iter(nxt.named_children()), None)
            if first is not None and isinstance(first[1], _ELEMENTWISE):
                chosen = f"{prefix}{nxt_name}.{first[0]}"
            break
        return chosen


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()``; clear error otherwise."""
    modules = dict(model.named_modules())
    if name not in modules:
        near = [n for n in modules if n and (name in n or n.split(".")[-1] == name.split(".")[-1])]
        hint = f"; similar: {near[:8]}" if near else ""
        raise KeyError(f"{type(model).__name__} has no layer named {name!r}{hint}")
    return modules[name]


@contextlib.contextmanager
def _capture(layer: nn.Module, with_grad: bool) -> Iterator[dict[str, torch.Tensor]]:
    """Capture ``layer``'s output; with ``with_grad`` make it the autograd leaf.

    The hook handle is removed when the block exits, whatever happens inside.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inp: object, out: object) -> torch.Tensor | None:
        if "act" in store:
            raise RuntimeError("the target layer ran twice in one forward; pick another layer")
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"target layer output is {type(out).__name__}, expected a tensor")
        leaf = out.detach()
        if not with_grad:
            store["act"] = leaf
            return None
        leaf.requires_grad_(True)
        store["act"] = leaf
        # Grad mode stays on for the rest of the forward (the head only); the caller's
        # no_grad block restores the previous mode on exit. clone() keeps the leaf
        # intact if a later layer works in place (DenseNet's ReLU(inplace=True)).
        torch.set_grad_enabled(True)
        return leaf.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _combine(method: str, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """One class's map (B, *spatial) from activation A and dy/dA, both (B, C, *spatial)."""
    dims = tuple(range(2, act.ndim))
    if method == "gradcam":  # eq. 1-2 of the CheXseg paper (App. A.1)
        w = grad.mean(dim=dims, keepdim=True)
        return F.relu((w * act).sum(1))
    if method == "gradcampp":
        # Grad-CAM++ eq. 19 (exponential score): alpha = g^2 / (2 g^2 + sum_ab A_ab g^3);
        # w = sum_ij alpha_ij relu(g_ij). The factor exp(S) of relu(exp(S) g) is a
        # positive constant per map, removed by normalisation, and overflows for large
        # logits: left out (as pytorch-grad-cam does).
        g2, g3 = grad.pow(2), grad.pow(3)
        denom = 2 * g2 + act.sum(dim=dims, keepdim=True) * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
        w = (alpha * F.relu(grad)).sum(dim=dims, keepdim=True)
        return F.relu((w * act).sum(1))
    if method == "layercam":  # Layer-CAM: relu(sum_k relu(g_k) * A_k)
        return F.relu((F.relu(grad) * act).sum(1))
    if method == "hirescam":  # HiResCAM: sum_k g_k * A_k, relu'd for display like Grad-CAM
        return F.relu((grad * act).sum(1))
    if method == "xgradcam":  # XGrad-CAM: w_k = sum(g_k A_k) / sum(A_k)
        den = act.sum(dim=dims, keepdim=True)
        w = (grad * act).sum(dim=dims, keepdim=True) / torch.where(den != 0, den, 1e-7)
        return F.relu((w * act).sum(1))
    raise ValueError(f"unknown saliency method {method!r}; expected one of {METHODS}")


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max each (b, k) map to [0, 1], hot = high; a constant map becomes 0."""
    b, k = maps.shape[:2]
    flat = maps.reshape(b, k, -1)
    lo = flat.min(-1, keepdim=True).values
    rng = flat.max(-1, keepdim=True).values - lo
    out = torch.where(rng > 0, (flat - lo) / torch.where(rng > 0, rng, 1.0), 0.0)
    return out.reshape(maps.shape)


Grid = tuple[tuple[float, float], ...]  # per spatial axis: (stride, offset)


def _per_axis(value: object, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def window_grid(module: nn.Module, n: int) -> Grid:
    """(stride, offset) per axis of a convolution or pooling layer: output ``i`` is the
    window starting at input ``stride*i - padding``, centred on ``stride*i + offset``
    with ``offset = dilation*(kernel-1)/2 - padding``."""
    k = _per_axis(module.kernel_size, n)
    st = _per_axis(module.stride, n)  # pooling layers store stride=kernel when None
    d = _per_axis(getattr(module, "dilation", 1), n)
    pad = module.padding
    if isinstance(pad, str):  # conv only: 'valid' = 0; 'same' pads total // 2 first
        pad = tuple(0 if pad == "valid" else (di * (ki - 1)) // 2 for ki, di in zip(k, d))
    pad = _per_axis(pad, n)
    return tuple(
        (float(si), di * (ki - 1) / 2 - float(pi)) for ki, si, di, pi in zip(k, st, d, pad)
    )


@contextlib.contextmanager
def _track_grid(model: nn.Module, x: torch.Tensor) -> Iterator[dict[tuple, Grid | None]]:
    """During the forward, map each spatial shape to its grid on the input.

    Geometry is tracked by spatial shape: every tensor of one shape is assumed to lie
    on one grid (true for convolutional classifiers, whose branches, concatenations
    and residual sums join aligned tensors). Conv / pooling layers compose their
    window geometry onto their input's grid; a shape reached with two different grids
    maps to None (unknown), and so does the output of a layer whose input shape has no
    known grid. Hooks are removed when the block exits.
    """
    n = x.ndim - 2
    grids: dict[tuple, Grid | None] = {tuple(x.shape[2:]): ((1.0, 0.0),) * n}

    def hook(module: nn.Module, inp: tuple, out: object) -> None:
        if not inp or not isinstance(inp[0], torch.Tensor) or not isinstance(out, torch.Tensor):
            return
        if inp[0].ndim != n + 2:
            return
        key = tuple(out.shape[2:])
        src = grids.get(tuple(inp[0].shape[2:]))
        if src is None:  # input of an unknown grid (e.g. from a functional op)
            grids[key] = None
            return
        new = tuple(
            (s0 * s1, c0 + s0 * c1) for (s0, c0), (s1, c1) in zip(src, window_grid(module, n))
        )
        old = grids.get(key, new)
        same = old is not None and all(
            abs(a - b) < 1e-6 for pa, pb in zip(old, new) for a, b in zip(pa, pb)
        )
        grids[key] = new if same else None

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONV + _POOL)
    ]
    try:
        yield grids
    finally:
        for h in handles:
            h.remove()


def layer_grid(model: nn.Module, x: torch.Tensor, target_layer: str | None = None) -> Grid | None:
    """The grid of ``target_layer``'s output on the input ``x``: per spatial axis
    ``(stride, offset)``, cell ``i`` centred on input coordinate ``stride*i + offset``
    (pixel centres at integers). None when the layers before it do not determine it."""
    model = getattr(model, "module", model)
    layer = get_layer(model, target_layer or default_target_layer(model))
    with torch.no_grad(), _track_grid(model, x) as grids, _capture(layer, False) as store:
        model(x)
    return grids.get(tuple(store["act"].shape[2:])) if "act" in store else None


def upsample_maps(
    maps: torch.Tensor, size: Sequence[int], grid: Grid | None = None
) -> torch.Tensor:
    """(Bi/tri)linear resize of (B, K, *s) maps to ``size``.

    ``grid`` None: ``interpolate(align_corners=False)``, as MONAI. Otherwise per axis
    (stride, offset): output pixel ``p`` reads the map at the fractional cell
    ``(p - offset) / stride``, clamped to the first/last cell (as interpolate clamps).
    """
    size = tuple(int(s) for s in size)
    if grid is None:
        if tuple(maps.shape[2:]) == size:
            return maps
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
        return F.interpolate(maps, size=size, mode=mode, align_corners=False)
    out = maps
    for axis, (n_out, (stride, offset)) in enumerate(zip(size, grid)):
        dim, n_in = axis + 2, out.shape[axis + 2]
        u = (torch.arange(n_out, dtype=torch.float64) - offset) / stride
        u = u.clamp(0, n_in - 1)
        i0 = u.floor().long()
        i1 = (i0 + 1).clamp(max=n_in - 1)
        w = (u - i0).to(out.dtype).to(out.device)
        shape = [1] * out.ndim
        shape[dim] = n_out
        w = w.view(shape)
        dev = out.device
        out = out.index_select(dim, i0.to(dev)) * (1 - w) + out.index_select(dim, i1.to(dev)) * w
    return out


def _linear_layer(model: nn.Module, name: str | None, channels: int) -> nn.Linear:
    if name is not None:
        layer = get_layer(model, name)
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"fc_layer {name!r} is {type(layer).__name__}, not nn.Linear")
        return layer
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].in_features != channels:
        raise ValueError(
            "CAM needs a model ending in global average pooling + nn.Linear whose "
            f"in_features equal the target layer's channels ({channels}); pass fc_layer"
        )
    return linears[-1]


def _check_classes(classes: Sequence[int] | None, n: int) -> list[int]:
    if classes is None:
        return list(range(n))
    out = [int(c) for c in classes]
    bad = [c for c in out if not 0 <= c < n]
    if bad:
        raise ValueError(f"classes {bad} out of range for a model with {n} outputs")
    return out


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "gradcam",
    target_layer: str | None = None,
    classes: Sequence[int] | None = None,
    normalize: bool = True,
    upsample: bool = True,
    fc_layer: str | None = None,
    align: str = "interpolate",
) -> SaliencyResult:
    """Saliency maps and the logits of one forward pass (see :func:`saliency_maps`).

    ``align``: how maps are put on the input grid (module docstring): 'interpolate'
    (MONAI's convention) or 'receptive_field' (each cell on its receptive field's
    centre; falls back to 'interpolate' when the layers do not determine the grid).
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; expected one of {METHODS}")
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; expected one of {ALIGNS}")
    model = getattr(model, "module", model)
    name = target_layer or default_target_layer(model)
    layer = get_layer(model, name)
    was_training = model.training
    model.eval()
    try:
        track = _track_grid(model, x) if align == "receptive_field" and upsample else None
        with torch.inference_mode(False):
            with (
                torch.no_grad(),
                track or contextlib.nullcontext() as grids,
                _capture(layer, with_grad=method != "cam") as store,
            ):
                logits = model(x)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise TypeError("the model must return logits of shape (B, C)")
            if "act" not in store:
                raise RuntimeError(f"target layer {name!r} did not run in the forward pass")
            act = store["act"]
            cls = _check_classes(classes, logits.shape[1])
            if method == "cam":
                fc = _linear_layer(model, fc_layer, act.shape[1])
                w = fc.weight.detach()[cls]  # (K, C); CAM of Zhou et al.: no bias
                maps = torch.einsum("kc,bc...->bk...", w, act.detach())
            else:
                grads = []
                with torch.enable_grad():  # the caller may be inside no_grad
                    for i, c in enumerate(cls):
                        score = logits[:, c].sum()  # samples are independent in eval mode
                        last = i == len(cls) - 1
                        grads.append(torch.autograd.grad(score, act, retain_graph=not last)[0])
                with torch.no_grad():
                    act = act.detach()
                    maps = torch.stack([_combine(method, act, g) for g in grads], 1)
    finally:
        model.train(was_training)
    maps = maps.detach().float()
    if upsample:
        grid = grids.get(tuple(act.shape[2:])) if grids is not None else None
        maps = upsample_maps(maps, x.shape[2:], grid)
    if normalize:
        maps = normalize_maps(maps)
    return SaliencyResult(maps=maps, logits=logits.detach(), classes=cls)


def saliency_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "gradcam",
    target_layer: str | None = None,
    classes: Sequence[int] | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Class activation maps of ``model`` for input ``x`` (B, C_in, *spatial).

    Parameters
    ----------
    model : a classifier returning logits (B, C); explained in eval mode (its mode
        is restored afterwards). Scores are the logits (pre-sigmoid/softmax).
    method : one of ``METHODS``.
    target_layer : module name in ``model.named_modules()``; default
        :func:`default_target_layer`.
    classes : class indices to explain (K of them); None = every output class.
    normalize : min-max each map to [0, 1] (hot = high).

    Returns
    -------
    torch.Tensor (B, K, *spatial) on the input's grid (linear upsampling).
    """
    return explain(model, x, method, target_layer, classes, normalize).maps
