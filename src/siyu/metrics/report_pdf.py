"""A client report as a PDF (ReportLab, pure pip: no system libraries, nothing fetched).

The same :class:`~siyu.metrics.reports.Report` and the same sections as the HTML page, in the
same order, on A4 portrait pages: the title (brand, period, generation time), the headline
KPIs against the previous period, the contract status (each contracted KPI's line, distance
to the next line, bonus and a four-band bar with the value's marker), every KPI, the top and
bottom stores and guides, the SOP results with the effect over the holdout, and the trend
(a table with a small bar chart per KPI). Long tables split across pages with their header
row repeated; every page carries a footer with the brand, the period and the page number.

All text is set in ReportLab's built-in CID font ``STSong-Light`` (Adobe-GB1): it covers
Chinese and Latin, needs no font file, and is not embedded — a PDF viewer draws it with its
own Song (宋体) font. Figures are formatted by :func:`siyu.metrics.report_html.fmt` (money is
integer fen shown as yuan) and labels come from the report's own language, as in the HTML.
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from siyu.metrics.report_html import BAND_COLOURS, WIDTH, bands, fmt, ranked, trend_bars

if TYPE_CHECKING:
    from reportlab.platypus import Flowable

    from siyu.metrics.contract_store import KpiStatusOut
    from siyu.metrics.reports import GroupFigure, KpiFigure, Report

FONT = "STSong-Light"
SEP = "  |  "  # between facts on a line (the middle dot is missing from some Song fonts)
INK = "#1d2430"
MUTED = "#6b7685"
RULE = "#dde3ea"
HEAD_BG = "#f3f6fa"
UP, DOWN = "#1a7f37", "#c0392b"
LINE_COLOURS = {"fail": "#b03a2e", "normal": "#9a6b00", "good": "#2e7d32", "excess": "#1b5e20"}
BAR = "#6d8fc7"
MARGIN = 36.0  # points (about 12.7 mm)
BAND_W, BAND_H = 150.0, 12.0  # the contract's four-band bar
SPARK_H = 22.0  # the trend's bars

_registered = False


def _font() -> None:
    """Register the CID font once (ReportLab keeps a process-wide registry)."""
    global _registered
    if not _registered:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
        _registered = True


class _Styles:
    def __init__(self, report: Report) -> None:
        from reportlab.lib.colors import HexColor
        from reportlab.lib.enums import TA_RIGHT
        from reportlab.lib.styles import ParagraphStyle

        # Chinese wraps between any two characters; English only at spaces
        wrap = "CJK" if report.locale.startswith("zh") else None
        base = ParagraphStyle(
            "base", fontName=FONT, fontSize=8, leading=10, textColor=HexColor(INK), wordWrap=wrap
        )
        self.title = ParagraphStyle("title", base, fontSize=18, leading=22, spaceAfter=4)
        self.h2 = ParagraphStyle(
            "h2", base, fontSize=12, leading=15, spaceBefore=12, spaceAfter=5, keepWithNext=1
        )
        self.muted = ParagraphStyle("muted", base, textColor=HexColor(MUTED))
        self.note = ParagraphStyle("note", self.muted, keepWithNext=1)  # a table's subtitle
        self.hint = ParagraphStyle("hint", self.muted, spaceBefore=3)  # under a table
        self.small = ParagraphStyle("small", base, fontSize=6.5, leading=8)
        self.cell = ParagraphStyle("cell", base, fontSize=7.5, leading=9)
        self.num = ParagraphStyle("num", self.cell, alignment=TA_RIGHT)
        self.head = ParagraphStyle("head", self.cell, fontSize=6.5, leading=8)
        self.head_num = ParagraphStyle("head_num", self.head, alignment=TA_RIGHT)


def _p(text: str, style: Any) -> Flowable:
    from reportlab.platypus import Paragraph

    return Paragraph(escape(text), style)


def _coloured(text: str, colour: str, style: Any) -> Flowable:
    from reportlab.platypus import Paragraph

    return Paragraph(f'<font color="{colour}">{escape(text)}</font>', style)


def _table(
    rows: list[list[Any]], widths: list[float], numeric_from: int = 1, extra: Any = ()
) -> Flowable:
    """A table whose first row is the header, repeated on every page it runs onto."""
    from reportlab.lib.colors import HexColor
    from reportlab.platypus import Table, TableStyle

    style = [
        ("FONTNAME", (0, 0), (-1, -1), FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("BACKGROUND", (0, 0), (-1, 0), HexColor(HEAD_BG)),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, HexColor(RULE)),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        *extra,
    ]
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle(style))
    return table


def _change(report: Report, f: KpiFigure, st: _Styles) -> Flowable:
    """The change against the previous period, green when it is for the better."""
    from siyu.metrics.definitions import BY_KEY

    text = fmt(f.change, f.unit)
    if f.change is None or f.change == 0:
        return _p(text, st.num)
    d = BY_KEY.get(f.key)
    better = (f.change > 0) == (d.higher_is_better if d else True)
    return _coloured(("+" if f.change > 0 else "") + text, UP if better else DOWN, st.num)


def _kpi_table(report: Report, figures: list[KpiFigure], st: _Styles, width: float) -> Flowable:
    rest = (width - 190) / 3
    rows: list[list[Any]] = [
        [
            _p(report.t("kpi"), st.head),
            _p(report.t("value"), st.head_num),
            _p(report.t("previous"), st.head_num),
            _p(report.t("change"), st.head_num),
        ]
    ]
    for f in figures:
        rows.append(
            [
                _p(f.name, st.cell),
                _p(fmt(f.value, f.unit), st.num),
                _p(fmt(f.previous, f.unit), st.num),
                _change(report, f, st),
            ]
        )
    return _table(rows, [190, rest, rest, rest])


def band_bar(s: KpiStatusOut, width: float = BAND_W, height: float = BAND_H) -> Any:
    """The contract's four bands (worst on the left, as :func:`report_html.bands` lays them
    out) with the value's marker, as a ReportLab drawing ``width`` × ``height`` points."""
    from reportlab.graphics.shapes import Drawing, Rect
    from reportlab.lib.colors import HexColor

    g = bands(s)
    k = width / WIDTH
    d = Drawing(width, height)
    for r in g["rects"]:
        d.add(
            Rect(
                r["x"] * k,
                1.5,
                r["w"] * k,
                height - 3,
                fillColor=HexColor(BAND_COLOURS[r["line"]]),
                strokeColor=None,
            )
        )
    if g["marker"] is not None:
        x = g["marker"] * k
        d.add(Rect(x - 1, 0, 2, height, fillColor=HexColor(INK), strokeColor=None))
    return d


def _contract(report: Report, st: _Styles, width: float) -> list[Flowable]:
    name = report.t("contract") + (f" — {report.contract.name}" if report.contract else "")
    out: list[Flowable] = [_p(name, st.h2)]
    if report.contract is None:
        return [*out, _p(report.t("no_contract"), st.muted)]
    c = report.contract
    out.append(
        _p(
            f"{c.starts_on.isoformat()} → {(report.contract_end or report.end).isoformat()}{SEP}"
            f"{report.t('factor')} {c.traffic_factor * 100:.0f}%",
            st.note,
        )
    )
    rows: list[list[Any]] = [
        [
            _p(report.t("kpi"), st.head),
            _p(report.t("value"), st.head_num),
            _p(report.t("line"), st.head),
            _p(report.t("to_next"), st.head_num),
            _p(report.t("bands"), st.head),
            _p(report.t("bonus"), st.head_num),
        ]
    ]
    for s in report.statuses:
        unit = report.kpi_unit(s.kpi)
        line = report.t(f"status.{s.line}") if s.line else "—"
        to_next = ""
        if s.next_line:
            to_next = f"{fmt(s.to_next, unit)} → {report.t(f'status.{s.next_line}')}"
        if s.elapsed < 1 and s.projected is not None and s.projected_line:
            pace = f"{report.t('projected')} {fmt(s.projected, unit)} → "
            pace += report.t(f"status.{s.projected_line}")
            to_next = f"{to_next} | {pace}" if to_next else pace
        lines = "  ".join(
            f"{report.t(f'status.{n}')} {fmt(s.effective[n], unit)}"
            for n in ("fail", "normal", "good", "excess")
        )
        rows.append(
            [
                _p(report.kpi_name(s.kpi), st.cell),
                _p(fmt(s.value, unit), st.num),
                _coloured(line, LINE_COLOURS.get(s.line or "", MUTED), st.cell),
                _p(to_next, st.num),
                [band_bar(s), _p(lines, st.small)],
                _p(fmt(s.bonus, "fen"), st.num),
            ]
        )
    rest = width - 100 - 62 - 50 - 80 - (BAND_W + 8)
    out.append(_table(rows, [100, 62, 50, 80, BAND_W + 8, rest]))
    return out


def _groups(
    report: Report,
    st: _Styles,
    width: float,
    first: list[Any],
    groups: list[tuple[Any, GroupFigure]],
) -> Flowable:
    """Per group: the leading columns ``first`` (head, cells), customers and the headline."""
    heads = [h for h, _ in first] + [report.t("customers")]
    heads += [report.kpi_name(k) for k in report.headline]
    lead = len(first)
    rows: list[list[Any]] = [
        [_p(h, st.head if i < lead else st.head_num) for i, h in enumerate(heads)]
    ]
    for cells, g in groups:
        row = [*cells, _p(fmt(g.customers, "count"), st.num)]
        row += [_p(fmt(g.values.get(k), report.kpi_unit(k)), st.num) for k in report.headline]
        rows.append(row)
    if not groups:
        rows.append([_p("—", st.muted)] + [""] * (len(heads) - 1))
    fixed = [w for _, w in first]
    n = len(report.headline) + 1
    col = (width - sum(fixed)) / n
    return _table(rows, [*fixed, *([col] * n)], numeric_from=lead)


def _ranked_table(report: Report, st: _Styles, width: float, what: str) -> list[Flowable]:
    groups = report.stores if what == "store" else report.guides
    items = []
    for rank, mark, g in ranked(report, groups):
        tag = _coloured(f"{rank} {mark}", MUTED, st.cell)
        items.append(([tag, _p(g.label or g.group, st.cell)], g))
    first = [(report.t("rank"), 36.0), (report.t(what), 74.0)]
    return [
        _p(report.t(f"{what}s"), st.h2),
        _groups(report, st, width, first, items),
    ]


def _sops(report: Report, st: _Styles, width: float) -> list[Flowable]:
    items = [([_p(g.label or g.group, st.cell)], g) for g in report.sops]
    out = [
        _p(report.t("sops"), st.h2),
        _groups(report, st, width, [("SOP", 110.0)], items),
    ]
    if not report.effects:
        return out
    rows: list[list[Any]] = [
        [
            _p("SOP", st.head),
            _p(report.t("treated"), st.head_num),
            _p(report.t("holdout"), st.head_num),
            _p(report.t("conversion_treated"), st.head_num),
            _p(report.t("conversion_holdout"), st.head_num),
            _p(report.t("lift"), st.head_num),
            _p(report.t("gmv_lift"), st.head_num),
        ]
    ]
    for e in report.effects:
        name = escape(e.name)
        if e.significant:
            name += f' <font color="{UP}">[{escape(report.t("significant"))}]</font>'
        lift = fmt(e.conversion_diff, "ratio")
        if e.conversion_low is not None:
            lift += f" [{fmt(e.conversion_low, 'ratio')}, {fmt(e.conversion_high, 'ratio')}]"
        gmv = fmt(e.gmv_diff, "fen")
        if e.gmv_low is not None:
            gmv += f" [{fmt(e.gmv_low, 'fen')}, {fmt(e.gmv_high, 'fen')}]"
        from reportlab.platypus import Paragraph

        rows.append(
            [
                Paragraph(name, st.cell),
                _p(fmt(e.treated, "count"), st.num),
                _p(fmt(e.holdout, "count"), st.num),
                _p(fmt(e.conversion_treated, "ratio"), st.num),
                _p(fmt(e.conversion_holdout, "ratio"), st.num),
                _p(lift, st.num),
                _p(gmv, st.num),
            ]
        )
    fixed = [110.0, 45.0, 45.0, 58.0, 58.0, 100.0]
    out += [
        _p(report.t("effect"), st.h2),
        _table(rows, [*fixed, width - sum(fixed)]),
        _p(report.t("effect_hint"), st.hint),
    ]
    return out


def spark(report: Report, key: str, width: float, height: float = SPARK_H) -> Any:
    """The trend of one KPI as small bars (the HTML's :func:`report_html.trend_bars`)."""
    from reportlab.graphics.shapes import Drawing, Line, Rect
    from reportlab.lib.colors import HexColor

    g = trend_bars(report, key)
    kx, ky = width / g["width"], (height - 1) / 40
    d = Drawing(width, height)
    d.add(Line(0, 0.25, width, 0.25, strokeColor=HexColor(RULE), strokeWidth=0.5))
    for b in g["bars"]:
        if b["h"] > 0:
            d.add(
                Rect(
                    b["x"] * kx,
                    0.5,
                    max(0.5, b["w"] * kx),
                    b["h"] * ky,
                    fillColor=HexColor(BAR),
                    strokeColor=None,
                )
            )
    return d


def _trend(report: Report, st: _Styles, width: float) -> list[Flowable]:
    first = 62.0
    n = len(report.headline)
    col = (width - first) / n
    rows: list[list[Any]] = [
        [_p(report.t("from"), st.head)]
        + [_p(report.kpi_name(k), st.head_num) for k in report.headline]
    ]
    for p in report.trend:
        rows.append(
            [_p(p.label, st.cell)]
            + [_p(fmt(p.values.get(k), report.kpi_unit(k)), st.num) for k in report.headline]
        )
    rows.append([""] + [spark(report, k, col - 6) for k in report.headline])
    return [_p(report.t("trend"), st.h2), _table(rows, [first] + [col] * n)]


def render(report: Report) -> bytes:
    """The report as PDF bytes (A4 portrait)."""
    from reportlab.lib.colors import HexColor
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import SimpleDocTemplate

    _font()
    st = _Styles(report)
    title = f"{report.brand_name} — {report.t(f'title.{report.period}')}"
    period = f"{report.start.isoformat()} – {report.end.isoformat()}"
    buf = BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 8,
        title=f"{title} {period}",
        author="Siyu",
        subject=report.t(f"title.{report.period}"),
        creator="Siyu",
        lang=report.locale,
    )
    width = doc.width

    def footer(canvas: Any, d: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(HexColor(MUTED))
        canvas.drawString(MARGIN, MARGIN - 4, f"{title}{SEP}{period}")
        canvas.drawRightString(A4[0] - MARGIN, MARGIN - 4, str(d.page))
        canvas.restoreState()

    figures = {f.key: f for f in report.kpis}
    story: list[Flowable] = [
        _p(title, st.title),
        _p(
            f"{report.t('period')} {report.t(f'period.{report.period}')}{SEP}"
            f"{report.t('from')} {report.start.isoformat()}{SEP}"
            f"{report.t('to')} {report.end.isoformat()}{SEP}"
            f"{report.t('generated_at')} "
            f"{report.generated_at.strftime('%Y-%m-%d %H:%M')} UTC",
            st.muted,
        ),
        _p(report.t("headline"), st.h2),
        _kpi_table(report, [figures[k] for k in report.headline if k in figures], st, width),
        *_contract(report, st, width),
        _p(report.t("kpis"), st.h2),
        _kpi_table(report, report.kpis, st, width),
        *_ranked_table(report, st, width, "store"),
        *_ranked_table(report, st, width, "guide"),
        *_sops(report, st, width),
        *_trend(report, st, width),
    ]
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
