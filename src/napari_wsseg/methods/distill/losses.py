"""Distill-to-Label losses: VAT-regularised MIL teacher (eq. 3) and student (eq. 5-6).

Decisions where the paper is silent (also in docs/methods/distill.md):

- L_n and L_delta are "binary cross entropy" between T(X) and T(X_n) / T(X_delta);
  the clean prediction is the (detached) soft target, as in virtual adversarial
  training, so the perturbed bag is pulled to the clean one and not the reverse.
- X_n appends ``round(noise_frac * K)`` (>= 1) tiles drawn uniformly in [0, 1] (the
  range of the normalised tiles). X_delta adds to each tile a perturbation drawn
  uniformly in the L2 ball of radius ``delta * sqrt(D)`` (``delta`` is an RMS per
  pixel value, so it does not depend on the tile size). X-bar keeps a uniform random
  fraction in [subset_min, subset_max] of the tiles (at least 1, fewer than K); L_e
  averages the entropy over ``n_subsets`` realisations.
- The instance sums of eq. (5) are means over the K tiles, so gamma_i and gamma_e
  keep their meaning whatever the bag size (a sum would scale them by K).
- Features of X are computed once: X_n and X-bar only add or drop tiles, so their
  pooled outputs reuse the clean features (exact: the network has no batch norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-6


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """H(p, q) of eq. (6): KL divergence between Bernoulli(p) and Bernoulli(q), elementwise."""
    p = p.clamp(EPS, 1 - EPS)
    q = q.clamp(EPS, 1 - EPS)
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """Conditional entropy L_e of a Bernoulli output (eq. 3 and 5), elementwise, in nats."""
    p = p.clamp(EPS, 1 - EPS)
    return -(p * torch.log(p) + (1 - p) * torch.log(1 - p))


def noise_instances(x: torch.Tensor, n: int, generator: torch.Generator | None = None):
    """``n`` uncorrelated noise tiles ~ U[0, 1] shaped like the tiles of ``x`` (for X_n)."""
    return torch.rand((n, *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)


def ball_perturbation(
    x: torch.Tensor, delta: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A perturbation per tile drawn uniformly in the L2 ball of radius delta*sqrt(D) (X_delta)."""
    k, d = x.shape[0], x[0].numel()
    g = torch.randn((k, d), generator=generator, dtype=x.dtype).to(x.device)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(EPS)
    u = torch.rand((k, 1), generator=generator, dtype=x.dtype).to(x.device)
    radius = delta * math.sqrt(d) * u ** (1.0 / d)
    return (g * radius).reshape(x.shape)


def random_subset(
    k: int, lo: float, hi: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices of a random subset for X-bar: a fraction in [lo, hi] of k, 1 <= size < k."""
    frac = lo + (hi - lo) * torch.rand((), generator=generator).item()
    size = min(max(1, int(round(frac * k))), max(1, k - 1))
    return torch.randperm(k, generator=generator)[:size]


def teacher_loss(net, x: torch.Tensor, y: torch.Tensor, cfg, generator=None) -> dict:
    """Eq. (3): lambda_c L_c + lambda_n L_n + lambda_delta L_delta + lambda_e L_e.

    ``net`` is a :class:`MILNet`, ``x`` one bag (K, C, t, t), ``y`` its 0/1 label.
    With ``cfg.vat`` False only L_c is used: the plain attention MIL of Ilse et al.
    """
    h = net.features(x)
    logit, _ = net.pool(h)
    l_c = F.binary_cross_entropy_with_logits(logit, y)
    out = {"bce": l_c}
    if not cfg.vat:
        out["loss"] = l_c
        return out
    target = torch.sigmoid(logit).detach()
    k = x.shape[0]
    n_noise = max(1, int(round(cfg.noise_frac * k)))
    h_noise = net.features(noise_instances(x, n_noise, generator))
    l_n = F.binary_cross_entropy_with_logits(net.pool(torch.cat([h, h_noise]))[0], target)
    x_delta = (x + ball_perturbation(x, cfg.delta, generator)).clamp(0.0, 1.0)
    l_d = F.binary_cross_entropy_with_logits(net(x_delta)[0], target)
    ents = []
    for _ in range(max(1, cfg.n_subsets)):
        idx = random_subset(k, cfg.subset_min, cfg.subset_max, generator).to(h.device)
        ents.append(binary_entropy(torch.sigmoid(net.pool(h[idx])[0])))
    l_e = torch.stack(ents).mean()
    out.update(noise=l_n, delta=l_d, entropy=l_e)
    out["loss"] = (
        cfg.lambda_c * l_c + cfg.lambda_n * l_n + cfg.lambda_delta * l_d + cfg.lambda_e * l_e
    )
    return out


def student_loss(student, teacher, x: torch.Tensor, y: torch.Tensor, cfg) -> dict:
    """Eq. (5): gamma_c BCE(Y, P^s) + gamma_b H(P^t_tau, P^s_tau)
    + gamma_i mean_k H(P^{k,t}_tau, P^{k,s}_tau) + gamma_e mean_k L_e(P^{k,s}).

    The teacher runs without gradient; P^{k,.} is the net's output for tile k alone
    (a bag of size 1), P_tau = sigmoid(logit / tau) (eq. 4).
    """
    tau = cfg.tau
    with torch.no_grad():
        ht = teacher.features(x)
        lt_bag, _ = teacher.pool(ht)
        lt_inst = teacher.instance_logits_from(ht)
    hs = student.features(x)
    ls_bag, _ = student.pool(hs)
    ls_inst = student.instance_logits_from(hs)
    l_c = F.binary_cross_entropy_with_logits(ls_bag, y)
    l_b = bernoulli_kl(torch.sigmoid(lt_bag / tau), torch.sigmoid(ls_bag / tau))
    l_i = bernoulli_kl(torch.sigmoid(lt_inst / tau), torch.sigmoid(ls_inst / tau)).mean()
    l_e = binary_entropy(torch.sigmoid(ls_inst)).mean()
    loss = cfg.gamma_c * l_c + cfg.gamma_b * l_b + cfg.gamma_i * l_i + cfg.gamma_e * l_e
    return {"loss": loss, "bce": l_c, "kd_bag": l_b, "kd_instance": l_i, "entropy": l_e}
