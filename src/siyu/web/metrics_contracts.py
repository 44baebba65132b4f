"""Contract and report pages: contracts ``/b/{brand}/metrics/contracts`` (list, a JSON editor
to create or replace one, its status with the four lines drawn as bands and the actual value
on them, its forecast table), and client reports ``/b/{brand}/metrics/reports`` (download a
daily / weekly / monthly report as XLSX or HTML, schedule one by e-mail).

Reads need ``metrics.read``; every write is a ``contract_store`` / ``reports`` function
(``metrics.write``), which checks the permission and audits.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from siyu.core.errors import FieldError, Invalid, SiyuError
from siyu.core.i18n import translate
from siyu.core.validation import parse
from siyu.metrics import contract_store as store
from siyu.metrics.report_html import fmt
from siyu.org.models import Brand
from siyu.web.deps import Con, Console, Form, text_field
from siyu.web.metrics import LINE_BADGE, Period, _kpi_meta, period_of
from siyu.web.render import SECURITY_HEADERS, page

router = APIRouter(include_in_schema=False)

BAND_COLOURS = {"fail": "#f3c4c4", "normal": "#f7e3b0", "good": "#cfe8c8", "excess": "#9fd4a0"}
MAX_BODY = 200_000
EXAMPLE: dict[str, Any] = {
    "key": "2026-h2",
    "name": "2026 H2",
    "starts_on": "2026-07-01",
    "ends_on": "2026-12-31",
    "commitment_pct": 80,
    "kpis": [
        {"kpi": "diversion_rate", "fail": 0, "normal": 0.05, "good": 0.2, "excess": 0.25},
        {
            "kpi": "diverted_customers",
            "fail": 0,
            "normal": 1000,
            "good": 1500,
            "excess": 2000,
            "bonus": {"kind": "linear", "per_unit": 500, "unit": 1, "cap": 1000000},
        },
        {"kpi": "cost_per_diverted", "fail": 5000, "normal": 3000, "good": 2000, "excess": 1500},
    ],
    "forecast": [
        {
            "month": "2026-07",
            "channel": "store_qr",
            "committed_traffic": 10000,
            "diversion_rate": 0.2,
            "gmv_per_customer": 8000,
            "delivered_traffic": None,
        }
    ],
}


def band_chart(s: store.KpiStatusOut, labels: dict[str, str], unit: str) -> dict[str, Any]:
    """ECharts option: the four lines as coloured bands (worst on the left; a lower-is-better
    KPI's axis runs backwards) and the actual value as a marker line on them."""
    e = s.effective
    scale = 100.0 if unit == "ratio" else (0.01 if unit == "fen" else 1.0)
    lo, hi = min(e.values()), max(e.values())
    if s.value is not None:
        lo, hi = min(lo, s.value), max(hi, s.value)
    pad = (hi - lo) * 0.15 or abs(hi) * 0.15 or 1.0
    higher = s.direction == "higher"
    top = e["excess"] + pad if higher else e["excess"] - pad
    edges = [
        ("fail", e["fail"], e["normal"]),
        ("normal", e["normal"], e["good"]),
        ("good", e["good"], e["excess"]),
        ("excess", e["excess"], top),
    ]
    areas = [
        [
            {
                "xAxis": round(a * scale, 4),
                "itemStyle": {"color": BAND_COLOURS[line]},
                "name": labels.get(line, line),
            },
            {"xAxis": round(b * scale, 4)},
        ]
        for line, a, b in edges
    ]
    value = None if s.value is None else round(s.value * scale, 4)
    series: dict[str, Any] = {
        "type": "scatter",
        "data": [] if value is None else [[value, 0]],
        "symbolSize": 10,
        "itemStyle": {"color": "#1d2430"},
        "markArea": {"silent": True, "label": {"position": "top"}, "data": areas},
    }
    if value is not None:
        series["markLine"] = {
            "silent": True,
            "symbol": "none",
            "lineStyle": {"color": "#1d2430", "width": 2, "type": "solid"},
            "label": {"formatter": str(value), "position": "end"},
            "data": [{"xAxis": value}],
        }
    return {
        "grid": {"left": 10, "right": 30, "top": 24, "bottom": 24, "containLabel": True},
        "xAxis": {
            "type": "value",
            "min": round(min(lo, top) * scale, 4),
            "max": round(max(hi, top) * scale, 4),
            "inverse": not higher,
            "splitLine": {"show": False},
        },
        "yAxis": {"type": "value", "show": False, "min": -1, "max": 1},
        "series": [series],
    }


def _contract_error(con: Console, exc: SiyuError) -> dict[str, Any]:
    return {
        "code": exc.code,
        "text": exc.message(con.locale),
        "details": [f"{e.field or ''}: {e.reason or e.code}".strip(": ") for e in exc.errors[:20]],
    }


def _parse_body(form: Any) -> tuple[str, store.ContractIn]:
    raw = text_field(form, "definition")
    if len(raw) > MAX_BODY:
        raise Invalid("validation.failed", reason=f"definition: at most {MAX_BODY} characters")
    try:
        data = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise Invalid("validation.failed", reason=f"definition: {exc}") from None
    return raw, parse(store.ContractIn, data)


def list_page(
    con: Console, b: Brand, definition: str = "", error: SiyuError | None = None, status: int = 200
) -> Response:
    contracts = store.list_contracts(con.db, con.actor, b)
    p = period_of(b, "", "")
    return page(
        con,
        "metrics_contracts.html",
        b,
        "metrics",
        status,
        tab="contracts",
        period=p,
        contracts=contracts,
        kpi=_kpi_meta(con.locale),
        definition=definition or json.dumps(EXAMPLE, ensure_ascii=False, indent=2),
        error=_contract_error(con, error) if error else {},
        canonical=f"/b/{b.slug}/metrics/contracts",
    )


@router.get("/b/{brand}/metrics/contracts")
def contracts(brand: str, con: Con) -> Response:
    b = con.brand(brand, store.READ)
    return list_page(con, b)


@router.post("/b/{brand}/metrics/contracts")
def create(brand: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, store.WRITE)
    raw = text_field(form, "definition")
    try:
        _, body = _parse_body(form)
        row = store.create_contract(con.db, con.actor, b, body)
    except SiyuError as exc:
        return list_page(con, b, raw, exc, exc.status)
    return RedirectResponse(f"/b/{b.slug}/metrics/contracts/{row.key}?done=created", 303)


LINE_NAMES = ("fail", "normal", "good", "excess")
MAX_ROWS = 30


def _display_unit(unit: str) -> str:
    """How a KPI's lines are typed in the form: rates in percent, money in yuan."""
    return {"ratio": "%", "fen": "¥"}.get(unit, "")


def _shown(value: float, unit: str) -> str:
    shown = value * 100 if unit == "ratio" else (value / 100 if unit == "fen" else value)
    return f"{shown:.6g}"


def _parsed(text: str, unit: str, where: str) -> float:
    try:
        value = float(text.replace(",", "").replace("%", "").replace("¥", "").strip())
    except ValueError:
        raise Invalid(
            "validation.failed",
            errors=[FieldError("invalid.number", where, reason=f"not a number: {text!r}")],
            reason=f"{where}: not a number",
        ) from None
    return value / 100 if unit == "ratio" else (value * 100 if unit == "fen" else value)


def _rows_of(contract: store.ContractOut, meta: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for k in contract.kpis:
        unit = meta.get(k.kpi, {}).get("unit", "")
        row = {"kpi": k.kpi, "direction": k.direction}
        row.update({line: _shown(getattr(k, line), unit) for line in LINE_NAMES})
        out.append(row)
    return out


def _rows_posted(form: Any) -> list[dict[str, str]]:
    out = []
    for i in [*range(MAX_ROWS), "new"]:
        kpi = text_field(form, f"kpi_{i}")
        if not kpi or text_field(form, f"remove_{i}"):
            continue
        row = {"kpi": kpi, "direction": text_field(form, f"direction_{i}")}
        row.update({line: text_field(form, f"{line}_{i}") for line in LINE_NAMES})
        out.append(row)
    return out


def detail_page(
    con: Console,
    b: Brand,
    key: str,
    definition: str = "",
    error: SiyuError | None = None,
    status: int = 200,
    done: str = "",
    rows: list[dict[str, str]] | None = None,
) -> Response:
    from siyu.metrics import reports

    contract = store.show_contract(con.db, con.actor, b, key)
    meta = _kpi_meta(con.locale)
    used = {k.kpi for k in contract.kpis}
    statuses = reports.contract_status(con.db, con.actor, b, contract.key)
    labels = {
        line: translate(f"ui.report.status.{line}", con.locale)
        for line in ("fail", "normal", "good", "excess")
    }
    charts = {s.kpi: band_chart(s, labels, meta.get(s.kpi, {}).get("unit", "")) for s in statuses}
    p = period_of(b, "", "")
    to_date = Period(contract.starts_on, max(contract.starts_on, min(contract.ends_on, p.end)))
    return page(
        con,
        "metrics_contract.html",
        b,
        "metrics",
        status,
        tab="contracts",
        period=p,
        to_date=to_date,
        contract=contract,
        statuses=statuses,
        charts=charts,
        kpi=meta,
        fmt=fmt,
        badge_class=LINE_BADGE,
        definition=definition or json.dumps(store.as_input(contract), ensure_ascii=False, indent=2),
        error=_contract_error(con, error) if error else {},
        done=done if done in ("created", "updated") else "",
        line_rows=rows if rows is not None else _rows_of(contract, meta),
        unit_of={k: _display_unit(m["unit"]) for k, m in meta.items()},
        new_kpis=[(k, m["name"]) for k, m in meta.items() if k not in used],
        error_kpis={e.field.split(".")[0] for e in (error.errors if error else []) if e.field},
        canonical=f"/b/{b.slug}/metrics/contracts/{contract.key}",
    )


@router.get("/b/{brand}/metrics/contracts/{key}")
def detail(brand: str, key: str, con: Con, done: str = "") -> Response:
    b = con.brand(brand, store.READ)
    return detail_page(con, b, key, done=done)


@router.post("/b/{brand}/metrics/contracts/{key}")
def replace(brand: str, key: str, con: Con, form: Form) -> Response:
    b = con.brand(brand, store.WRITE)
    raw = text_field(form, "definition")
    try:
        _, body = _parse_body(form)
        row = store.replace_contract(con.db, con.actor, b, key, body)
    except SiyuError as exc:
        if exc.status == 404:
            raise
        return detail_page(con, b, key, raw, exc, exc.status)
    return RedirectResponse(f"/b/{b.slug}/metrics/contracts/{row.key}?done=updated", 303)


@router.post("/b/{brand}/metrics/contracts/{key}/lines")
def set_lines(brand: str, key: str, con: Con, form: Form) -> Response:
    """The lines form: each KPI's four lines and direction (rates typed in percent, money in
    yuan), a row to remove or one to add; kind and bonus stay as they were."""
    b = con.brand(brand, store.WRITE)
    contract = store.show_contract(con.db, con.actor, b, key)
    meta = _kpi_meta(con.locale)
    posted = _rows_posted(form)
    before = {k.kpi: k for k in contract.kpis}
    try:
        kpis = []
        for row in posted:
            unit = meta.get(row["kpi"], {}).get("unit", "")
            line: dict[str, Any] = {"kpi": row["kpi"]}
            line.update({n: _parsed(row[n], unit, f"{row['kpi']}.{n}") for n in LINE_NAMES})
            if row["direction"] in ("higher", "lower"):
                line["direction"] = row["direction"]
            old = before.get(row["kpi"])
            if old is not None:
                line["kind"], line["bonus"] = old.kind, old.bonus
            kpis.append(line)
        body = parse(store.ContractIn, {**store.as_input(contract), "kpis": kpis})
        store.replace_contract(con.db, con.actor, b, key, body)
    except SiyuError as exc:
        if exc.status == 404:
            raise
        return detail_page(con, b, key, "", exc, exc.status, rows=posted)
    return RedirectResponse(f"/b/{b.slug}/metrics/contracts/{contract.key}?done=updated", 303)


@router.post("/b/{brand}/metrics/contracts/{key}/delete")
def delete(brand: str, key: str, con: Con) -> Response:
    b = con.brand(brand, store.WRITE)
    store.delete_contract(con.db, con.actor, b, key)
    return RedirectResponse(f"/b/{b.slug}/metrics/contracts", 303)


# ---------------------------------------------------------------- reports


def reports_page(
    con: Console, b: Brand, error: SiyuError | None = None, status: int = 200
) -> Response:
    from siyu.metrics import reports

    return page(
        con,
        "metrics_reports.html",
        b,
        "metrics",
        status,
        tab="reports",
        period=period_of(b, "", ""),
        schedules=reports.list_schedules(con.db, con.actor, b),
        pdf=reports.pdf_available(),
        error=_contract_error(con, error) if error else {},
        canonical=f"/b/{b.slug}/metrics/reports",
    )


@router.get("/b/{brand}/metrics/reports")
def reports_list(brand: str, con: Con) -> Response:
    b = con.brand(brand, store.READ)
    return reports_page(con, b)


@router.get("/b/{brand}/metrics/reports/{period}")
def report_file(brand: str, period: str, con: Con, format: str = "html", day: str = "") -> Response:
    """The report itself: HTML shown in the browser, XLSX / PDF downloaded."""
    from siyu.metrics import reports

    b = con.brand(brand, store.READ)
    try:
        when = date.fromisoformat(day) if day else None
    except ValueError:
        raise Invalid("validation.failed", reason="day: a date as YYYY-MM-DD") from None
    built = reports.build(con.db, con.actor, b, period, when, con.locale)
    data, media, name = reports.render(built, format)
    headers = dict(SECURITY_HEADERS)
    if format != "html":
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(data, media_type=media, headers=headers)


@router.post("/b/{brand}/metrics/reports/schedules")
def add_schedule(brand: str, con: Con, form: Form) -> Response:
    from siyu.metrics import reports

    b = con.brand(brand, store.WRITE)
    recipients = [a for a in text_field(form, "recipients").replace(",", " ").split() if a]
    try:
        body = parse(
            reports.ScheduleIn,
            {
                "period": text_field(form, "period"),
                "format": text_field(form, "format") or "xlsx",
                "recipients": recipients,
                "locale": text_field(form, "locale") or con.locale,
            },
        )
        reports.create_schedule(con.db, con.actor, b, body)
    except SiyuError as exc:
        return reports_page(con, b, exc, exc.status)
    return RedirectResponse(f"/b/{b.slug}/metrics/reports", 303)


@router.post("/b/{brand}/metrics/reports/schedules/{schedule}/delete")
def drop_schedule(brand: str, schedule: str, con: Con) -> Response:
    from siyu.metrics import reports

    b = con.brand(brand, store.WRITE)
    reports.delete_schedule(con.db, con.actor, b, schedule)
    return RedirectResponse(f"/b/{b.slug}/metrics/reports", 303)
