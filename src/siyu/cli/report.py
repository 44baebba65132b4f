"""``siyu report``: a brand's client report written to a file.

siyu report --brand demo-coffee --period weekly --format xlsx --out week.xlsx
siyu report --brand demo-coffee --period monthly --format html --out nov.html --date 2026-11-15
siyu report --brand demo-coffee --period weekly --format pdf --out week.pdf --lang en
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import typer

from siyu.cli.common import BrandOpt, DataDir, handled, locale, session
from siyu.cli.org import CLI
from siyu.org.queries import access_brand


@handled
def report(
    brand: BrandOpt,
    out: Annotated[Path, typer.Option("--out", help="File to write.", dir_okay=False)],
    period: Annotated[
        Literal["daily", "weekly", "monthly"], typer.Option("--period", help="Report period.")
    ] = "weekly",
    fmt: Annotated[
        Literal["xlsx", "html", "pdf"],
        typer.Option("--format", help="xlsx, html (self-contained) or pdf (A4)."),
    ] = "xlsx",
    day: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="A day (YYYY-MM-DD) in the period to report; default: the last complete "
            "period (yesterday, last Monday–Sunday week, last month; brand time zone).",
        ),
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="zh-CN or en (default: SIYU_LANG / LANG).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Generate a daily, weekly or monthly client report (KPIs against the previous period,
    contract status with its four lines, top and bottom stores and guides, SOP results,
    trend) as XLSX, HTML or PDF."""
    from siyu.core.errors import Invalid
    from siyu.metrics import reports

    when: date | None = None
    if day:
        try:
            when = date.fromisoformat(day)
        except ValueError:
            raise Invalid("validation.failed", reason=f"--date: not a date: {day!r}") from None
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "metrics.read")
        built = reports.build(db, CLI, b, period, when, lang or locale())
        data, _media, _name = reports.render(built, fmt)
    out.write_bytes(data)
    typer.echo(
        f"{period} report {built.start.isoformat()}…{built.end.isoformat()} "
        f"({fmt}, {len(data):,} bytes) → {out}"
    )
