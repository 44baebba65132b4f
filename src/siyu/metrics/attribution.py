"""Omni-channel attribution: what private-domain customers buy in every channel, and what an
SOP adds over its holdout.

- :func:`omnichannel`: paid orders of the period by order channel (mini-program mall, Tmall,
  JD, Douyin, store POS, other …), split into orders placed while the customer was a friend
  (private domain) and orders of the other known customers in scope; refunds of the period
  alongside.
- :func:`sop_effect`: for the enrolments of one SOP whose outcome window is over at
  ``as_of``, the treated (enrolled, not held out) against the holdout: conversion rate (a paid
  order within ``window_days`` after entering) and GMV per enrolment in the same window; the
  difference in means with a confidence interval (Welch's standard error, normal
  approximation: ``diff ± z·sqrt(s²_t/n_t + s²_h/n_h)``).

Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.metrics import scope as dim_scope
from siyu.metrics import sql
from siyu.metrics.definitions import Params
from siyu.metrics.errors import MetricsInvalid, MetricsNotFound
from siyu.metrics.kpis import Window, check_period, connect

if TYPE_CHECKING:
    from siyu.org.models import Brand

MAX_WINDOW = 365

# ---------------------------------------------------------------- omni-channel GMV


def _omni_sql() -> str:
    return f"""WITH {sql.FRIENDS},
o AS (
  SELECT m.customer_id, o.kind, o.occurred_at, coalesce(o.channel, 'other') AS channel,
    o.paid_fen, o.refund_fen
  FROM od o JOIN idm m ON o.identity_key = m.identity_key
  JOIN dim d ON d.customer_id = m.customer_id
  WHERE o.dt BETWEEN $start_day AND $end_day AND o.occurred_at >= $s AND o.occurred_at < $e
),
t AS (
  SELECT o.*, coalesce(fr.added_at <= o.occurred_at
    AND (fr.deleted_at IS NULL OR fr.deleted_at > o.occurred_at), false) AS pd
  FROM o LEFT JOIN fr ON fr.customer_id = o.customer_id
)
SELECT channel,
  coalesce(sum(paid_fen) FILTER (WHERE kind = 'paid' AND pd), 0) AS pd_gmv,
  count(*) FILTER (WHERE kind = 'paid' AND pd) AS pd_orders,
  count(DISTINCT customer_id) FILTER (WHERE kind = 'paid' AND pd) AS pd_buyers,
  coalesce(sum(refund_fen) FILTER (WHERE kind = 'refunded' AND pd), 0) AS pd_refunds,
  coalesce(sum(paid_fen) FILTER (WHERE kind = 'paid' AND NOT pd), 0) AS other_gmv,
  count(*) FILTER (WHERE kind = 'paid' AND NOT pd) AS other_orders
FROM t GROUP BY channel ORDER BY pd_gmv DESC, channel"""  # noqa: S608 - fixed fragments


@dataclass
class ChannelGmv:
    channel: str
    pd_gmv_fen: int
    pd_orders: int
    pd_buyers: int
    pd_refunds_fen: int
    other_gmv_fen: int
    other_orders: int
    # this channel's share of all private-domain GMV
    pd_share: float | None = None


def omnichannel_on(
    dims: dim_scope.Dimensions, *, start: date, end: date, as_of: datetime | None = None
) -> list[ChannelGmv]:
    check_period(start, end)
    bind = Window(start, end, dims.tz, Params(), as_of or datetime.now(UTC)).bind()
    used = {k: bind[k] for k in ("s", "e", "asof", "asof_day", "start_day", "end_day")}
    con = connect(dims)
    try:
        rows = con.execute(_omni_sql(), used).fetchall()
    finally:
        con.close()
    out = [ChannelGmv(str(r[0]), *(int(x) for x in r[1:])) for r in rows]
    total = sum(r.pd_gmv_fen for r in out)
    for r in out:
        r.pd_share = round(r.pd_gmv_fen / total, 6) if total else None
    return out


def omnichannel(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    start: date,
    end: date,
    as_of: datetime | None = None,
) -> list[ChannelGmv]:
    """GMV of private-domain customers by order channel, as ``actor`` may see it."""
    dims = dim_scope.load(db, actor, brand)
    return omnichannel_on(dims, start=start, end=end, as_of=as_of)


# ---------------------------------------------------------------- SOP vs holdout


@dataclass
class Arm:
    n: int
    mean: float
    var: float  # sample variance (n - 1)


@dataclass
class Difference:
    """treated − holdout, with its standard error and confidence interval."""

    diff: float
    se: float
    low: float
    high: float
    z: float  # the statistic diff / se
    p_value: float
    df: float  # Welch–Satterthwaite degrees of freedom (reported; the CI uses the normal)

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def as_dict(self) -> dict[str, Any]:
        return {
            "diff": self.diff,
            "se": self.se,
            "low": self.low,
            "high": self.high,
            "z": self.z,
            "p_value": self.p_value,
            "df": self.df,
            "includes_zero": self.includes_zero,
        }


def arm(values: list[float]) -> Arm:
    n = len(values)
    mean = sum(values) / n if n else 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Arm(n, mean, var)


def welch(treated: Arm, holdout: Arm, confidence: float = 0.95) -> Difference | None:
    """Difference in means with Welch's standard error and a normal-approximation CI.
    None when an arm has fewer than two observations."""
    if treated.n < 2 or holdout.n < 2:
        return None
    a, b = treated.var / treated.n, holdout.var / holdout.n
    se = math.sqrt(a + b)
    diff = treated.mean - holdout.mean
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if se == 0.0:
        stat = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
        df = float(treated.n + holdout.n - 2)
    else:
        stat = diff / se
        p = 2 * (1 - NormalDist().cdf(abs(stat)))
        den = a * a / (treated.n - 1) + b * b / (holdout.n - 1)
        df = (a + b) ** 2 / den if den else float(treated.n + holdout.n - 2)
    return Difference(diff, se, diff - z * se, diff + z * se, stat, p, df)


def _effect_sql() -> str:
    return """WITH o AS (
  SELECT m.customer_id, o.kind, o.order_id, o.occurred_at, o.paid_fen
  FROM od o JOIN idm m ON o.identity_key = m.identity_key
  WHERE o.kind = 'paid' AND o.dt >= $from_day AND o.occurred_at < $asof
)
SELECT en.holdout, en.enrolment_id,
  count(o.order_id) AS orders, coalesce(sum(o.paid_fen), 0) AS gmv
FROM enr en JOIN dim d ON d.customer_id = en.customer_id
LEFT JOIN o ON o.customer_id = en.customer_id
  AND o.occurred_at > en.entered_at AND o.occurred_at <= en.entered_at + to_days($window)
WHERE en.entered_at + to_days($window) <= $asof
GROUP BY en.holdout, en.enrolment_id"""


@dataclass
class SopEffect:
    sop_id: str
    sop_key: str
    name: str
    window_days: int
    as_of: datetime
    treated: int
    holdout: int
    immature: int  # enrolments whose window is not over yet (left out)
    conversion_treated: float | None
    conversion_holdout: float | None
    gmv_treated: float | None  # mean GMV per enrolment, fen
    gmv_holdout: float | None
    conversion: Difference | None
    gmv: Difference | None
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["as_of"] = self.as_of.isoformat()
        out["conversion"] = self.conversion.as_dict() if self.conversion else None
        out["gmv"] = self.gmv.as_dict() if self.gmv else None
        return out


def sop_effect(
    db: Session,
    actor: Actor,
    brand: Brand,
    sop: str,
    *,
    window_days: int = 30,
    as_of: datetime | None = None,
    confidence: float = 0.95,
    dims: dim_scope.Dimensions | None = None,
) -> SopEffect:
    """The incremental effect of SOP ``sop`` (key or id) over its holdout."""
    import pyarrow as pa

    from siyu.sop.models import Enrolment, Sop

    if not 1 <= window_days <= MAX_WINDOW:
        raise MetricsInvalid("metrics.bad_window", max=MAX_WINDOW)
    dims = dims or dim_scope.load(db, actor, brand)
    row = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == sop)) or db.scalar(
        select(Sop).where(Sop.brand_id == brand.id, Sop.id == sop)
    )
    if row is None:
        raise MetricsNotFound("metrics.sop_not_found", sop=sop)
    as_of = as_of or datetime.now(UTC)
    enrolments = list(
        db.execute(
            select(Enrolment.id, Enrolment.customer_id, Enrolment.entered_at, Enrolment.holdout)
            .where(Enrolment.brand_id == brand.id, Enrolment.sop_id == row.id)
            .order_by(Enrolment.id)
        )
    )
    entered = [e[2].replace(tzinfo=UTC) if e[2].tzinfo is None else e[2] for e in enrolments]
    enr = pa.table(
        {
            "enrolment_id": pa.array([e[0] for e in enrolments], pa.string()),
            "customer_id": pa.array([e[1] for e in enrolments], pa.string()),
            "entered_at": pa.array(entered, pa.timestamp("us", tz="UTC")),
            "holdout": pa.array([bool(e[3]) for e in enrolments], pa.bool_()),
        }
    )
    first = min(entered) if entered else as_of
    con = connect(dims)
    con.register("enr", enr)
    try:
        got = con.execute(
            _effect_sql(),
            {
                "asof": as_of,
                "from_day": (first - timedelta(days=1)).date(),
                "window": window_days,
            },
        ).fetchall()
    finally:
        con.close()
    conv: dict[bool, list[float]] = {True: [], False: []}
    gmv: dict[bool, list[float]] = {True: [], False: []}
    for holdout, _, orders, fen in got:
        conv[bool(holdout)].append(1.0 if orders else 0.0)
        gmv[bool(holdout)].append(float(fen))
    in_scope = set(dims.customers.column("customer_id").to_pylist()) if dims.scoped else None
    seen = sum(1 for e in enrolments if in_scope is None or e[1] in in_scope)
    t_conv, h_conv = arm(conv[False]), arm(conv[True])
    t_gmv, h_gmv = arm(gmv[False]), arm(gmv[True])
    return SopEffect(
        sop_id=row.id,
        sop_key=row.key,
        name=row.name,
        window_days=window_days,
        as_of=as_of,
        treated=t_conv.n,
        holdout=h_conv.n,
        immature=seen - t_conv.n - h_conv.n,
        conversion_treated=t_conv.mean if t_conv.n else None,
        conversion_holdout=h_conv.mean if h_conv.n else None,
        gmv_treated=t_gmv.mean if t_gmv.n else None,
        gmv_holdout=h_gmv.mean if h_gmv.n else None,
        conversion=welch(t_conv, h_conv, confidence),
        gmv=welch(t_gmv, h_gmv, confidence),
        confidence=confidence,
    )
