"""Metric-learning losses of the manifold-attention method (Adiga et al., eq. 2).

Margin loss with distance-weighted negative sampling (Wu et al. 2017, "Sampling
matters in deep embedding learning"), on L2-normalised embeddings, and the
divide-and-conquer helpers of DCML (Sanakoyeu et al. 2019): the embedding is cut
into K sub-spaces, the data into K clusters, and each learner (sub-space) is
trained on batches drawn from its cluster.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pairwise_distances(emb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Euclidean distances D_ij between the rows of ``emb`` (B, n); zero on the diagonal."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    # sqrt'(0) is infinite: keep the diagonal out of the square root's gradient.
    return torch.where(eye, torch.zeros_like(sq), (sq + eps).sqrt())


def distance_weights(
    dist: torch.Tensor,
    labels: torch.Tensor,
    dim: int,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
) -> torch.Tensor:
    """Unnormalised negative-sampling weights w_ij = 1 / q(d_ij) of Wu et al.

    For points uniform on the unit sphere in R^n the pairwise distance has density
    q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2); sampling negatives with probability ∝ 1/q(d)
    spreads them over all distances instead of the crowded d ≈ √2. Distances are
    clipped below at ``cutoff`` (0.5 in Wu et al.) so near-duplicates do not get an
    unbounded weight. Negatives farther than ``nonzero_loss_cutoff`` give no margin
    loss for beta = 1.2, alpha = 0.2 and get weight 0, as in Wu et al.'s code. Same-class
    pairs and the diagonal get weight 0. Rows are scaled so that their maximum is 1
    (the scale does not change the sampling probabilities).
    """
    n = float(dim)
    d = dist.detach().clamp(min=cutoff, max=2.0 - 1e-4)
    log_w = (2.0 - n) * d.log() - ((n - 3.0) / 2.0) * (1.0 - 0.25 * d.pow(2)).log()
    negative = labels.unsqueeze(0) != labels.unsqueeze(1)
    valid = negative & (dist.detach() < nonzero_loss_cutoff)
    log_w = log_w.masked_fill(~valid, float("-inf"))
    row_max = log_w.max(dim=1, keepdim=True).values
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    return (log_w - row_max).exp()


def sample_pairs(
    dist: torch.Tensor,
    labels: torch.Tensor,
    dim: int,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All positive pairs (i, j != i) plus one distance-weighted negative per positive pair.

    Returns anchor indices, partner indices and mu (+1 positive, -1 negative), as Wu
    et al. do: every anchor takes each of its positives once and, for each, draws a
    negative ∝ 1/q(d). An anchor with no valid negative (all too far) keeps its
    positives only.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_a, pos_p = torch.nonzero(same & ~eye, as_tuple=True)
    w = distance_weights(dist, labels, dim, cutoff, nonzero_loss_cutoff)
    has_neg = w.sum(1) > 0
    keep = has_neg[pos_a]
    neg_a = pos_a[keep]
    if len(neg_a):
        probs = w[neg_a] / w[neg_a].sum(1, keepdim=True)
        neg_n = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    else:
        neg_n = neg_a
    anchors = torch.cat([pos_a, neg_a])
    partners = torch.cat([pos_p, neg_n])
    mu = torch.cat([torch.ones_like(pos_a), -torch.ones_like(neg_a)]).to(dist.dtype)
    return anchors, partners, mu


def margin_loss(
    dist: torch.Tensor, mu: torch.Tensor, alpha: float, beta: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: l = [alpha + mu_ij (D_ij - beta)]_+, averaged over the pairs with a non-zero
    loss (Wu et al.'s normalisation, so easy pairs do not dilute the gradient).

    Returns (loss, number of active pairs).
    """
    per_pair = F.relu(alpha + mu * (dist - beta))
    active = (per_pair > 0).sum()
    return per_pair.sum() / active.clamp(min=1).to(per_pair.dtype), active


def embedding_margin_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.2,
    beta: torch.Tensor | float = 1.2,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Margin loss (eq. 2) of a batch of embeddings, L2-normalised here, with
    distance-weighted sampling. Returns (loss, number of active pairs)."""
    z = F.normalize(emb, dim=1)
    dist = pairwise_distances(z)
    a, p, mu = sample_pairs(dist, labels, z.shape[1], cutoff, nonzero_loss_cutoff, generator)
    return margin_loss(dist[a, p], mu, alpha, beta)


# --- DCML: sub-spaces and clusters -----------------------------------------------------


def subspace_slices(dim: int, k: int) -> list[slice]:
    """Cut a d-dimensional embedding into K contiguous sub-spaces (the last ones take
    the remainder when K does not divide d)."""
    if not 1 <= k <= dim:
        raise ValueError(f"DCML needs 1 <= K <= d, got K={k}, d={dim}")
    bounds = np.linspace(0, dim, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def cluster_embeddings(
    emb: np.ndarray, k: int, seed: int = 0, previous: np.ndarray | None = None
) -> np.ndarray:
    """K-means (scikit-learn) of L2-normalised embeddings into K groups, one per learner.

    When ``previous`` assignments are given, new clusters are renumbered to the old
    ones of largest overlap (Hungarian matching), so that learner k keeps training
    on roughly the same data after a re-clustering, as in Sanakoyeu et al.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    z = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    k = min(k, len(z))
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(z)
    if previous is None or len(previous) != len(labels):
        return labels.astype(np.int64)
    overlap = np.zeros((k, k))
    np.add.at(overlap, (labels, np.clip(previous, 0, k - 1)), 1)
    rows, cols = linear_sum_assignment(-overlap)
    remap = np.empty(k, dtype=np.int64)
    remap[rows] = cols
    return remap[labels]
