"""Client reports: a brand's daily, weekly or monthly report, its files, and its schedules.

:func:`build` gathers the figures once (every number comes from
:func:`siyu.metrics.kpis.compute_kpis`; nothing is recomputed here) and the renderers turn
them into files (``report_xlsx``, ``report_html``, ``report_pdf`` — ReportLab, pure pip):

- **Summary / KPIs** — every KPI for the period next to the period before, with the change;
- **Contract** — the active contract covering the period's last day, each contracted KPI's
  value *to date* (contract start → the period's end), the line it sits on, the distance to
  the next line and the bonus, count and amount lines scaled by the delivered traffic;
- **Stores / Guides** — the headline KPIs per store and per guide, ranked by GMV (the top and
  bottom five are the report's "top and bottom");
- **SOPs** — the headline KPIs of each SOP's enrolled customers ("notable SOP results");
- **Trend** — the headline KPIs for the last periods (7 days, 8 weeks or 6 months).

Periods are brand-local: a day; a Monday–Sunday week; a calendar month. Without a day the
report is for the last *complete* period (yesterday, last week, last month).

Schedules (``report_schedules``) are run by the ``metrics.reports`` job of ``siyu worker``:
a due schedule's report is built for the last complete period with brand-wide scope, stored as
a ``report_runs`` row (unique per schedule and period, so a re-run never sends twice) and
e-mailed through the outbox (channel ``email``) to each recipient: the HTML report as the
body, the XLSX or the PDF attached when the schedule's format is ``xlsx`` or ``pdf``.
"""

from __future__ import annotations

import base64
import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import local_today, utcnow
from siyu.core.db import atomic
from siyu.core.errors import Invalid, NotFound
from siyu.core.i18n import normalise_locale, translate
from siyu.core.tenancy import SYSTEM, Actor
from siyu.metrics import contract_store as store
from siyu.metrics.models import ReportRun, ReportSchedule
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.metrics.kpis import KpiTable
    from siyu.org.models import Brand

Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[str, ...] = ("daily", "weekly", "monthly")
HEADLINE: tuple[str, ...] = (
    "diverted_customers",
    "diversion_rate",
    "retention_rate",
    "churn_rate",
    "interaction_rate",
    "gmv",
    "repurchase_rate",
    "active_members",
)
RANK_BY = "gmv"
TOP_N = 5
TREND_POINTS = {"daily": 7, "weekly": 8, "monthly": 6}
SEND_AT = time(8, 0)  # brand-local time a scheduled report goes out
MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


# ---------------------------------------------------------------- periods


def period_bounds(period: str, day: date) -> tuple[date, date]:
    """The period (``daily`` | ``weekly`` | ``monthly``) containing ``day``, both ends in."""
    if period == "daily":
        return day, day
    if period == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=6)
    if period == "monthly":
        last = calendar.monthrange(day.year, day.month)[1]
        return day.replace(day=1), day.replace(day=last)
    raise Invalid("metrics.bad_report_period", period=period, allowed=", ".join(PERIODS))


def last_complete(period: str, today: date) -> date:
    """A day of the last period that has ended before ``today``."""
    start, _ = period_bounds(period, today)
    return start - timedelta(days=1)


def previous(period: str, start: date) -> tuple[date, date]:
    return period_bounds(period, start - timedelta(days=1))


# ---------------------------------------------------------------- the figures


@dataclass
class KpiFigure:
    key: str
    name: str
    unit: str
    value: float | None
    previous: float | None

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


@dataclass
class GroupFigure:
    group: str
    label: str
    customers: int
    values: dict[str, float | None]


@dataclass
class EffectFigure:
    """An SOP's effect over its holdout (``attribution.sop_effect``): conversion (share of
    enrolments with an order within the window) and GMV per enrolment, treated minus holdout,
    with the confidence interval."""

    sop: str
    name: str
    treated: int
    holdout: int
    conversion_treated: float | None
    conversion_holdout: float | None
    conversion_diff: float | None
    conversion_low: float | None
    conversion_high: float | None
    gmv_diff: float | None
    gmv_low: float | None
    gmv_high: float | None

    @property
    def significant(self) -> bool:
        """The conversion interval excludes zero."""
        low, high = self.conversion_low, self.conversion_high
        return low is not None and high is not None and (low > 0 or high < 0)


@dataclass
class TrendPoint:
    label: str
    start: date
    end: date
    values: dict[str, float | None]


@dataclass
class Report:
    brand_slug: str
    brand_name: str
    period: str
    start: date
    end: date
    prev_start: date
    prev_end: date
    locale: str
    generated_at: datetime
    scoped: bool
    kpis: list[KpiFigure]
    stores: list[GroupFigure]
    guides: list[GroupFigure]
    sops: list[GroupFigure]
    trend: list[TrendPoint]
    contract: store.ContractOut | None = None
    contract_end: date | None = None
    statuses: list[store.KpiStatusOut] = field(default_factory=list)
    effects: list[EffectFigure] = field(default_factory=list)

    @property
    def headline(self) -> tuple[str, ...]:
        return HEADLINE

    def t(self, key: str, **params: Any) -> str:
        return translate(f"ui.report.{key}", self.locale, **params)

    def kpi_name(self, key: str) -> str:
        from siyu.metrics.definitions import BY_KEY

        d = BY_KEY.get(key)
        if d is None:
            return key
        return d.name_en if self.locale == "en" else d.name_zh

    def kpi_unit(self, key: str) -> str:
        from siyu.metrics.definitions import BY_KEY

        d = BY_KEY.get(key)
        return d.unit if d else "count"

    @property
    def filename_stem(self) -> str:
        return f"{self.brand_slug}-{self.period}-{self.start.isoformat()}"


def _values(table: KpiTable, group: str, keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    try:
        row = table.row(group)
    except KeyError:
        return dict.fromkeys(keys)
    return {k: row.values[k].value if k in row.values else None for k in keys}


def _groups(table: KpiTable) -> list[GroupFigure]:
    out = [
        GroupFigure(r.group, r.label, r.customers, _values(table, r.group, HEADLINE))
        for r in table.rows
    ]
    out.sort(key=lambda g: (-(g.values.get(RANK_BY) or 0), g.label or g.group))
    return out


def build(
    db: Session,
    actor: Actor,
    brand: Brand,
    period: str,
    day: date | None = None,
    locale: str = "zh-CN",
) -> Report:
    """The report's figures for the period containing ``day`` (default: the last complete
    one), as ``actor`` may see them (``metrics.read``; their data scope)."""
    from siyu.metrics import kpis as kpi_engine
    from siyu.metrics import scope as dim_scope
    from siyu.metrics.definitions import KPI_KEYS, NONE_KEY

    authorize(actor, store.READ, org_queries.brand_ref(brand))
    if period not in PERIODS:
        raise Invalid("metrics.bad_report_period", period=period, allowed=", ".join(PERIODS))
    locale = normalise_locale(locale)
    day = day or last_complete(period, local_today(brand.timezone))
    start, end = period_bounds(period, day)
    prev_start, prev_end = previous(period, start)
    dims = dim_scope.load(db, actor, brand)

    def table(s: date, e: date, group_by: str | None = None, keys: Any = None) -> KpiTable:
        return kpi_engine.compute_kpis(
            db, actor, brand, start=s, end=e, group_by=group_by, kpis=keys, dims=dims
        )

    now_t, prev_t = table(start, end), table(prev_start, prev_end)
    figures = [
        KpiFigure(
            key,
            "",
            "",
            _values(now_t, "all", [key])[key],
            _values(prev_t, "all", [key])[key],
        )
        for key in KPI_KEYS
    ]
    headline = list(HEADLINE)
    stores = _groups(table(start, end, "store", headline))
    guides = _groups(table(start, end, "guide", headline))
    # customers in no SOP are the "(none)" group: not an SOP result
    sops = [g for g in _groups(table(start, end, "sop", headline)) if g.group != NONE_KEY]
    trend = []
    s = start
    points: list[tuple[date, date]] = []
    for _ in range(TREND_POINTS[period]):
        points.append((s, period_bounds(period, s)[1]))
        s = previous(period, s)[0]
    for ps, pe in reversed(points):
        label = ps.isoformat() if period != "monthly" else ps.strftime("%Y-%m")
        trend.append(
            TrendPoint(label, ps, pe, _values(table(ps, pe, None, headline), "all", headline))
        )
    report = Report(
        brand_slug=brand.slug,
        brand_name=brand.name,
        period=period,
        start=start,
        end=end,
        prev_start=prev_start,
        prev_end=prev_end,
        locale=locale,
        generated_at=utcnow(),
        scoped=dims.scoped,
        kpis=figures,
        stores=stores,
        guides=guides,
        sops=sops,
        trend=trend,
    )
    for f in report.kpis:
        f.name, f.unit = report.kpi_name(f.key), report.kpi_unit(f.key)
    report.effects = _effects(db, actor, brand, end, dims)
    contract = store.contract_for(db, actor, brand, end)
    if contract is not None:
        to = min(end, contract.ends_on)
        report.contract, report.contract_end = contract, to
        report.statuses = _status(db, actor, brand, contract, contract.starts_on, to, dims)
    return report


EFFECT_WINDOW_DAYS = 14


def _effects(db: Session, actor: Actor, brand: Brand, end: date, dims: Any) -> list[EffectFigure]:
    """The effect of each enabled SOP that keeps a holdout, as of the period's end."""
    from siyu.metrics import attribution
    from siyu.sop.models import Sop

    zone = ZoneInfo(brand.timezone)
    as_of = datetime.combine(end + timedelta(days=1), time(0, 0), zone).astimezone(UTC)
    sops = db.scalars(
        select(Sop)
        .where(Sop.brand_id == brand.id, Sop.status == "enabled", Sop.holdout_pct > 0)
        .order_by(Sop.priority.desc(), Sop.key)
    )
    out = []
    for sop in sops:
        e = attribution.sop_effect(
            db, actor, brand, sop.id, window_days=EFFECT_WINDOW_DAYS, as_of=as_of, dims=dims
        )
        c, g = e.conversion, e.gmv
        out.append(
            EffectFigure(
                sop=sop.key,
                name=sop.name,
                treated=e.treated,
                holdout=e.holdout,
                conversion_treated=e.conversion_treated,
                conversion_holdout=e.conversion_holdout,
                conversion_diff=c.diff if c else None,
                conversion_low=c.low if c else None,
                conversion_high=c.high if c else None,
                gmv_diff=g.diff if g else None,
                gmv_low=g.low if g else None,
                gmv_high=g.high if g else None,
            )
        )
    return out


def _status(
    db: Session,
    actor: Actor,
    brand: Brand,
    contract: store.ContractOut,
    start: date,
    end: date,
    dims: Any = None,
) -> list[store.KpiStatusOut]:
    from siyu.metrics import kpis as kpi_engine

    keys = [k.kpi for k in contract.kpis]
    if not keys:
        return []
    t = kpi_engine.compute_kpis(db, actor, brand, start=start, end=end, kpis=keys, dims=dims)
    values = {k: (None if v is None else float(v)) for k, v in _values(t, "all", keys).items()}
    return store.evaluate_contract(
        contract, values, elapsed=store.elapsed_share(contract, start, end)
    )


def contract_status(
    db: Session,
    actor: Actor,
    brand: Brand,
    ref: str,
    start: date | None = None,
    end: date | None = None,
) -> list[store.KpiStatusOut]:
    """A contract's KPIs evaluated over ``start``…``end`` (default: its start → today or its
    end) in the actor's data scope."""
    contract = store.show_contract(db, actor, brand, ref)
    s = start or contract.starts_on
    e = end or min(contract.ends_on, local_today(brand.timezone))
    if e < s:
        e = s
    return _status(db, actor, brand, contract, s, e)


# ---------------------------------------------------------------- files


def pdf_available() -> bool:
    """Whether ReportLab (a declared dependency) is importable; without it a PDF request is
    refused with ``metrics.pdf_unavailable``."""
    try:
        import reportlab  # noqa: F401
    except ImportError:
        return False
    return True


def render(report: Report, fmt: str) -> tuple[bytes, str, str]:
    """(bytes, media type, file name) of the report as ``xlsx``, ``html`` or ``pdf``."""
    from siyu.metrics import report_html, report_xlsx

    if fmt == "xlsx":
        data = report_xlsx.render(report)
    elif fmt == "html":
        data = report_html.render(report).encode()
    elif fmt == "pdf":
        if not pdf_available():
            raise Invalid("metrics.pdf_unavailable")
        from siyu.metrics import report_pdf

        data = report_pdf.render(report)
    else:
        raise Invalid("metrics.bad_report_format", format=fmt, allowed="xlsx, html, pdf")
    return data, MEDIA[fmt], f"{report.filename_stem}.{fmt}"


# ---------------------------------------------------------------- schedules


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: Literal["daily", "weekly", "monthly"]
    format: Literal["xlsx", "html", "pdf"] = "xlsx"
    recipients: list[str] = Field(min_length=1, max_length=20)
    locale: Literal["zh-CN", "en"] = "zh-CN"
    enabled: bool = True

    @field_validator("recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        out = []
        for address in value:
            a = address.strip()
            local, _, domain = a.partition("@")
            if not local or "." not in domain or " " in a or len(a) > 254:
                raise ValueError(f"not an e-mail address: {address!r}")
            out.append(a)
        return out


class ScheduleOut(BaseModel):
    id: str
    period: str
    format: str
    recipients: list[str]
    locale: str
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None


def _schedule_out(row: ReportSchedule) -> ScheduleOut:
    return ScheduleOut(
        id=row.id,
        period=row.period,
        format=row.format,
        recipients=list(row.recipients or []),
        locale=row.locale,
        enabled=row.enabled,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
    )


def next_run(period: str, tz: str, after: datetime) -> datetime:
    """When a schedule next sends: brand-local 08:00 on the first day of the next period
    (the day after a daily period, Monday after a week, the 1st after a month)."""
    zone = ZoneInfo(tz)
    today = after.astimezone(zone).date()
    _, end = period_bounds(period, today)
    candidate = datetime.combine(today, SEND_AT, zone)
    if period != "daily" or candidate <= after:
        candidate = datetime.combine(end + timedelta(days=1), SEND_AT, zone)
    return candidate.astimezone(UTC)


def list_schedules(db: Session, actor: Actor, brand: Brand) -> list[ScheduleOut]:
    authorize(actor, store.READ, org_queries.brand_ref(brand))
    rows = db.scalars(
        select(ReportSchedule)
        .where(ReportSchedule.brand_id == brand.id)
        .order_by(ReportSchedule.created_at)
    )
    return [_schedule_out(r) for r in rows]


def create_schedule(db: Session, actor: Actor, brand: Brand, body: ScheduleIn) -> ScheduleOut:
    authorize(actor, store.WRITE, org_queries.brand_ref(brand))
    with atomic(db):
        row = ReportSchedule(
            brand_id=brand.id,
            period=body.period,
            format=body.format,
            recipients=body.recipients,
            locale=body.locale,
            enabled=body.enabled,
            next_run_at=next_run(body.period, brand.timezone, utcnow()),
            created_by=actor.label,
        )
        db.add(row)
        db.flush()
        record(
            db,
            actor,
            "metrics.report_schedule_created",
            "report_schedule",
            row.id,
            brand=brand,
            after=body.model_dump(),
        )
    return _schedule_out(row)


def delete_schedule(db: Session, actor: Actor, brand: Brand, schedule_id: str) -> None:
    authorize(actor, store.WRITE, org_queries.brand_ref(brand))
    with atomic(db):
        row = db.scalar(
            select(ReportSchedule).where(
                ReportSchedule.brand_id == brand.id, ReportSchedule.id == schedule_id
            )
        )
        if row is None:
            raise NotFound("metrics.schedule_not_found", schedule=schedule_id)
        for run in db.scalars(select(ReportRun).where(ReportRun.schedule_id == row.id)):
            run.schedule_id = None
        db.delete(row)
        record(
            db,
            actor,
            "metrics.report_schedule_deleted",
            "report_schedule",
            row.id,
            brand=brand,
            before={"period": row.period, "recipients": list(row.recipients or [])},
        )


def _mail(report: Report, fmt: str, html: str) -> dict[str, Any]:
    subject = report.t(
        "mail_subject",
        brand=report.brand_name,
        period=report.t(f"period.{report.period}"),
        start=report.start.isoformat(),
        end=report.end.isoformat(),
    )
    content: dict[str, Any] = {
        "subject": subject,
        "text": subject + "\n\n" + report.t("mail_text"),
        "html": html,
    }
    if fmt in ("xlsx", "pdf"):
        data, media, name = render(report, fmt)
        content["attachments"] = [
            {
                "filename": name,
                "content_type": media,
                "data": base64.b64encode(data).decode(),
            }
        ]
    return content


def run_schedule(db: Session, row: ReportSchedule, now: datetime) -> ReportRun | None:
    """Build and queue one schedule's report for its last complete period (idempotent per
    schedule and period); moves the schedule on. Commits."""
    from siyu.metrics import report_html
    from siyu.org.models import Brand
    from siyu.sop.models import Outbox

    brand = db.get(Brand, row.brand_id)
    assert brand is not None
    day = last_complete(row.period, local_today(brand.timezone, now))
    start, end = period_bounds(row.period, day)
    key = f"report:{row.id}:{start.isoformat()}"
    done = db.scalar(
        select(ReportRun).where(ReportRun.brand_id == brand.id, ReportRun.idem_key == key)
    )
    run: ReportRun | None = None
    if done is None:
        run = ReportRun(
            brand_id=brand.id,
            schedule_id=row.id,
            idem_key=key,
            period=row.period,
            format=row.format,
            starts_on=start,
            ends_on=end,
            status="running",
            started_at=now,
        )
        try:
            report = build(db, SYSTEM, brand, row.period, day, row.locale)
            html = report_html.render(report)
            content = _mail(report, row.format, html)
            for i, address in enumerate(row.recipients or []):
                db.add(
                    Outbox(
                        brand_id=brand.id,
                        idem_key=f"{key}:{i}",
                        channel="email",
                        payload={"to": address, "content": content, "report": key},
                        status="pending",
                        available_at=now,
                    )
                )
            run.status = "done"
            run.size_bytes = len(html.encode())
        except Exception as exc:  # a failing report is recorded, the schedule moves on
            db.rollback()
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"[:1000]
        run.finished_at = utcnow()
        db.add(run)
    row = db.get(ReportSchedule, row.id) or row
    row.last_run_at = now
    row.next_run_at = next_run(row.period, brand.timezone, now)
    db.commit()
    return run


def run_due(db: Session, limit: int) -> int:
    """Job ``metrics.reports``: run up to ``limit`` due schedules; returns how many ran."""
    now = utcnow()
    query = (
        select(ReportSchedule)
        .where(ReportSchedule.enabled.is_(True), ReportSchedule.next_run_at <= now)
        .order_by(ReportSchedule.next_run_at)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(db.scalars(query))
    for row in rows:
        run_schedule(db, row, now)
    return len(rows)
