"""RFM: recency, frequency, monetary over a window, 1–5 scores and the 8-segment matrix.

- **R** = days from the last purchase to ``as_of`` (0 = bought that day); lower is better.
- **F** = purchase days in the window (same-day orders are one purchase, as in the summary).
- **M** = total fen spent in the window.

Scores. With a brand's cut points (four ascending thresholds per dimension):

- recency: ``R <= c1`` → 5, ``<= c2`` → 4, ``<= c3`` → 3, ``<= c4`` → 2, else 1
  ("bought within 30 days" is the top band);
- frequency and monetary: ``v >= c4`` → 5, ``>= c3`` → 4, ``>= c2`` → 3, ``>= c1`` → 2, else 1
  ("spent at least ¥5,000" is the top band).

Without cut points a dimension is scored in quintiles of the customers' average ranks, so
tied customers always share a score (with most customers at F = 1, F has fewer than five
distinct scores — an honest picture rather than an arbitrary split of a tie).

Segments: each dimension is *high* when its score is at least ``high_from`` (3 by default) and
the three high/low flags pick one of the classic eight cells (:data:`SEGMENTS`).

    rfm = rfm_from_days(data, as_of=date(2026, 6, 30), window_days=365,
                        cuts=RfmCuts(recency=(30, 60, 90, 180)))
    rfm.labels("zh-CN")[:3]   # ['重要价值客户', '一般发展客户', ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from siyu.tags.value_summary import Days, day_number, purchase_days, transactions

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Segment:
    code: str
    zh: str
    en: str
    r_high: bool
    f_high: bool
    m_high: bool


# Indexed by r_high * 4 + f_high * 2 + m_high, so the segment number is computed, not looked up.
SEGMENTS: tuple[Segment, ...] = (
    Segment("general_retain", "一般挽留客户", "General, win back", False, False, False),
    Segment("important_retain", "重要挽留客户", "Important, win back", False, False, True),
    Segment("general_maintain", "一般保持客户", "General, keep", False, True, False),
    Segment("important_maintain", "重要保持客户", "Important, keep", False, True, True),
    Segment("general_develop", "一般发展客户", "General, develop", True, False, False),
    Segment("important_develop", "重要发展客户", "Important, develop", True, False, True),
    Segment("general_value", "一般价值客户", "General value", True, True, False),
    Segment("important_value", "重要价值客户", "Important value", True, True, True),
)


@dataclass(frozen=True)
class RfmCuts:
    """A brand's thresholds: recency in days, frequency in purchase days, monetary in fen."""

    recency: tuple[int, int, int, int] | None = None
    frequency: tuple[int, int, int, int] | None = None
    monetary: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("recency", "frequency", "monetary"):
            cuts = getattr(self, name)
            if cuts is None:
                continue
            if len(cuts) != 4 or any(b <= a for a, b in pairwise(cuts)):
                raise ValueError(f"{name} cut points must be 4 strictly increasing numbers")


@dataclass(frozen=True)
class Rfm:
    customer_id: Any  # pyarrow Array
    recency_days: NDArray[np.int64]
    frequency: NDArray[np.int64]
    monetary_fen: NDArray[np.int64]
    r_score: NDArray[np.int8]
    f_score: NDArray[np.int8]
    m_score: NDArray[np.int8]
    segment: NDArray[np.int8]  # index into SEGMENTS
    method: dict[str, str]  # per dimension: "cuts" or "quintiles"

    def __len__(self) -> int:
        return len(self.segment)

    def codes(self) -> list[str]:
        return [SEGMENTS[i].code for i in self.segment.tolist()]

    def labels(self, locale: str = "zh-CN") -> list[str]:
        names = [s.zh if locale.startswith("zh") else s.en for s in SEGMENTS]
        return [names[i] for i in self.segment.tolist()]

    def to_arrow(self) -> Any:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

        return pa.table(
            {
                "customer_id": self.customer_id,
                "recency_days": self.recency_days,
                "frequency": self.frequency,
                "monetary_fen": self.monetary_fen,
                "r": self.r_score,
                "f": self.f_score,
                "m": self.m_score,
                "segment": self.codes(),
            }
        )


def _quintiles(values: NDArray[Any], higher_is_better: bool) -> NDArray[np.int8]:
    from scipy.stats import rankdata  # type: ignore[import-untyped]

    if len(values) == 0:
        return np.zeros(0, dtype=np.int8)
    sign = 1 if higher_is_better else -1
    ranks = np.asarray(rankdata(sign * values.astype(np.float64), method="average"))
    # Average rank r of n maps to the quintile holding the point (r - 0.5) / n.
    score = 1 + np.floor(5 * (ranks - 0.5) / len(values))
    return np.asarray(np.clip(score, 1, 5), dtype=np.int8)


def score(
    values: NDArray[Any], cuts: tuple[int, ...] | None, higher_is_better: bool
) -> NDArray[np.int8]:
    """1–5 scores of one dimension (cut-point rules in the module docstring)."""
    if cuts is None:
        return _quintiles(values, higher_is_better)
    edges = np.asarray(cuts, dtype=np.float64)
    if higher_is_better:
        return np.asarray(1 + np.searchsorted(edges, values, side="right"), dtype=np.int8)
    return np.asarray(5 - np.searchsorted(edges, values, side="left"), dtype=np.int8)


def rfm_scores(
    recency_days: NDArray[Any],
    frequency: NDArray[Any],
    monetary_fen: NDArray[Any],
    cuts: RfmCuts | None = None,
    high_from: int = 3,
) -> tuple[NDArray[np.int8], NDArray[np.int8], NDArray[np.int8], NDArray[np.int8]]:
    """Scores (r, f, m) and the segment index for precomputed R, F, M arrays."""
    cuts = cuts or RfmCuts()
    r = score(np.asarray(recency_days), cuts.recency, higher_is_better=False)
    f = score(np.asarray(frequency), cuts.frequency, higher_is_better=True)
    m = score(np.asarray(monetary_fen), cuts.monetary, higher_is_better=True)
    segment = (r >= high_from) * 4 + (f >= high_from) * 2 + (m >= high_from)
    return r, f, m, segment.astype(np.int8)


def rfm_from_days(
    data: Days,
    as_of: date,
    window_days: int = 365,
    cuts: RfmCuts | None = None,
    high_from: int = 3,
) -> Rfm:
    """RFM of customers with a purchase in the window (as_of - window_days, as_of]."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    end = day_number(as_of)
    start = end - window_days + 1
    n = data.customers
    pair_code, pair_day, in_window = purchase_days(data, start, end)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, pair_code, pair_day)
    keep = np.flatnonzero(last >= start)
    frequency = np.bincount(pair_code, minlength=n)[keep].astype(np.int64)
    # float64 sums are exact below 2^53 fen; rint only removes the float representation.
    spent = np.bincount(data.codes[in_window], weights=data.amount[in_window], minlength=n)
    monetary = np.rint(spent[keep]).astype(np.int64)
    recency = (end - last[keep]).astype(np.int64)
    chosen = cuts or RfmCuts()
    r, f, m, segment = rfm_scores(recency, frequency, monetary, chosen, high_from)
    method = {
        name: "cuts" if getattr(chosen, name) is not None else "quintiles"
        for name in ("recency", "frequency", "monetary")
    }
    return Rfm(data.ids.take(keep), recency, frequency, monetary, r, f, m, segment, method)


def rfm(
    customer_id: Any,
    ts: Any,
    amount_fen: Any,
    as_of: date,
    window_days: int = 365,
    *,
    cuts: RfmCuts | None = None,
    high_from: int = 3,
    tz: str = "UTC",
) -> Rfm:
    """RFM from transaction columns (same inputs as :func:`value_summary.summarise`)."""
    data = transactions(customer_id, ts, amount_fen, tz)
    return rfm_from_days(data, as_of, window_days, cuts, high_from)
