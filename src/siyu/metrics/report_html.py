"""A client report as one self-contained HTML page: inline CSS, inline SVG for the contract's
four bands and the trend, no script and nothing fetched — it can be mailed as is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, StrictUndefined, select_autoescape

from siyu.core.money import format_fen

if TYPE_CHECKING:
    from siyu.metrics.contract_store import KpiStatusOut
    from siyu.metrics.reports import Report

BAND_COLOURS = {"fail": "#f3c4c4", "normal": "#f7e3b0", "good": "#cfe8c8", "excess": "#9fd4a0"}
WIDTH, HEIGHT = 360, 28


def fmt(value: float | int | None, unit: str) -> str:
    """A figure for people: 19.0%, ¥1,234.50, 1,234, 4.20, 12.5."""
    if value is None:
        return "—"
    if unit in ("ratio", "rate"):
        return f"{float(value) * 100:.1f}%"
    if unit in ("fen", "amount"):
        return format_fen(round(float(value)))
    if unit == "count":
        return f"{int(value):,}"
    if unit == "score":
        return f"{float(value):.2f}"
    return f"{float(value):,.1f}"


def bands(s: KpiStatusOut) -> dict[str, Any]:
    """Geometry of the four bands (worst on the left) and the value's marker."""
    sign = 1.0 if s.direction == "higher" else -1.0
    e = s.effective
    lo = sign * e["fail"]
    top = sign * e["excess"] + max(sign * (e["excess"] - e["good"]), abs(sign * e["excess"]) * 0.1)
    if s.value is not None:
        lo = min(lo, sign * s.value)
        top = max(top, sign * s.value * 1.02)
    span = (top - lo) or 1.0

    def x(v: float) -> float:
        return round((sign * v - lo) / span * WIDTH, 1)

    edges = [
        ("fail", x(e["fail"]), x(e["normal"])),
        ("normal", x(e["normal"]), x(e["good"])),
        ("good", x(e["good"]), x(e["excess"])),
        ("excess", x(e["excess"]), float(WIDTH)),
    ]
    rects = [
        {"line": name, "x": a, "w": max(0.0, b - a), "fill": BAND_COLOURS[name]}
        for name, a, b in edges
    ]
    marker = None if s.value is None else min(float(WIDTH), max(0.0, x(s.value)))
    return {"rects": rects, "marker": marker, "width": WIDTH, "height": HEIGHT}


def trend_bars(report: Report, key: str) -> dict[str, Any]:
    values = [p.values.get(key) for p in report.trend]
    nums = [float(v) for v in values if v is not None]
    peak = max(nums) if nums else 0.0
    n = max(1, len(values))
    step = WIDTH / n
    bars = []
    for i, v in enumerate(values):
        h = 0.0 if v is None or peak <= 0 else float(v) / peak * 40
        bars.append({"x": round(i * step + 2, 1), "w": round(step - 4, 1), "h": round(h, 1)})
    return {"bars": bars, "width": WIDTH, "height": 44}


TEMPLATE = Path(__file__).with_name("templates") / "report.html"

_env = Environment(
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_template = _env.from_string(TEMPLATE.read_text(encoding="utf-8"))


def ranked(report: Report, groups: list[Any]) -> list[tuple[int, str, Any]]:
    """The top and bottom five (all of them when there are ten or fewer)."""
    n = len(groups)
    out = []
    for i, g in enumerate(groups, start=1):
        if i <= 5:
            out.append((i, report.t("top"), g))
        elif i > n - 5:
            out.append((i, report.t("bottom"), g))
    return out


def render(report: Report) -> str:
    figures = {f.key: f for f in report.kpis}
    headline = [figures[k] for k in report.headline if k in figures]
    return _template.render(
        r=report,
        headline=headline,
        fmt=fmt,
        bands=bands,
        trend_bars=trend_bars,
        top_stores=ranked(report, report.stores),
        top_guides=ranked(report, report.guides),
    )
