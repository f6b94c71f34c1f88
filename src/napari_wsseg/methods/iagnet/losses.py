"""IAG-Net's equations on flat tensors (Wang et al., IEEE TMI 2021, Sec. III).

Every function takes the instances of one volume flattened: ``f`` (N, C) features,
``a`` (N,) attention logits ``w_a^T f_x``, ``l`` (N,) local logits ``w_l^T f_x``.
Voxel losses (3), (15) are sums over the lattice as written: the bag loss (12) and
the global loss (6) are one BCE per volume, so the sums keep the paper's balance
between the terms (a per-voxel mean would weigh (12) N times more; see
docs/methods/iagnet.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HU_WINDOW = (-125.0, 350.0)


def preprocess_hu(volume: torch.Tensor, window: tuple[float, float] = HU_WINDOW) -> torch.Tensor:
    """Clip HU to ``window`` and scale to [0, 1] (Sec. IV-C)."""
    lo, hi = window
    return (volume.float().clamp(lo, hi) - lo) / (hi - lo)


def attention_probability(a: torch.Tensor) -> torch.Tensor:
    """Eq. (2): p_x = sigmoid(a_x), the probability-like attention."""
    return torch.sigmoid(a)


def attention_loss(a: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. (3): cross-entropy of p_x = sigmoid(a_x) against the voxel labels y_x, summed
    over the lattice as written (``reduction='mean'`` for the per-voxel mean)."""
    return F.binary_cross_entropy_with_logits(a, y.float(), reduction=reduction)


def attention_weights(a: torch.Tensor) -> torch.Tensor:
    """Eq. (4): alpha_x = softmax over *all* instances of the volume."""
    return torch.softmax(a, dim=0)


def attention_pool(a: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Eq. (5): h = sum_x alpha_x f_x, the bag vector of the volume, shape (C,)."""
    return attention_weights(a) @ f


def global_logit(h: torch.Tensor, w_g: torch.Tensor) -> torch.Tensor:
    """Eq. (7) before the sigmoid: w_g^T h (P_g = sigmoid of it)."""
    return h @ w_g


def global_loss(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (6): binary cross-entropy of P_g = sigmoid(logit) against the volume label y."""
    return F.binary_cross_entropy_with_logits(logit, y.float())


def kmeans2_threshold(values: torch.Tensor) -> torch.Tensor:
    """Eq. (9): the threshold t_a of an exact 2-means split of 1-D ``values``.

    In 1-D the optimal 2-means clusters are contiguous in sorted order, so the
    optimum is the best of the N-1 cut points: with prefix sums S_k, the SSE of a cut
    after k values is sum v^2 - S_k^2/k - (S_N - S_k)^2/(N - k); we maximise the two
    subtracted terms (vectorised, float64). Returns the largest value of the low
    cluster, so the high cluster is ``values > t_a``. Runs without gradient (the paper:
    "performed in the forward pass, not in the backward pass"). The paper writes a
    norm in (9) but names K-means; we minimise the squared (K-means) loss.
    """
    v = values.detach().reshape(-1).double()
    n = v.numel()
    if n < 2:
        return v.max() if n else torch.tensor(0.0, dtype=torch.float64)
    s, _ = torch.sort(v)
    csum = torch.cumsum(s, 0)
    k = torch.arange(1, n, dtype=torch.float64, device=v.device)
    left = csum[:-1]
    right = csum[-1] - left
    score = left**2 / k + right**2 / (n - k)
    best = int(torch.argmax(score))
    return s[best]


def split_bags(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (X_f, X_b) of the tumour and background bags of one volume.

    Errata (DESIGN.md): the tumour bag is the *high*-attention side,
    X_f = {p_x > t_a}, X_b = {p_x <= t_a}.
    """
    t = kmeans2_threshold(p).to(p.dtype)
    xf = p.detach() > t
    return xf, ~xf


def bag_logit(l: torch.Tensor, bag: torch.Tensor) -> torch.Tensor:
    """Eqs. (10)-(11) through (13): w_l^T (mean of f over the bag) = mean of l_x over it."""
    return l[bag].mean()


def unannotated_local_loss(l: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eq. (12) with bag labels 1 (tumour bag X_f) and 0 (background bag X_b), errata.

    ``l`` are the local logits w_l^T f_x, ``p`` the attention probabilities that
    define the bags (9). An empty bag (constant p) contributes nothing.
    """
    xf, xb = split_bags(p)
    loss = l.new_zeros(())
    if xf.any():
        loss = loss + F.binary_cross_entropy_with_logits(bag_logit(l, xf), l.new_ones(()))
    if xb.any():
        loss = loss + F.binary_cross_entropy_with_logits(bag_logit(l, xb), l.new_zeros(()))
    return loss


def annotated_local_loss(l: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Eq. (15): cross-entropy of q_x = sigmoid(l_x) (14) against the voxel labels, summed
    as written (``reduction='mean'`` for the per-voxel mean)."""
    return F.binary_cross_entropy_with_logits(l, y.float(), reduction=reduction)


def adaptive_lambda(p: torch.Tensor, constant: bool = False) -> torch.Tensor:
    """Eq. (16)'s weight: lambda = max_x p_x (detached: a reliability weight, not a
    target), or 1 for the constant-lambda ablation."""
    if constant:
        return p.new_ones(())
    return p.detach().max()


def total_loss(
    l_global: torch.Tensor, l_att: torch.Tensor, l_local: torch.Tensor, beta: float = 20.0
) -> torch.Tensor:
    """Eqs. (17)-(19): L = L_global + beta * (L_att + L_L)."""
    return l_global + beta * (l_att + l_local)
