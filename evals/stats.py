"""Mean, standard error and bootstrap confidence intervals.

Repeats of one question are not independent draws, so both the standard error
and the bootstrap treat a *question* as the unit (a cluster): scores are first
averaged per cluster, then resampled by cluster. With one example per
cluster this is the ordinary i.i.d. case.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import attrs
import numpy as np

BOOTSTRAP_RESAMPLES = 2000


@attrs.frozen
class Summary:
    mean: float | None
    stderr: float | None
    ci: tuple[float, float] | None
    n: int


def _cluster_means(scores: Sequence[float], clusters: Sequence[Hashable] | None) -> np.ndarray:
    if clusters is None:
        return np.asarray(scores, dtype=np.float64)
    sums: dict[Hashable, list[float]] = {}
    for s, c in zip(scores, clusters, strict=True):
        sums.setdefault(c, []).append(s)
    return np.asarray([sum(v) / len(v) for v in sums.values()], dtype=np.float64)


def bootstrap_ci(
    values: np.ndarray, *, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (seeded: reproducible)."""
    n = len(values)
    if n == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))  # (R, n)
    means = values[idx].mean(axis=1)  # (R,)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarize(
    scores: Sequence[float],
    clusters: Sequence[Hashable] | None = None,
    *,
    level: float = 0.95,
    seed: int = 0,
) -> Summary:
    """Mean of ``scores``, its standard error and a bootstrap CI, by cluster."""
    if len(scores) == 0:
        return Summary(None, None, None, 0)
    values = _cluster_means(scores, clusters)
    mean = float(np.mean(np.asarray(scores, dtype=np.float64)))
    k = len(values)
    stderr = float(np.std(values, ddof=1) / math.sqrt(k)) if k > 1 else 0.0
    return Summary(mean, stderr, bootstrap_ci(values, level=level, seed=seed), len(scores))


def ratio_summary(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    scale: float = 1.0,
    level: float = 0.95,
    seed: int = 0,
) -> Summary:
    """``scale * Σnum / Σden`` (e.g. bits per byte over text windows), with a
    delta-method standard error and a bootstrap CI resampling the pairs."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    n = len(num)
    if n == 0 or den.sum() <= 0:
        return Summary(None, None, None, n)
    r = num.sum() / den.sum()
    if n > 1:
        resid = (num - r * den) / den.mean()  # linearised ratio, per pair
        stderr = float(np.std(resid, ddof=1) / math.sqrt(n))
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
        ratios = num[idx].sum(axis=1) / den[idx].sum(axis=1)
        lo, hi = np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
        ci = (float(lo) * scale, float(hi) * scale)
    else:
        stderr, ci = 0.0, (float(r) * scale, float(r) * scale)
    return Summary(float(r) * scale, stderr * scale, ci, n)


def paired_difference(
    a: dict[Hashable, float], b: dict[Hashable, float], *, level: float = 0.95, seed: int = 0
) -> Summary:
    """Mean of ``b[k] - a[k]`` over the keys both share (same questions, two runs)."""
    keys = sorted(set(a) & set(b), key=str)
    return summarize([b[k] - a[k] for k in keys], level=level, seed=seed)
