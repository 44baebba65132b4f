"""Metrics endpoints: the KPI table for any period and grouping, the customers behind a
number (masked, in the caller's data scope), cohorts, value per channel code or store,
omni-channel GMV, an SOP's effect over its holdout, and channel code costs.

Periods are brand-local days, both included; without ``start``/``end`` the month to date
(up to yesterday) is used."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from siyu.api.deps import CurrentActor, Db
from siyu.core.clock import utcnow
from siyu.customers.views import CustomerRowOut
from siyu.metrics import attribution, channel_codes, cohorts, kpis
from siyu.metrics.definitions import GROUP_BYS, KPIS, Params
from siyu.org.models import Brand
from siyu.org.queries import access_brand
from siyu.tags.compute import local_day

router = APIRouter(tags=["metrics"])

READ = "metrics.read"
WRITE = "metrics.write"

GroupBy = Literal["region", "store", "guide", "group", "channel_code", "sop"]
assert set(GroupBy.__args__) == set(GROUP_BYS)  # type: ignore[attr-defined]


class KpiDefOut(BaseModel):
    key: str
    family: str
    unit: str
    name_zh: str
    name_en: str
    higher_is_better: bool
    has_denominator: bool
    pending: str | None


class KpiValueOut(BaseModel):
    value: float | None
    numerator: float | None
    denominator: int | None
    note: str | None = None


class KpiRowOut(BaseModel):
    group: str
    label: str
    customers: int
    values: dict[str, KpiValueOut]


class KpiTableOut(BaseModel):
    start: date
    end: date
    group_by: str | None
    kpis: list[str]
    scoped: bool = Field(description="counted in a data scope narrower than the brand")
    as_of: datetime
    params: dict[str, int]
    rows: list[KpiRowOut]


class CustomerPageOut(BaseModel):
    kpi: str
    group: str
    side: str
    total: int
    page: int
    page_size: int
    customers: list[CustomerRowOut]


class CohortOut(BaseModel):
    month: str
    group: str
    size: int
    retention: list[float | None]
    repurchase: list[float | None]


class CohortTableOut(BaseModel):
    start: date
    end: date
    by: str | None
    months: int
    as_of: datetime
    cohorts: list[CohortOut]


class ValueRowOut(BaseModel):
    group: str
    label: str
    customers: int
    cost_fen: int
    cost_per_customer_fen: int
    value_fen: int
    value_per_customer_fen: int
    value_to_cost: float | None
    observed_days: float


class ChannelGmvOut(BaseModel):
    channel: str
    pd_gmv_fen: int
    pd_orders: int
    pd_buyers: int
    pd_refunds_fen: int
    other_gmv_fen: int
    other_orders: int
    pd_share: float | None


class DifferenceOut(BaseModel):
    diff: float
    se: float
    low: float
    high: float
    z: float
    p_value: float
    df: float
    includes_zero: bool


class SopEffectOut(BaseModel):
    sop_id: str
    sop_key: str
    name: str
    window_days: int
    as_of: datetime
    treated: int
    holdout: int
    immature: int
    conversion_treated: float | None
    conversion_holdout: float | None
    gmv_treated: float | None
    gmv_holdout: float | None
    conversion: DifferenceOut | None
    gmv: DifferenceOut | None
    confidence: float


class ChannelCodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=100)
    cost_per_customer_fen: int = Field(ge=0, le=10**10)


Start = Annotated[date | None, Query(description="first brand-local day (default: 1st of month)")]
End = Annotated[
    date | None, Query(description="last brand-local day, included (default: yesterday)")
]
AsOf = Annotated[datetime | None, Query(description="facts up to this moment (default: now)")]


def _period(b: Brand, start: date | None, end: date | None) -> tuple[date, date]:
    if end is None:
        end = local_day(utcnow(), b.timezone) - timedelta(days=1)
    if start is None:
        start = end.replace(day=1)
    return start, end


def _table(t: kpis.KpiTable) -> KpiTableOut:
    return KpiTableOut(
        start=t.start,
        end=t.end,
        group_by=t.group_by,
        kpis=t.kpis,
        scoped=t.scoped,
        as_of=t.as_of,
        params=dict(t.params.__dict__),
        rows=[
            KpiRowOut(
                group=r.group,
                label=r.label,
                customers=r.customers,
                values={k: KpiValueOut(**v.as_dict()) for k, v in r.values.items()},
            )
            for r in t.rows
        ],
    )


@router.get("/brands/{brand}/metrics/definitions", response_model=list[KpiDefOut])
def definitions(brand: str, db: Db, actor: CurrentActor) -> list[KpiDefOut]:
    """Every KPI: family, unit, names, direction, and why it is pending if it is."""
    access_brand(db, actor, brand, READ)
    return [KpiDefOut(**k.__dict__) for k in KPIS]


@router.get("/brands/{brand}/metrics/kpis", response_model=KpiTableOut)
def kpi_table(
    brand: str,
    db: Db,
    actor: CurrentActor,
    start: Start = None,
    end: End = None,
    group_by: Annotated[GroupBy | None, Query()] = None,
    kpi: Annotated[list[str] | None, Query(description="KPI keys (repeat); all by default")] = None,
    retention_days: Annotated[int, Query(ge=1, le=365)] = Params.retention_days,
    silent_days: Annotated[int, Query(ge=1, le=365)] = Params.silent_days,
    as_of: AsOf = None,
) -> KpiTableOut:
    """The KPI table for the period, one row per group (``all`` when not grouped), each
    value with its numerator and denominator. Counts only customers in the caller's scope."""
    b = access_brand(db, actor, brand, READ)
    start, end = _period(b, start, end)
    params = Params(retention_days=retention_days, silent_days=silent_days)
    t = kpis.compute_kpis(
        db, actor, b, start=start, end=end, group_by=group_by, kpis=kpi, params=params, as_of=as_of
    )
    return _table(t)


@router.get("/brands/{brand}/metrics/kpis/{kpi}/customers", response_model=CustomerPageOut)
def kpi_customers(
    brand: str,
    db: Db,
    actor: CurrentActor,
    kpi: Annotated[str, Path(max_length=64)],
    start: Start = None,
    end: End = None,
    group_by: Annotated[GroupBy | None, Query()] = None,
    group: Annotated[str, Query(max_length=100)] = "all",
    side: Annotated[Literal["numerator", "denominator"], Query()] = "numerator",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    retention_days: Annotated[int, Query(ge=1, le=365)] = Params.retention_days,
    silent_days: Annotated[int, Query(ge=1, le=365)] = Params.silent_days,
    as_of: AsOf = None,
) -> CustomerPageOut:
    """The customers behind one number of the KPI table (PII masked; only customers the
    caller may see)."""
    b = access_brand(db, actor, brand, READ)
    start, end = _period(b, start, end)
    params = Params(retention_days=retention_days, silent_days=silent_days)
    p = kpis.customers_behind(
        db, actor, b, kpi, start=start, end=end, group_by=group_by, group=group, side=side,
        page=page, page_size=page_size, params=params, as_of=as_of,
    )  # fmt: skip
    return CustomerPageOut(
        kpi=p.kpi,
        group=p.group,
        side=p.side,
        total=p.total,
        page=p.page,
        page_size=p.page_size,
        customers=[CustomerRowOut(**c.__dict__) for c in p.customers],
    )


@router.get("/brands/{brand}/metrics/cohorts", response_model=CohortTableOut)
def cohort_table(
    brand: str,
    db: Db,
    actor: CurrentActor,
    start: Start = None,
    end: End = None,
    by: Annotated[Literal["channel_code", "store"] | None, Query()] = None,
    months: Annotated[int, Query(ge=0, le=24)] = 6,
    as_of: AsOf = None,
) -> CohortTableOut:
    """Retention and repurchase by acquisition month (and channel code or store)."""
    b = access_brand(db, actor, brand, READ)
    start, end = _period(b, start, end)
    t = cohorts.cohorts(db, actor, b, start=start, end=end, by=by, months=months, as_of=as_of)
    return CohortTableOut(
        start=t.start,
        end=t.end,
        by=t.by,
        months=t.months,
        as_of=t.as_of,
        cohorts=[CohortOut(**c.__dict__) for c in t.cohorts],
    )


@router.get("/brands/{brand}/metrics/channel-value", response_model=list[ValueRowOut])
def channel_value(
    brand: str,
    db: Db,
    actor: CurrentActor,
    start: Start = None,
    end: End = None,
    by: Annotated[Literal["channel_code", "store"], Query()] = "channel_code",
    value_days: Annotated[int, Query(ge=1, le=3660)] = 365,
    as_of: AsOf = None,
) -> list[ValueRowOut]:
    """Customers acquired in the period per channel code or store: cost per customer next to
    net paid in their first ``value_days``."""
    b = access_brand(db, actor, brand, READ)
    start, end = _period(b, start, end)
    rows = cohorts.channel_value(
        db, actor, b, start=start, end=end, by=by, value_days=value_days, as_of=as_of
    )
    return [ValueRowOut(**r.__dict__) for r in rows]


@router.get("/brands/{brand}/metrics/omnichannel", response_model=list[ChannelGmvOut])
def omnichannel(
    brand: str,
    db: Db,
    actor: CurrentActor,
    start: Start = None,
    end: End = None,
    as_of: AsOf = None,
) -> list[ChannelGmvOut]:
    """GMV of private-domain customers in every order channel (Tmall, JD, store POS …)."""
    b = access_brand(db, actor, brand, READ)
    start, end = _period(b, start, end)
    rows = attribution.omnichannel(db, actor, b, start=start, end=end, as_of=as_of)
    return [ChannelGmvOut(**r.__dict__) for r in rows]


@router.get("/brands/{brand}/metrics/sops/{sop}/effect", response_model=SopEffectOut)
def sop_effect(
    brand: str,
    sop: str,
    db: Db,
    actor: CurrentActor,
    window_days: Annotated[int, Query(ge=1, le=365)] = 30,
    confidence: Annotated[float, Query(gt=0.5, lt=1.0)] = 0.95,
    as_of: AsOf = None,
) -> SopEffectOut:
    """The SOP's treated against its holdout: conversion and GMV per enrolment within the
    window, the difference with a confidence interval."""
    b = access_brand(db, actor, brand, READ)
    eff = attribution.sop_effect(
        db, actor, b, sop, window_days=window_days, as_of=as_of, confidence=confidence
    )
    out: dict[str, Any] = eff.as_dict()
    return SopEffectOut(**out)


@router.get(
    "/brands/{brand}/metrics/channel-codes", response_model=list[channel_codes.ChannelCodeOut]
)
def list_channel_codes(
    brand: str, db: Db, actor: CurrentActor
) -> list[channel_codes.ChannelCodeOut]:
    """Channel codes (渠道活码) with their cost per acquired customer."""
    b = access_brand(db, actor, brand, READ)
    return channel_codes.list_channel_codes(db, actor, b)


@router.put(
    "/brands/{brand}/metrics/channel-codes/{channel_code}",
    response_model=channel_codes.ChannelCodeOut,
)
def put_channel_code(
    brand: str,
    channel_code: Annotated[str, Path(min_length=1, max_length=64)],
    body: ChannelCodeBody,
    db: Db,
    actor: CurrentActor,
) -> channel_codes.ChannelCodeOut:
    """Set what one customer acquired through this channel code costs (fen)."""
    b = access_brand(db, actor, brand, WRITE)
    row = channel_codes.set_channel_code(
        db, actor, b, channel_codes.ChannelCodeIn(code=channel_code, **body.model_dump())
    )
    return channel_codes.ChannelCodeOut(
        code=row.code, name=row.name, cost_per_customer_fen=row.cost_per_customer_fen
    )
