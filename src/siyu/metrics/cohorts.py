"""Cohorts by acquisition month, and what the customers of each channel code or store are
worth next to what they cost.

- :func:`cohorts`: customers acquired (first WeCom add) in each brand-local month, optionally
  split by channel code or store; for month k = 0, 1, … after acquisition, the share still a
  friend at the end of month k (``retention``) and the share with a second paid order since
  the add by the end of month k (``repurchase``). Months not over at ``as_of`` are null.
- :func:`channel_value`: customers acquired in a period, per channel code or store: count,
  acquisition cost (the channel code's cost per customer), net paid in the ``value_days``
  after their add (observed up to ``as_of``), value per customer, value ÷ cost.

Definitions: ``docs/metrics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from siyu.core.tenancy import Actor
from siyu.metrics import scope as dim_scope
from siyu.metrics import sql
from siyu.metrics.definitions import NONE_KEY, Params
from siyu.metrics.errors import MetricsInvalid
from siyu.metrics.kpis import Window, channel_costs, check_period, connect

if TYPE_CHECKING:
    from siyu.org.models import Brand

BYS = ("channel_code", "store")
MAX_MONTHS = 24


def _by(by: str | None) -> str:
    if by is None:
        return "'all'"
    if by == "channel_code":
        return f"coalesce(fr.channel_code, '{NONE_KEY}')"
    if by == "store":
        return f"coalesce(d.store, '{NONE_KEY}')"
    raise MetricsInvalid("metrics.bad_dimension", by=by, allowed=", ".join(BYS))


# per cohort customer (``co``): their second paid order since the add, before ``as_of``
_SECOND_ORDER = """ord AS (
  SELECT co.customer_id,
    list_sort(list(o.occurred_at))[2] AS second_at
  FROM co JOIN idm m ON m.customer_id = co.customer_id
  JOIN od o ON o.identity_key = m.identity_key
  WHERE o.kind = 'paid' AND o.dt >= $start_day AND o.occurred_at >= co.added_at
    AND o.occurred_at < $asof
  GROUP BY co.customer_id
)"""


def _cohort_sql(by: str | None) -> str:
    return f"""WITH {sql.FRIENDS},
co AS (
  SELECT fr.customer_id, fr.added_at, fr.deleted_at, {_by(by)} AS g,
    CAST(date_trunc('month', timezone($tz, fr.added_at)) AS DATE) AS cohort
  FROM fr JOIN dim d ON d.customer_id = fr.customer_id
  WHERE fr.added_at >= $s AND fr.added_at < $e
),
{_SECOND_ORDER},
ks AS (SELECT unnest(range(0, $months + 1)) AS k),
cell AS (
  SELECT co.cohort, co.g, ks.k,
    timezone($tz, CAST(co.cohort AS TIMESTAMP) + to_months(ks.k + 1)) AS month_end,
    co.deleted_at, ord.second_at
  FROM co CROSS JOIN ks LEFT JOIN ord ON ord.customer_id = co.customer_id
)
SELECT cohort, g, k, count(*) AS size, min(month_end) <= $asof AS complete,
  sum(CAST(deleted_at IS NULL OR deleted_at >= month_end AS INTEGER)) AS retained,
  sum(CAST(second_at IS NOT NULL AND second_at < month_end AS INTEGER)) AS repurchased
FROM cell
GROUP BY cohort, g, k
ORDER BY cohort, g, k"""  # noqa: S608 - fixed fragments


@dataclass
class Cohort:
    month: str  # YYYY-MM
    group: str
    size: int
    retention: list[float | None] = field(default_factory=list)
    repurchase: list[float | None] = field(default_factory=list)


@dataclass
class CohortTable:
    start: date
    end: date
    by: str | None
    months: int
    as_of: datetime
    cohorts: list[Cohort]


def cohorts_on(
    dims: dim_scope.Dimensions,
    *,
    start: date,
    end: date,
    by: str | None = None,
    months: int = 6,
    as_of: datetime | None = None,
) -> CohortTable:
    """Cohorts of customers acquired ``start``…``end`` (brand-local days) on a dimension."""
    check_period(start, end)
    if not 0 <= months <= MAX_MONTHS:
        raise MetricsInvalid("metrics.bad_window", max=MAX_MONTHS)
    text = _cohort_sql(by)
    as_of = as_of or datetime.now(UTC)
    bind = Window(start, end, dims.tz, Params(), as_of).bind()
    used = {k: bind[k] for k in ("s", "e", "asof", "asof_day", "start_day")}
    con = connect(dims)
    try:
        rows = con.execute(text, used | {"tz": dims.tz, "months": months}).fetchall()
    finally:
        con.close()
    out: dict[tuple[date, str], Cohort] = {}
    for cohort, g, k, size, complete, retained, repurchased in rows:
        key = (cohort, str(g))
        c = out.get(key)
        if c is None:
            c = out[key] = Cohort(cohort.strftime("%Y-%m"), str(g), int(size))
        c.retention.append(round(retained / size, 6) if complete else None)
        c.repurchase.append(round(repurchased / size, 6) if complete else None)
        assert len(c.retention) == k + 1
    return CohortTable(start, end, by, months, as_of, list(out.values()))


def cohorts(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    start: date,
    end: date,
    by: str | None = None,
    months: int = 6,
    as_of: datetime | None = None,
) -> CohortTable:
    """Retention and repurchase cohorts as ``actor`` may see them (``metrics.read``)."""
    if by is not None and by not in BYS:
        raise MetricsInvalid("metrics.bad_dimension", by=by, allowed=", ".join(BYS))
    dims = dim_scope.load(db, actor, brand)
    return cohorts_on(dims, start=start, end=end, by=by, months=months, as_of=as_of)


MEASURES = ("size", "retained", "repurchased")


def _cohort_members_sql(by: str | None, measure: str) -> str:
    cond = {
        "size": "true",
        "retained": "co.deleted_at IS NULL OR co.deleted_at >= $month_end",
        "repurchased": "ord.second_at IS NOT NULL AND ord.second_at < $month_end",
    }[measure]
    return f"""WITH {sql.FRIENDS},
co AS (
  SELECT fr.customer_id, fr.added_at, fr.deleted_at, {_by(by)} AS g
  FROM fr JOIN dim d ON d.customer_id = fr.customer_id
  WHERE fr.added_at >= $s AND fr.added_at < $e
),
{_SECOND_ORDER}
SELECT co.customer_id, count(*) OVER () AS total
FROM co LEFT JOIN ord ON ord.customer_id = co.customer_id
WHERE co.g = $g AND ({cond})
ORDER BY co.customer_id LIMIT $limit OFFSET $offset"""  # noqa: S608 - fixed fragments


def cohort_customer_ids(
    dims: dim_scope.Dimensions,
    *,
    month: date,
    by: str | None = None,
    group: str = "all",
    k: int = 0,
    measure: str = "size",
    page: int = 1,
    page_size: int = 50,
    as_of: datetime | None = None,
    within: tuple[date, date] | None = None,
) -> tuple[list[str], int]:
    """The customers behind one cohort cell: the cohort acquired in ``month`` (brand-local,
    any day of it; only the days inside ``within`` when given, as the table that showed the
    cell) and ``group`` (``size``), or those of them still a friend (``retained``) or with a
    second paid order (``repurchased``) at the end of month ``k``; one page of ids (sorted)
    and how many there are."""
    from calendar import monthrange
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    if measure not in MEASURES:
        raise MetricsInvalid("metrics.bad_measure", measure=measure, allowed=", ".join(MEASURES))
    if not 0 <= k <= MAX_MONTHS:
        raise MetricsInvalid("metrics.bad_window", max=MAX_MONTHS)
    if page < 1 or not 1 <= page_size <= 500:
        raise MetricsInvalid("metrics.bad_page")
    first = month.replace(day=1)
    last = first.replace(day=monthrange(first.year, first.month)[1])
    lo, hi = (max(first, within[0]), min(last, within[1])) if within else (first, last)
    if hi < lo:
        return [], 0
    as_of = as_of or datetime.now(UTC)
    bind = Window(lo, hi, dims.tz, Params(), as_of).bind()
    end_month = first
    for _ in range(k + 1):
        end_month = (end_month.replace(day=28) + timedelta(days=4)).replace(day=1)
    month_end = datetime.combine(end_month, datetime.min.time(), ZoneInfo(dims.tz)).astimezone(UTC)
    used = {k2: bind[k2] for k2 in ("s", "e", "asof", "asof_day", "start_day")}
    text = _cohort_members_sql(by, measure)
    params = used | {"g": group, "limit": page_size, "offset": (page - 1) * page_size}
    if measure != "size":
        params["month_end"] = month_end
    con = connect(dims)
    try:
        got = con.execute(text, params).fetchall()
    finally:
        con.close()
    total = int(got[0][1]) if got else 0
    return [str(r[0]) for r in got], total


# ---------------------------------------------------------------- value per channel / store


def _value_sql(by: str) -> str:
    return f"""WITH {sql.FRIENDS},
co AS (
  SELECT fr.customer_id, fr.added_at, {_by(by)} AS g, coalesce(c.cost_fen, 0) AS cost_fen
  FROM fr JOIN dim d ON d.customer_id = fr.customer_id
  LEFT JOIN cost c ON c.code = fr.channel_code
  WHERE fr.added_at >= $s AND fr.added_at < $e
),
val AS (
  SELECT co.customer_id,
    sum(CASE WHEN o.kind = 'paid' THEN o.paid_fen ELSE 0 END)
    - sum(CASE WHEN o.kind = 'refunded' THEN coalesce(o.refund_fen, 0) ELSE 0 END) AS net
  FROM co JOIN idm m ON m.customer_id = co.customer_id
  JOIN od o ON o.identity_key = m.identity_key
  WHERE o.dt >= $start_day AND o.occurred_at >= co.added_at
    AND o.occurred_at < co.added_at + to_days($value_days) AND o.occurred_at < $asof
  GROUP BY co.customer_id
)
SELECT co.g, count(*) AS customers, sum(co.cost_fen) AS cost_fen,
  sum(coalesce(val.net, 0)) AS value_fen,
  avg(least((epoch($asof) - epoch(co.added_at)) / 86400.0, $value_days)) AS observed_days
FROM co LEFT JOIN val ON val.customer_id = co.customer_id
GROUP BY co.g ORDER BY co.g"""  # noqa: S608 - fixed fragments


@dataclass
class ValueRow:
    group: str
    label: str
    customers: int
    cost_fen: int
    cost_per_customer_fen: int
    value_fen: int
    value_per_customer_fen: int
    # value per customer ÷ cost per customer (None when the customers cost nothing)
    value_to_cost: float | None
    observed_days: float


def channel_value_on(
    dims: dim_scope.Dimensions,
    *,
    start: date,
    end: date,
    by: str = "channel_code",
    value_days: int = 365,
    as_of: datetime | None = None,
    costs: dict[str, int] | None = None,
) -> list[ValueRow]:
    check_period(start, end)
    if not 1 <= value_days <= 3660:
        raise MetricsInvalid("metrics.bad_window", max=3660)
    as_of = as_of or datetime.now(UTC)
    bind = Window(start, end, dims.tz, Params(), as_of).bind()
    used = {k: bind[k] for k in ("s", "e", "asof", "asof_day", "start_day")}
    con = connect(dims, costs)
    try:
        rows = con.execute(_value_sql(by), used | {"value_days": value_days}).fetchall()
    finally:
        con.close()
    labels = dims.labels.get(by, {})
    out = []
    for g, n, cost, value, observed in rows:
        n, cost, value = int(n), int(cost or 0), int(value or 0)
        out.append(
            ValueRow(
                str(g),
                labels.get(str(g), str(g)),
                n,
                cost,
                round(cost / n),
                value,
                round(value / n),
                round(value / cost, 4) if cost else None,
                round(float(observed), 1),
            )
        )
    return out


def channel_value(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    start: date,
    end: date,
    by: str = "channel_code",
    value_days: int = 365,
    as_of: datetime | None = None,
) -> list[ValueRow]:
    """Value next to cost per channel code or store, for customers acquired in the period."""
    if by not in BYS:
        raise MetricsInvalid("metrics.bad_dimension", by=by, allowed=", ".join(BYS))
    dims = dim_scope.load(db, actor, brand)
    names: dict[str, str] = {}
    costs = channel_costs(db, brand.id, names)
    dims.labels["channel_code"] = names
    return channel_value_on(
        dims, start=start, end=end, by=by, value_days=value_days, as_of=as_of, costs=costs
    )


def as_dict(table: CohortTable) -> dict[str, Any]:
    return {
        "start": str(table.start),
        "end": str(table.end),
        "by": table.by,
        "months": table.months,
        "as_of": table.as_of.isoformat(),
        "cohorts": [c.__dict__ for c in table.cohorts],
    }
