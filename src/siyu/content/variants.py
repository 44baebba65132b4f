"""A/B/n variants of a touch: stable assignment and the significance of the difference.

Assignment is the SOP engine's (``siyu.sop.engine.pick_variant``): a customer's bucket is a
SHA-256 of (SOP key, customer, step) modulo the total weight, so the same customer always
gets the same variant and the shares follow the weights.

Results compare each variant with the control (the first variant):

- rates (reply, click, order): a two-proportion z-test — pooled standard error for z and the
  p-value, unpooled for the confidence interval of the difference;
- GMV per customer (fen): Welch's t-test (unequal variances, Welch–Satterthwaite degrees of
  freedom), with the interval from the t distribution.

Lift is ``(variant − control) / control``; ``None`` when the control is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from siyu.sop.engine import pick_variant

__all__ = ["Comparison", "assign", "two_proportion", "welch"]


def assign(key: str, customer_id: str, step: int, weights: dict[str, int]) -> str:
    """The variant of ``customer_id`` (deterministic; shares follow ``weights``)."""
    return pick_variant(key, customer_id, step, weights)


@dataclass(frozen=True)
class Comparison:
    diff: float
    lift: float | None
    stat: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    df: float | None = None


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def two_proportion(s1: int, n1: int, s0: int, n0: int, confidence: float = 0.95) -> Comparison:
    """Variant (``s1`` successes of ``n1``) against control (``s0`` of ``n0``)."""
    if n1 <= 0 or n0 <= 0:
        return Comparison(0.0, None, None, None, None, None)
    p1, p0 = s1 / n1, s0 / n0
    diff = p1 - p0
    lift = diff / p0 if p0 > 0 else None
    pooled = (s1 + s0) / (n1 + n0)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    half = _z(confidence) * se
    if se0 == 0:
        return Comparison(diff, lift, None, None, diff - half, diff + half)
    z = diff / se0
    p = math.erfc(abs(z) / math.sqrt(2))
    return Comparison(diff, lift, z, p, diff - half, diff + half)


def _mean_var(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean = math.fsum(xs) / n
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return mean, var


def _t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (regularised incomplete
    beta from scipy.special; imported here to keep the CLI's start fast)."""
    from scipy.special import betainc  # type: ignore[import-untyped]

    x = df / (df + t * t)
    tail = 0.5 * float(betainc(df / 2, 0.5, x))
    return tail if t >= 0 else 1 - tail


def _t_ppf(q: float, df: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def welch(xs1: list[float], xs0: list[float], confidence: float = 0.95) -> Comparison:
    """Welch's t-test of the mean of ``xs1`` (variant) against ``xs0`` (control)."""
    n1, n0 = len(xs1), len(xs0)
    if n1 < 2 or n0 < 2:
        return Comparison(0.0, None, None, None, None, None)
    m1, v1 = _mean_var(xs1)
    m0, v0 = _mean_var(xs0)
    diff = m1 - m0
    lift = diff / m0 if m0 > 0 else None
    a, b = v1 / n1, v0 / n0
    se = math.sqrt(a + b)
    if se == 0:
        return Comparison(diff, lift, None, None, diff, diff)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
    t = diff / se
    p = min(1.0, 2 * _t_sf(abs(t), df))
    half = _t_ppf(0.5 + confidence / 2, df) * se
    return Comparison(diff, lift, t, p, diff - half, diff + half, df)
