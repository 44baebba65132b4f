"""Client reports: a weekly XLSX checked cell by cell against figures computed here from the
raw story (not from the KPI engine), the HTML page, the PDF (its text read back with pypdf),
``siyu report``, and a scheduled report e-mailed by ``siyu worker`` to a real local SMTP
server."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.core.errors import Invalid
from siyu.core.tenancy import SYSTEM
from siyu.metrics import contract_store, reports
from siyu.metrics.report_xlsx import SHEETS
from tests.test_metrics_kpis import STORY, story  # noqa: F401  (the fixture)

WEEK = (date(2026, 11, 2), date(2026, 11, 8))  # Monday … Sunday
PREVIOUS = (date(2026, 10, 26), date(2026, 11, 1))
TZ = 8  # Asia/Shanghai, no daylight saving


def _at(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["occurred_at"]).astimezone(UTC)


def _bounds(days: tuple[date, date]) -> tuple[datetime, datetime]:
    s = datetime.combine(days[0], datetime.min.time(), UTC) - timedelta(hours=TZ)
    e = datetime.combine(days[1] + timedelta(days=1), datetime.min.time(), UTC) - timedelta(
        hours=TZ
    )
    return s, e


def who(e: dict[str, Any]) -> str:
    return str(e["identifiers"][0]["value"])


def independent(days: tuple[date, date]) -> dict[str, Any]:
    """Diverted customers (first WeCom add in the period) and GMV (orders paid in the period
    while a friend), overall and per home store, straight from the story's events."""
    s, e = _bounds(days)
    store = {
        who(x): x["properties"]["unit_code"]
        for x in STORY
        if x["event_type"] == "customer_upserted"
    }
    added: dict[str, datetime] = {}
    deleted: dict[str, datetime] = {}
    for x in sorted(STORY, key=_at):
        if x["event_type"] == "wecom_contact_added":
            added.setdefault(who(x), _at(x))
        elif x["event_type"].startswith("wecom_contact_deleted") and who(x) in added:
            deleted.setdefault(who(x), _at(x))
    diverted = {c for c, at in added.items() if s <= at < e}
    gmv: dict[str, int] = {}
    for x in STORY:
        c, at = who(x), _at(x)
        if x["event_type"] != "order_paid" or not s <= at < e:
            continue
        if c in added and added[c] <= at and (c not in deleted or at < deleted[c]):
            gmv[store[c]] = gmv.get(store[c], 0) + int(x["properties"]["paid_fen"])
    per_store: dict[str, dict[str, int]] = {}
    for c, code in store.items():
        row = per_store.setdefault(code, {"diverted": 0, "gmv": 0, "customers": 0})
        row["customers"] += 1
        row["diverted"] += c in diverted
    for code, fen in gmv.items():
        per_store[code]["gmv"] = fen
    return {"diverted": len(diverted), "gmv": sum(gmv.values()), "stores": per_store}


def contract(db: Session, brand: Any) -> None:
    # the client committed 1,000 visitors in November and delivered 500: counts and amounts
    # are judged on half their lines
    body = {
        "key": "nov",
        "name": "November",
        "starts_on": "2026-11-01",
        "ends_on": "2026-11-30",
        "kpis": [
            {"kpi": "diverted_customers", "fail": 0, "normal": 2, "good": 4, "excess": 6},
            {"kpi": "gmv", "fail": 0, "normal": 10000, "good": 30000, "excess": 50000},
        ],
        "forecast": [
            {
                "month": "2026-11",
                "channel": "store_qr",
                "committed_traffic": 1000,
                "diversion_rate": 0.1,
                "gmv_per_customer": 10000,
                "delivered_traffic": 500,
            }
        ],
    }
    contract_store.create_contract(
        db, SYSTEM, brand, contract_store.ContractIn.model_validate(body)
    )


def sheet_rows(ws: Any) -> list[list[Any]]:
    return [list(r) for r in ws.iter_rows(values_only=True)]


def test_weekly_xlsx_holds_the_expected_sheets_and_figures(db: Session, story: Any) -> None:  # noqa: F811
    import openpyxl

    contract(db, story)
    built = reports.build(db, SYSTEM, story, "weekly", date(2026, 11, 4), "en")
    assert (built.start, built.end) == WEEK
    assert (built.prev_start, built.prev_end) == PREVIOUS
    data, media, name = reports.render(built, "xlsx")
    assert name == "a-coffee-weekly-2026-11-02.xlsx" and "spreadsheet" in media
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == list(SHEETS)

    now, before = independent(WEEK), independent(PREVIOUS)
    assert now["diverted"] == 2 and now["gmv"] == 20000  # B and C; B's 200.00 order
    summary = {r[0]: r[1] for r in sheet_rows(wb["Summary"]) if r[0]}
    assert summary["From"] == "2026-11-02" and summary["To"] == "2026-11-08"
    assert summary["Contract status"] == "November"
    kpis = {r[1]: r for r in sheet_rows(wb["KPIs"])[1:]}
    assert kpis["diverted_customers"][2] == now["diverted"]
    assert kpis["diverted_customers"][3] == before["diverted"]
    assert kpis["gmv"][2] == pytest.approx(now["gmv"] / 100)  # yuan in the cell
    assert kpis["gmv"][3] == pytest.approx(before["gmv"] / 100)
    assert kpis["gmv"][4] == pytest.approx((now["gmv"] - before["gmv"]) / 100)
    assert wb["KPIs"]["C2"].number_format  # formatted numbers, not text

    stores = {r[1]: r for r in sheet_rows(wb["Stores"])[1:]}
    head = sheet_rows(wb["Stores"])[0]
    col_div = head.index(built.kpi_name("diverted_customers"))
    col_gmv = head.index(built.kpi_name("gmv"))
    assert set(stores) == set(now["stores"])
    for code, want in now["stores"].items():
        assert stores[code][2] == want["customers"]
        assert stores[code][col_div] == want["diverted"]
        assert stores[code][col_gmv] == pytest.approx(want["gmv"] / 100)
    assert str(stores["A-SH01"][3]).startswith("1")  # the week's best store by GMV

    # contract to date (11-01 … 11-08), lines halved by the traffic shortfall: 2 diverted
    # reach the scaled good line (2) — "normal" on the contracted lines; 200.00 GMV sits
    # between the scaled good (150.00) and excess (250.00) lines
    to_date = independent((date(2026, 11, 1), WEEK[1]))
    rows = {r[1]: r for r in sheet_rows(wb["Contract"])[1:] if r[1]}
    div = rows["diverted_customers"]
    assert div[2] == to_date["diverted"] == 2
    assert div[3] == "good" and div[4] == "excess" and div[5] == 1
    assert div[6:10] == [0, 1, 2, 3]
    assert div[10] == pytest.approx(0.5)
    gmv = rows["gmv"]
    assert gmv[2] == pytest.approx(to_date["gmv"] / 100) and gmv[3] == "good"
    assert gmv[6:10] == pytest.approx([0, 50, 150, 250])

    trend = sheet_rows(wb["Trend"])
    assert len(trend) == 1 + 8 and trend[-1][0] == "2026-11-02"
    t_gmv = trend[0].index(built.kpi_name("gmv"))
    assert trend[-1][t_gmv] == pytest.approx(now["gmv"] / 100)
    assert trend[-2][0] == "2026-10-26"


def test_html_report_is_self_contained(db: Session, story: Any) -> None:  # noqa: F811
    contract(db, story)
    built = reports.build(db, SYSTEM, story, "weekly", date(2026, 11, 4), "zh-CN")
    data, media, name = reports.render(built, "html")
    html = data.decode()
    assert media.startswith("text/html") and name.endswith(".html")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "¥200.00" in html  # the week's GMV
    assert html.count("<rect x=") >= 8  # two contracted KPIs, four bands each
    assert "良好" in html and "A 咖啡" in html


def pdf_text(data: bytes) -> tuple[int, list[str]]:
    """(page count, text of each page) of a PDF, read back with pypdf."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), [page.extract_text() for page in reader.pages]


def test_weekly_pdf_holds_the_report(db: Session, story: Any) -> None:  # noqa: F811
    contract(db, story)
    built = reports.build(db, SYSTEM, story, "weekly", date(2026, 11, 4), "zh-CN")
    data, media, name = reports.render(built, "pdf")
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert media == "application/pdf" and name == "a-coffee-weekly-2026-11-02.pdf"
    assert b"/STSong-Light" in data and b"/FontFile" not in data  # the CID font, not embedded
    pages, texts = pdf_text(data)
    text = "\n".join(texts)
    assert 1 <= pages <= 4
    assert texts[0].startswith("A 咖啡 — 周报")  # the Chinese title round-trips
    assert "2026-11-02" in text and "2026-11-08" in text and "UTC" in text
    for label in ("核心指标", "合同达成 — November", "SOP 效果", "良好"):
        assert label in text, label
    assert "¥200.00" in text  # the week's GMV (20,000 fen), as the HTML shows it
    assert "¥0.00" in text  # the GMV of the week before
    # the contract's lines to date, scaled by the traffic factor: GMV's good line ¥150.00,
    # excess ¥250.00 (¥50.00 to go); the four-band bars are drawn, not text
    assert "¥150.00" in text and "¥250.00" in text and "¥50.00 → 超额" in text
    assert "静安店" in text and "A.GUIDE" in text  # the stores and guides tables

    en = reports.build(db, SYSTEM, story, "weekly", date(2026, 11, 4), "en")
    _, texts = pdf_text(reports.render(en, "pdf")[0])
    text = "\n".join(texts)
    assert texts[0].startswith("A 咖啡 — Weekly report")
    for label in ("Headline figures", "Contract status — November", "All KPIs", "Trend"):
        assert label in text, label
    assert "¥200.00" in text and "good" in text


def test_pdf_tables_split_across_pages_with_their_header(db: Session, story: Any) -> None:  # noqa: F811
    built = reports.build(db, SYSTEM, story, "monthly", date(2026, 11, 4), "en")
    values = {k: 0.25 if built.kpi_unit(k) == "ratio" else 12345 for k in reports.HEADLINE}
    built.sops = [  # far more SOPs than a page holds
        reports.GroupFigure(f"sop{i:03d}", f"SOP number {i:03d}", i, dict(values))
        for i in range(120)
    ]
    pages, texts = pdf_text(reports.render(built, "pdf")[0])
    assert pages >= 3
    holding = [i for i, t in enumerate(texts) if "SOP number" in t]
    assert len(holding) >= 2  # the SOP table runs over more than one page …
    for i in holding:  # … and each page it is on starts it with the header row
        head = texts[i].index("Churn rate")
        assert "Customers" in texts[i][:head] and head < texts[i].index("SOP number")
    rows = [line for t in texts for line in t.splitlines() if line.startswith("SOP number")]
    assert len(rows) == 120  # no row lost or doubled at a page break
    assert "SOP number 119" in texts[holding[-1]]


def test_pdf_is_refused_cleanly_without_reportlab(
    db: Session,
    story: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    built = reports.build(db, SYSTEM, story, "daily", date(2026, 11, 4))
    assert (built.start, built.end) == (date(2026, 11, 4), date(2026, 11, 4))
    assert reports.pdf_available()
    monkeypatch.setitem(sys.modules, "reportlab", None)  # import reportlab → ImportError
    assert not reports.pdf_available()
    with pytest.raises(Invalid) as exc:
        reports.render(built, "pdf")
    assert exc.value.code == "metrics.pdf_unavailable"


def test_periods() -> None:
    assert reports.period_bounds("monthly", date(2026, 2, 14)) == (
        date(2026, 2, 1),
        date(2026, 2, 28),
    )
    assert reports.last_complete("weekly", date(2026, 12, 4)) == date(2026, 11, 29)
    assert reports.last_complete("monthly", date(2026, 12, 4)) == date(2026, 11, 30)
    assert reports.last_complete("daily", date(2026, 12, 4)) == date(2026, 12, 3)
    # the next send: 08:00 Shanghai (00:00 UTC) the day after the period
    after = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # Friday 09:00 in Shanghai
    assert reports.next_run("daily", "Asia/Shanghai", after) == datetime(
        2026, 12, 5, 0, 0, tzinfo=UTC
    )
    assert reports.next_run("weekly", "Asia/Shanghai", after) == datetime(
        2026, 12, 7, 0, 0, tzinfo=UTC
    )
    assert reports.next_run("monthly", "Asia/Shanghai", after) == datetime(
        2027, 1, 1, 0, 0, tzinfo=UTC
    )
    early = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 07:00 in Shanghai: today's send is ahead
    assert reports.next_run("daily", "Asia/Shanghai", early) == datetime(
        2026, 12, 4, 0, 0, tzinfo=UTC
    )


def test_cli_writes_the_report(db: Session, story: Any, tmp_path: Any) -> None:  # noqa: F811
    import openpyxl
    from typer.testing import CliRunner

    from siyu.cli.main import app

    out = tmp_path / "week.xlsx"
    args = ["report", "--brand", "a-coffee", "--period", "weekly", "--format", "xlsx"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--date", "2026-11-04"])
    assert result.exit_code == 0, result.output
    assert "2026-11-02" in result.output
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == list(SHEETS)
    bad = CliRunner().invoke(app, [*args, "--out", str(out), "--date", "04/11/2026"])
    assert bad.exit_code == 2
    out = tmp_path / "week.pdf"
    pdf = CliRunner().invoke(
        app, [*args[:-1], "pdf", "--out", str(out), "--date", "2026-11-04", "--lang", "en"]
    )
    assert pdf.exit_code == 0, pdf.output
    assert "(pdf, " in pdf.output
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    _, texts = pdf_text(data)
    assert texts[0].startswith("A 咖啡 — Weekly report") and "¥200.00" in "".join(texts)


# ---------------------------------------------------------------- scheduled, e-mailed


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Inbox]:
    import socket

    from aiosmtpd.controller import Controller

    from siyu.core.settings import reset_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SIYU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SIYU_SMTP_PORT", str(port))
    monkeypatch.setenv("SIYU_SMTP_STARTTLS", "false")
    monkeypatch.setenv("SIYU_SMTP_FROM", "reports@agency.test")
    reset_settings()
    try:
        yield inbox
    finally:
        controller.stop()


def test_scheduled_weekly_report_is_mailed_once(
    db: Session,
    story: Any,  # noqa: F811
    engine: Engine,
    smtp: _Inbox,
) -> None:
    import email.header

    import openpyxl

    from siyu import jobs
    from siyu.core.db import session_factory
    from siyu.metrics.models import ReportRun, ReportSchedule

    schedule = reports.create_schedule(
        db,
        SYSTEM,
        story,
        reports.ScheduleIn(
            period="weekly", recipients=["client@brand.test", "am@agency.test"], locale="en"
        ),
    )
    assert schedule.next_run_at > datetime.now(UTC)
    assert reports.list_schedules(db, SYSTEM, story)[0].id == schedule.id
    factory = session_factory(engine)
    assert jobs.run_once(factory)["metrics.reports"] == 0  # not due yet
    db.rollback()  # a fresh snapshot before writing after the worker's connection
    db.execute(
        update(ReportSchedule)
        .where(ReportSchedule.id == schedule.id)
        .values(next_run_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    db.commit()
    done = jobs.run_once(factory)
    assert done["metrics.reports"] == 1 and done["channels.outbox"] == 2
    assert sorted(e.rcpt_tos[0] for e in smtp.envelopes) == ["am@agency.test", "client@brand.test"]
    mail = email.message_from_bytes(smtp.envelopes[0].content)
    subject = str(email.header.make_header(email.header.decode_header(mail["Subject"])))
    assert subject.startswith("A 咖啡 weekly report")
    parts = {p.get_content_type(): p for p in mail.walk()}
    assert "text/html" in parts
    xlsx = parts["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"]
    wb = openpyxl.load_workbook(io.BytesIO(xlsx.get_payload(decode=True)))
    assert wb.sheetnames == list(SHEETS)
    db.rollback()
    run = db.scalar(select(ReportRun).where(ReportRun.schedule_id == schedule.id))
    assert run is not None and run.status == "done" and run.period == "weekly"
    assert run.ends_on - run.starts_on == timedelta(days=6) and run.starts_on.weekday() == 0
    # forced due again for the same week: nothing is sent twice
    db.rollback()
    db.execute(
        update(ReportSchedule)
        .where(ReportSchedule.id == schedule.id)
        .values(next_run_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    db.commit()
    again = jobs.run_once(factory)
    assert again["metrics.reports"] == 1 and again["channels.outbox"] == 0
    assert len(smtp.envelopes) == 2
    reports.delete_schedule(db, SYSTEM, story, schedule.id)
    assert reports.list_schedules(db, SYSTEM, story) == []


def test_contract_status_and_reports_over_http(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    import openpyxl

    from tests.factories import api_key

    contract(db, story)
    h = {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'metrics.read')}"}
    base = "/api/v1/brands/a-coffee"
    r = client.get(f"{base}/contracts/nov/status?end=2026-11-08", headers=h)
    assert r.status_code == 200, r.text
    got = {s["kpi"]: s for s in r.json()}
    # 11-01 … 11-08: B and C diverted (2), against lines halved by the shortfall (1 / 2 / 3)
    assert got["diverted_customers"]["value"] == 2 and got["diverted_customers"]["line"] == "good"
    assert got["diverted_customers"]["lines"]["good"] == 4  # as contracted
    assert got["diverted_customers"]["effective"]["good"] == 2  # as judged
    assert got["gmv"]["value"] == 20000 and got["gmv"]["line"] == "good"
    r = client.get(f"{base}/reports/weekly?format=xlsx&day=2026-11-04", headers=h)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == (
        'attachment; filename="a-coffee-weekly-2026-11-02.xlsx"'
    )
    assert openpyxl.load_workbook(io.BytesIO(r.content)).sheetnames == list(SHEETS)
    html = client.get(f"{base}/reports/monthly?format=html&day=2026-11-04&lang=en", headers=h)
    assert html.status_code == 200 and "Monthly report" in html.text
    assert "¥350.00" in html.text  # November's GMV: 35,000 fen (the KPI tests' hand count)
    pdf = client.get(f"{base}/reports/monthly?format=pdf&day=2026-11-04&lang=en", headers=h)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == (
        'attachment; filename="a-coffee-monthly-2026-11-01.pdf"'
    )
    assert pdf.content.startswith(b"%PDF-")
    _, texts = pdf_text(pdf.content)
    assert "Monthly report" in texts[0] and "¥350.00" in "".join(texts)


def test_notable_sop_results_carry_the_effect_over_the_holdout(db: Session, world: Any) -> None:
    import openpyxl

    from tests.test_metrics_attribution import world_with_sop

    brand, _ = world_with_sop(db, uplift=True)
    built = reports.build(db, SYSTEM, brand, "monthly", date(2026, 11, 20), "en")
    (effect,) = built.effects
    assert effect.sop == "nudge" and effect.treated + effect.holdout == 400
    assert 150 < effect.holdout < 250  # the SOP keeps a 50% holdout
    # the SOP works in this world: the conversion lift's interval lies above zero
    assert effect.conversion_low is not None and effect.conversion_low > 0
    assert effect.significant
    wb = openpyxl.load_workbook(io.BytesIO(reports.render(built, "xlsx")[0]))
    cells = [c for row in wb["SOPs"].iter_rows(values_only=True) for c in row]
    assert "SOP effect over the holdout" in cells and "唤醒" in cells
    html = reports.render(built, "html")[0].decode()
    assert 'data-sop="nudge"' in html and "significant" in html
    _, texts = pdf_text(reports.render(built, "pdf")[0])
    text = "\n".join(texts)
    assert "SOP effect over the holdout" in text and "唤醒 [significant]" in text


def test_a_pdf_schedule_mails_the_pdf(db: Session, story: Any) -> None:  # noqa: F811
    import base64

    body = reports.ScheduleIn(period="weekly", format="pdf", recipients=["c@brand.test"])
    assert reports.create_schedule(db, SYSTEM, story, body).format == "pdf"
    built = reports.build(db, SYSTEM, story, "weekly", date(2026, 11, 4), "en")
    content = reports._mail(built, "pdf", "<html></html>")
    (attached,) = content["attachments"]
    assert attached["content_type"] == "application/pdf"
    assert attached["filename"] == "a-coffee-weekly-2026-11-02.pdf"
    assert base64.b64decode(attached["data"]).startswith(b"%PDF-")
    assert "attachments" not in reports._mail(built, "html", "<html></html>")
