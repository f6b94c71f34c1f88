"""Seeds, 95 % confidence intervals and verdicts shared by the method benchmarks.

A claim "A beats B" is tested on the per-seed (or per-fold) paired differences
A - B: their mean and a two-sided 95 % Student-t interval over the seeds. The
verdict follows from the interval only:

- ``reproduced``: the whole interval lies above 0 (A > B at this sample size);
- ``not reproduced``: the whole interval lies below 0 (the ordering is reversed),
  or below ``margin`` when one is given (the gap is smaller than that);
- ``inconclusive``: the interval contains 0 (more seeds needed to tell).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over ``values`` (NaN-free).

    One value gives an infinite interval: a single seed says nothing about spread.
    """
    from scipy import stats

    v = np.asarray([x for x in values if not math.isnan(float(x))], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) == 1:
        return m, -math.inf, math.inf
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def verdict(diffs: Sequence[float], margin: float | None = None) -> str:
    """The verdict on "A beats B" from the paired differences A - B (see module doc)."""
    _, lo, hi = t_interval(diffs)
    if math.isnan(lo):
        return "inconclusive"
    if lo > 0:
        return "reproduced"
    if hi < 0 or (margin is not None and hi < margin):
        return "not reproduced"
    return "inconclusive"


def fmt_ci(values: Sequence[float], digits: int = 1, scale: float = 1.0) -> str:
    """'mean [low, high]' of ``values`` (times ``scale``) with ``digits`` decimals."""
    m, lo, hi = (scale * x for x in t_interval(values))
    if math.isnan(m):
        return "–"
    if math.isinf(lo):
        return f"{m:.{digits}f} (1 seed)"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summary(values: Sequence[float], digits: int = 1, scale: float = 1.0) -> str:
    """'median / mean [95 % CI]' for skewed per-seed scores (a collapsed seed)."""
    v = [scale * x for x in values if not math.isnan(float(x))]
    if not v:
        return "–"
    return f"{np.median(v):.{digits}f} / {fmt_ci(v, digits)}"


def claim_row(
    claim: str, paper: str, diffs: Sequence[float], regime: str, digits: int = 3, scale=1.0
) -> list[str]:
    """A row of the summary table: claim, paper's number, ours with CI, verdict, regime."""
    d = [scale * x for x in diffs]
    return [claim, paper, f"{fmt_ci(d, digits)} (n={len(d)})", verdict(d), regime]


CLAIM_HEADER = ["claim", "paper", "ours: mean gap [95 % CI]", "verdict", "regime"]


def cached(folder, stem: str, key: object, compute, run: bool = True):
    """``compute()``'s JSON-able result, cached in ``folder/<stem>_<hash of key>.json``
    (folders under benchmarks/results/ are committed, so a seed run in one process or
    session is reported by another); ``None`` when not cached and ``run`` is false."""
    import hashlib
    import json
    from pathlib import Path

    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    path = Path(folder) / f"{stem}_{digest[:12]}.json"
    if path.exists():
        return json.loads(path.read_text())
    if not run:
        return None
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=float, indent=1))
    tmp.replace(path)
    return json.loads(path.read_text())
