"""A client report as an XLSX workbook (openpyxl).

Sheets: ``Summary``, ``KPIs``, ``Contract``, ``Stores``, ``Guides``, ``SOPs``, ``Trend`` (the
sheet names stay English in every language, so that formulas and scripts of the client can
rely on them; headings follow the report's language). Cells hold numbers, never text: rates
are fractions shown as percentages, money is yuan (fen / 100) shown with two decimals,
counts are integers. An empty value is an empty cell.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from siyu.metrics.reports import GroupFigure, Report

SHEETS = ("Summary", "KPIs", "Contract", "Stores", "Guides", "SOPs", "Trend")
FORMATS = {
    "ratio": "0.0%",
    "rate": "0.0%",
    "fen": "#,##0.00",
    "amount": "#,##0.00",
    "count": "#,##0",
    "score": "0.00",
    "minutes": "0.0",
}


def cell_value(value: float | int | None, unit: str) -> float | int | None:
    """The number written to a cell: fen become yuan; everything else as is."""
    if value is None:
        return None
    if unit in ("fen", "amount"):
        return round(float(value) / 100, 2)
    if unit == "count":
        return int(value)
    return float(value)


def _put(ws: Any, row: int, col: int, value: Any, unit: str | None = None) -> None:
    c = ws.cell(row=row, column=col)
    if unit is None:
        c.value = value
        return
    c.value = cell_value(value, unit)
    c.number_format = FORMATS.get(unit, "General")


def _header(ws: Any, titles: list[str]) -> None:
    from openpyxl.styles import Font, PatternFill

    bold, fill = Font(bold=True), PatternFill("solid", fgColor="E8EEF7")
    for i, title in enumerate(titles, start=1):
        c = ws.cell(row=1, column=i, value=title)
        c.font, c.fill = bold, fill
    ws.freeze_panes = "A2"
    for i in range(1, len(titles) + 1):
        ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = 16


def _groups(ws: Any, report: Report, groups: list[GroupFigure], what: str) -> None:
    heads = [report.t(what), report.t("code"), report.t("customers"), report.t("rank")]
    _header(ws, heads + [report.kpi_name(k) for k in report.headline])
    n = len(groups)
    for r, g in enumerate(groups, start=2):
        rank = r - 1
        mark = ""
        if rank <= 5:
            mark = report.t("top")
        elif rank > n - 5:
            mark = report.t("bottom")
        _put(ws, r, 1, g.label or g.group)
        _put(ws, r, 2, g.group)
        _put(ws, r, 3, g.customers, "count")
        _put(ws, r, 4, f"{rank} {mark}".strip())
        for i, key in enumerate(report.headline, start=5):
            _put(ws, r, i, g.values.get(key), report.kpi_unit(key))


def _effects(ws: Any, report: Report, top: int) -> None:
    """Each SOP's effect over its holdout, under the SOP table."""
    from openpyxl.styles import Font

    ws.cell(row=top, column=1, value=report.t("effect")).font = Font(bold=True)
    heads = [
        "sop",
        "treated",
        "holdout",
        "conversion_treated",
        "conversion_holdout",
        "lift",
        "ci_low",
        "ci_high",
        "gmv_lift",
        "gmv_ci_low",
        "gmv_ci_high",
    ]
    for i, key in enumerate(heads, start=1):
        ws.cell(row=top + 1, column=i, value=report.t(key)).font = Font(bold=True)
    for r, e in enumerate(report.effects, start=top + 2):
        _put(ws, r, 1, e.name)
        _put(ws, r, 2, e.treated, "count")
        _put(ws, r, 3, e.holdout, "count")
        for i, v in enumerate(
            (e.conversion_treated, e.conversion_holdout, e.conversion_diff),
            start=4,
        ):
            _put(ws, r, i, v, "ratio")
        _put(ws, r, 7, e.conversion_low, "ratio")
        _put(ws, r, 8, e.conversion_high, "ratio")
        _put(ws, r, 9, e.gmv_diff, "fen")
        _put(ws, r, 10, e.gmv_low, "fen")
        _put(ws, r, 11, e.gmv_high, "fen")


def render(report: Report) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Summary"
    rows: list[tuple[str, Any]] = [
        (report.t("brand"), f"{report.brand_name} ({report.brand_slug})"),
        (report.t("period"), report.t(f"period.{report.period}")),
        (report.t("from"), report.start.isoformat()),
        (report.t("to"), report.end.isoformat()),
        (report.t("generated_at"), report.generated_at.strftime("%Y-%m-%d %H:%M UTC")),
        (report.t("contract"), report.contract.name if report.contract else "—"),
    ]
    for r, (label, value) in enumerate(rows, start=1):
        ws.cell(row=r, column=1, value=label).font = Font(bold=True)
        ws.cell(row=r, column=2, value=value)
    r = len(rows) + 2
    ws.cell(row=r, column=1, value=report.t("headline")).font = Font(bold=True)
    figures = {f.key: f for f in report.kpis}
    for key in report.headline:
        r += 1
        f = figures.get(key)
        ws.cell(row=r, column=1, value=report.kpi_name(key))
        _put(ws, r, 2, f.value if f else None, report.kpi_unit(key))
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 28

    ws = wb.create_sheet("KPIs")
    _header(
        ws,
        [
            report.t("kpi"),
            report.t("key"),
            report.t("value"),
            report.t("previous"),
            report.t("change"),
        ],
    )
    for r, f in enumerate(report.kpis, start=2):
        _put(ws, r, 1, f.name)
        _put(ws, r, 2, f.key)
        _put(ws, r, 3, f.value, f.unit)
        _put(ws, r, 4, f.previous, f.unit)
        _put(ws, r, 5, f.change, f.unit)

    ws = wb.create_sheet("Contract")
    _header(
        ws,
        [
            report.t("kpi"),
            report.t("key"),
            report.t("value"),
            report.t("line"),
            report.t("next_line"),
            report.t("to_next"),
            report.t("line_fail"),
            report.t("line_normal"),
            report.t("line_good"),
            report.t("line_excess"),
            report.t("factor"),
            report.t("bonus"),
            report.t("projected"),
            report.t("projected_line"),
        ],
    )
    for r, s in enumerate(report.statuses, start=2):
        unit = report.kpi_unit(s.kpi)
        _put(ws, r, 1, report.kpi_name(s.kpi))
        _put(ws, r, 2, s.kpi)
        _put(ws, r, 3, s.value, unit)
        _put(ws, r, 4, report.t(f"status.{s.line}") if s.line else "—")
        _put(ws, r, 5, report.t(f"status.{s.next_line}") if s.next_line else "")
        _put(ws, r, 6, s.to_next, unit)
        for i, name in enumerate(("fail", "normal", "good", "excess"), start=7):
            _put(ws, r, i, s.effective[name], unit)
        _put(ws, r, 11, s.factor, "ratio")
        _put(ws, r, 12, s.bonus, "fen")
        if s.elapsed < 1 and s.projected is not None:
            _put(ws, r, 13, s.projected, unit)
            _put(ws, r, 14, report.t(f"status.{s.projected_line}") if s.projected_line else "")
    if report.contract is not None:
        r = len(report.statuses) + 3
        ws.cell(row=r, column=1, value=report.contract.name).font = Font(bold=True)
        ws.cell(
            row=r,
            column=2,
            value=f"{report.contract.starts_on.isoformat()} → "
            f"{(report.contract_end or report.end).isoformat()}",
        )

    _groups(wb.create_sheet("Stores"), report, report.stores, "store")
    _groups(wb.create_sheet("Guides"), report, report.guides, "guide")
    ws = wb.create_sheet("SOPs")
    _groups(ws, report, report.sops, "sop")
    _effects(ws, report, len(report.sops) + 3)

    ws = wb.create_sheet("Trend")
    _header(ws, [report.t("from"), report.t("to")] + [report.kpi_name(k) for k in report.headline])
    for r, p in enumerate(report.trend, start=2):
        _put(ws, r, 1, p.start.isoformat())
        _put(ws, r, 2, p.end.isoformat())
        for i, key in enumerate(report.headline, start=3):
            _put(ws, r, i, p.values.get(key), report.kpi_unit(key))

    out = BytesIO()
    wb.save(out)
    return out.getvalue()
