"""Confidence intervals over seeds: Student-t quantiles without scipy, mean and 95% CI.

The interval of a mean over n seeds is ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)`` with the
sample standard deviation ``s`` (ddof 1). With one seed it is undefined (NaN half-width).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

#: Above this many degrees of freedom the Cornish-Fisher expansion replaces the exact sum.
_EXACT_DF_LIMIT = 1000


class Interval(NamedTuple):
    """Mean of ``n`` values with a two-sided confidence interval [low, high]."""

    n: int
    mean: float
    half_width: float  # NaN when n < 2
    low: float
    high: float


def t_central_probability(t: float, df: int) -> float:
    """P(-t < T < t) for Student's T with integer ``df`` degrees of freedom (t >= 0).

    Closed form of Abramowitz & Stegun 26.7.3-4 with theta = atan(t / sqrt(df)):
    odd df: 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + ... + (2*4..(df-3))/(3*5..(df-2))
    cos^(df-2))); even df: sin(theta) * (1 + 1/2 cos^2 + ... + (1*3..(df-3))/(2*4..(df-2))
    cos^(df-2)).
    """
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        term = total = math.cos(theta) if df > 1 else 0.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= cos2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * total)
    term = total = 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= cos2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def _cornish_fisher(z: float, df: int) -> float:
    """Student-t quantile from the normal quantile ``z`` (accurate for large df)."""
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@functools.lru_cache(maxsize=256)
def t_quantile(confidence: float, df: int) -> float:
    """The t with P(-t < T < t) = ``confidence``, i.e. the (1 + confidence)/2 quantile.

    ``t_quantile(0.95, 1) = 12.706``, ``(0.95, 4) = 2.776``, ``(0.95, 9) = 2.262``.
    Exact (bisection on the closed-form CDF) up to df = 1000, Cornish-Fisher above.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must lie strictly between 0 and 1, got {confidence}")
    if int(df) != df or df < 1:
        raise ValueError(f"df: degrees of freedom must be an integer >= 1, got {df}")
    df = int(df)
    if df > _EXACT_DF_LIMIT:
        return _cornish_fisher(NormalDist().inv_cdf((1.0 + confidence) / 2.0), df)
    lo, hi = 0.0, 1.0
    while t_central_probability(hi, df) < confidence:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_central_probability(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of ``values`` (one per seed).

    Non-finite values propagate (a NaN seed makes the cell NaN rather than hiding it).
    """
    x = np.asarray(list(values), dtype=np.float64)
    n = int(x.size)
    if n == 0:
        raise ValueError("values: need at least one value for a mean")
    mean = float(x.mean())
    if n < 2:
        return Interval(n, mean, math.nan, math.nan, math.nan)
    half = t_quantile(confidence, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(n, mean, half, mean - half, mean + half)


def band(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the t interval over seeds at every point.

    Args: values [S, G] (seeds by grid points). Returns (mean [G], half_width [G]);
    the half-width is NaN when S < 2.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    mean = values.mean(axis=0)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    half = t_quantile(confidence, n - 1) * values.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, half
