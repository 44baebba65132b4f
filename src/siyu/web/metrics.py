"""Dashboards: the brand overview ``/b/{brand}/metrics`` (KPI cards with their contract line),
the region → store → guide drill-down, the guide leaderboard, the cohort heatmap, the channel
value table, and the customers behind any number (``/b/{brand}/metrics/customers``).

Every figure comes from ``siyu.metrics`` (``kpis.compute_kpis``, ``kpis.customer_ids_behind``,
``cohorts``) as the signed-in person may see it: a store manager's pages count and list only
their stores' customers, and customer rows are masked (``customers.queries.rows_by_id``).
Contracts and reports have their own pages (``siyu.web.metrics_contracts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import Response

from siyu.core.clock import local_today
from siyu.core.errors import Invalid
from siyu.metrics.report_html import fmt
from siyu.org.models import Brand
from siyu.web.deps import Con, Console
from siyu.web.render import page

router = APIRouter(include_in_schema=False)

READ = "metrics.read"
LEVELS = ("region", "store", "guide")
NEXT = {"region": "store", "store": "guide"}
DRILL_KPIS = (
    "diverted_customers",
    "diversion_rate",
    "retention_rate",
    "churn_rate",
    "interaction_rate",
    "gmv",
    "repurchase_rate",
)
BOARD_KPIS = ("gmv", "diverted_customers", "interaction_rate", "repurchase_rate", "churn_rate")
LINE_BADGE = {"fail": "badge-bad", "normal": "badge-info", "good": "badge-ok", "excess": "badge-ok"}
PAGE_SIZE = 50


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    def query(self, **extra: Any) -> str:
        params = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        params.update({k: str(v) for k, v in extra.items() if v not in (None, "")})
        return urlencode(params)


def period_of(b: Brand, start: str, end: str) -> Period:
    """The period asked for (brand-local days), by default the month to date."""
    today = local_today(b.timezone)
    try:
        s = date.fromisoformat(start) if start else today.replace(day=1)
        e = date.fromisoformat(end) if end else today
    except ValueError:
        raise Invalid("validation.failed", reason="start/end: dates as YYYY-MM-DD") from None
    if e < s:
        raise Invalid("metrics.bad_period", start=str(s), end=str(e))
    return Period(s, e)


def _kpi_meta(locale: str) -> dict[str, dict[str, Any]]:
    from siyu.metrics.definitions import KPIS

    return {
        k.key: {
            "name": k.name_en if locale == "en" else k.name_zh,
            "unit": k.unit,
            "family": k.family,
            "pending": k.pending,
            "has_denominator": k.has_denominator,
        }
        for k in KPIS
    }


def _base(con: Console, b: Brand, tab: str, p: Period, **context: Any) -> dict[str, Any]:
    return {
        "tab": tab,
        "period": p,
        "fmt": fmt,
        "kpi": _kpi_meta(con.locale),
        "badge_class": LINE_BADGE,
        "canonical": f"/b/{b.slug}/metrics",
        **context,
    }


# ---------------------------------------------------------------- overview


@router.get("/b/{brand}/metrics")
def overview(brand: str, con: Con, start: str = "", end: str = "") -> Response:
    from siyu.metrics import kpis, reports

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    table = kpis.compute_kpis(con.db, con.actor, b, start=p.start, end=p.end)
    row = table.row("all")
    contract = None
    statuses: dict[str, Any] = {}
    from siyu.metrics import contract_store

    found = contract_store.contract_for(con.db, con.actor, b, p.end)
    if found is not None:
        contract = found
        to = min(p.end, found.ends_on)
        for s in reports.contract_status(con.db, con.actor, b, found.key, found.starts_on, to):
            statuses[s.kpi] = s
    return page(
        con,
        "metrics.html",
        b,
        "metrics",
        **_base(
            con,
            b,
            "overview",
            p,
            row=row,
            scoped=table.scoped,
            contract=contract,
            statuses=statuses,
        ),
    )


# ---------------------------------------------------------------- drill-down


def _restricted(con: Console, b: Brand, level: str, parent: str) -> Any:
    """The data-scoped dimension, narrowed to the parent region (store level) or store
    (guide level)."""
    from siyu.metrics import scope

    dims = scope.load(con.db, con.actor, b)
    if parent and level in ("store", "guide"):
        dims = scope.restrict(dims, "region" if level == "store" else "store", parent)
    return dims


@router.get("/b/{brand}/metrics/drill")
def drill(
    brand: str,
    con: Con,
    level: str = "region",
    parent: str = "",
    start: str = "",
    end: str = "",
) -> Response:
    from siyu.metrics import kpis

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    if level not in LEVELS:
        raise Invalid("metrics.bad_group_by", group_by=level, allowed=", ".join(LEVELS))
    dims = _restricted(con, b, level, parent)
    table = kpis.compute_kpis(
        con.db, con.actor, b, start=p.start, end=p.end, group_by=level,
        kpis=list(DRILL_KPIS), dims=dims,
    )  # fmt: skip
    crumbs = [("region", "", "")]
    if level in ("store", "guide") and parent:
        crumbs.append(("store", parent if level == "store" else "", parent))
    return page(
        con,
        "metrics_drill.html",
        b,
        "metrics",
        **_base(
            con,
            b,
            "drill",
            p,
            table=table,
            level=level,
            parent=parent,
            next_level=NEXT.get(level),
            columns=DRILL_KPIS,
            labels=dims.labels.get(level, {}),
        ),
    )


@router.get("/b/{brand}/metrics/leaderboard")
def leaderboard(brand: str, con: Con, kpi: str = "gmv", start: str = "", end: str = "") -> Response:
    from siyu.metrics import kpis
    from siyu.metrics.definitions import BY_KEY

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    if kpi not in BOARD_KPIS:
        raise Invalid("metrics.unknown_kpi", kpi=kpi)
    table = kpis.compute_kpis(
        con.db, con.actor, b, start=p.start, end=p.end, group_by="guide", kpis=list(BOARD_KPIS)
    )
    sign = 1 if BY_KEY[kpi].higher_is_better else -1
    rows = [r for r in table.rows if r.group != "(none)"]
    rows.sort(
        key=lambda r: (
            r.values[kpi].value is None,
            -sign * float(r.values[kpi].value or 0),
            r.label,
        )
    )
    return page(
        con,
        "metrics_leaderboard.html",
        b,
        "metrics",
        **_base(con, b, "leaderboard", p, rows=rows, by=kpi, columns=BOARD_KPIS),
    )


# ---------------------------------------------------------------- cohorts and channels


def cohort_links(b: Brand, p: Period, table: Any, measure: str) -> list[list[str]]:
    """Per cohort row, per month k: the page of the customers behind that heatmap cell."""
    out = []
    for c in table.cohorts:
        row = []
        for k in range(table.months + 1):
            q = p.query(by=table.by or "", month=c.month, group=c.group, k=k, measure=measure)
            row.append(f"/b/{b.slug}/metrics/cohorts/customers?{q}")
        out.append(row)
    return out


def heatmap(table: Any, metric: str, title: str) -> dict[str, Any]:
    """ECharts option: cohort months (rows) × months since acquisition (columns), in %."""
    cohorts = [c for c in table.cohorts]
    ys = [f"{c.month} · {c.group}" if c.group != "all" else c.month for c in cohorts]
    data = []
    for y, c in enumerate(cohorts):
        for x, v in enumerate(getattr(c, metric)):
            if v is not None:
                data.append([x, y, round(float(v) * 100, 1)])
    return {
        "tooltip": {"position": "top"},
        "grid": {"left": 110, "right": 20, "top": 10, "bottom": 60},
        "xAxis": {"type": "category", "data": [f"M{i}" for i in range(table.months + 1)]},
        "yAxis": {"type": "category", "data": ys, "inverse": True},
        "visualMap": {
            "min": 0,
            "max": 100,
            "calculable": True,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "inRange": {"color": ["#f3f6fa", "#2f6fbf"]},
        },
        "series": [{"name": title, "type": "heatmap", "data": data, "label": {"show": True}}],
    }


@router.get("/b/{brand}/metrics/cohorts")
def cohort_page(
    brand: str, con: Con, by: str = "", months: int = 6, start: str = "", end: str = ""
) -> Response:
    from siyu.metrics import cohorts

    b = con.brand(brand, READ)
    today = local_today(b.timezone)
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    for _ in range(5):
        first = (first - timedelta(days=1)).replace(day=1)
    p = period_of(b, start or first.isoformat(), end)
    months = max(1, min(months, 12))
    table = cohorts.cohorts(
        con.db, con.actor, b, start=p.start, end=p.end, by=by or None, months=months
    )
    t = _kpi_meta(con.locale)
    return page(
        con,
        "metrics_cohorts.html",
        b,
        "metrics",
        **_base(
            con,
            b,
            "cohorts",
            p,
            table=table,
            by=by,
            retention=heatmap(table, "retention", t["retention_rate"]["name"]),
            repurchase=heatmap(table, "repurchase", t["repurchase_rate"]["name"]),
            retained_links=cohort_links(b, p, table, "retained"),
            repurchased_links=cohort_links(b, p, table, "repurchased"),
        ),
    )


@router.get("/b/{brand}/metrics/cohorts/customers")
def cohort_customers(
    brand: str,
    con: Con,
    month: str = "",
    by: str = "",
    group: str = "all",
    k: int = 0,
    measure: str = "size",
    start: str = "",
    end: str = "",
    page_no: int = 1,
) -> Response:
    """The customers behind one cohort cell (masked, in the viewer's data scope)."""
    from siyu.customers import queries as customer_queries
    from siyu.metrics import cohorts, scope

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    month = month or p.start.strftime("%Y-%m")  # the period's first month by default
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError as exc:
        raise Invalid("metrics.bad_period", start=month, end=month) from exc
    if by and by not in cohorts.BYS:
        raise Invalid("metrics.bad_dimension", by=by, allowed=", ".join(cohorts.BYS))
    dims = scope.load(con.db, con.actor, b)
    ids, total = cohorts.cohort_customer_ids(
        dims,
        month=first,
        by=by or None,
        group=group,
        k=k,
        measure=measure,
        page=max(1, page_no),
        page_size=PAGE_SIZE,
        within=(p.start, p.end) if start else None,
    )
    rows = customer_queries.rows_by_id(con.db, con.actor, b, ids)
    return page(
        con,
        "metrics_cohort_customers.html",
        b,
        "metrics",
        **_base(
            con,
            b,
            "cohorts",
            p,
            month=month,
            by=by,
            group=group,
            k=k,
            measure=measure,
            total=total,
            customers=[rows[i] for i in ids if i in rows],
            page_no=max(1, page_no),
            pages=max(1, -(-total // PAGE_SIZE)),
        ),
    )


@router.get("/b/{brand}/metrics/channels")
def channels(
    brand: str, con: Con, by: str = "channel_code", start: str = "", end: str = ""
) -> Response:
    from siyu.metrics import cohorts

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    if by not in ("channel_code", "store"):
        by = "channel_code"
    rows = cohorts.channel_value(con.db, con.actor, b, start=p.start, end=p.end, by=by)
    return page(
        con,
        "metrics_channels.html",
        b,
        "metrics",
        **_base(con, b, "channels", p, rows=rows, by=by),
    )


# ---------------------------------------------------------------- the customers behind


@router.get("/b/{brand}/metrics/customers")
def customers(
    brand: str,
    con: Con,
    kpi: str = "diverted_customers",
    start: str = "",
    end: str = "",
    group_by: str = "",
    group: str = "all",
    parent: str = "",
    side: str = "numerator",
    page_no: int = 1,
) -> Response:
    """The customers counted in one number (numerator or denominator), masked, in scope."""
    from siyu.customers import queries as customer_queries
    from siyu.metrics import kpis

    b = con.brand(brand, READ)
    p = period_of(b, start, end)
    if kpi not in _kpi_meta(con.locale):
        raise Invalid("metrics.unknown_kpi", kpi=kpi)
    level = group_by or None
    dims = _restricted(con, b, group_by, parent) if level else None
    if dims is None:
        from siyu.metrics import scope

        dims = scope.load(con.db, con.actor, b)
    koc = None
    if kpi.startswith("koc_"):
        koc = kpis.koc_period(con.db, b, p.start, p.end)[0]
    ids, total = kpis.customer_ids_behind(
        dims,
        kpi,
        start=p.start,
        end=p.end,
        group_by=level,
        group=group,
        side=side,
        page=max(1, page_no),
        page_size=PAGE_SIZE,
        costs=kpis.channel_costs(con.db, b.id),
        koc=koc,
    )
    rows = customer_queries.rows_by_id(con.db, con.actor, b, ids)
    listed = [rows[i] for i in ids if i in rows]
    pages = max(1, -(-total // PAGE_SIZE))
    return page(
        con,
        "metrics_customers.html",
        b,
        "metrics",
        **_base(
            con,
            b,
            "customers",
            p,
            key=kpi,
            group_by=group_by,
            group=group,
            parent=parent,
            side=side,
            total=total,
            customers=listed,
            page_no=max(1, page_no),
            pages=pages,
        ),
    )
