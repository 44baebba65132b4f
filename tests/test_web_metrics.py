"""The KPI dashboards, contract and report pages over HTTP, on the hand-built story of
``test_metrics_kpis``: a store manager's pages show only their store and list only its
customers (acceptance 5); contracts are created and edited with clear errors."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.orm import Session

from tests.factories import login
from tests.test_metrics_kpis import PHONE, story  # noqa: F401  (the fixture)

B = "/b/a-coffee/metrics"
NOV = "start=2026-11-01&end=2026-11-30"


def groups(html: str, table: str) -> list[str]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-group="([^"]+)"', body)


def behind(html: str) -> int:
    m = re.search(r'id="behind" data-total="(\d+)"', html)
    assert m, html[:2000]
    return int(m.group(1))


def test_store_manager_sees_only_their_store(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    login(client, "a.sh01mgr")
    r = client.get(f"{B}?{NOV}")
    assert r.status_code == 200, r.text
    assert 'data-scoped="1"' in r.text
    # SH01's customers: A, B, G; diverted in November: B and G
    assert "共 3 位客户" in r.text
    card = r.text.split('data-kpi="diverted_customers"', 1)[1].split("</div>\n    </div>", 1)[0]
    assert ">2</a>" in card
    regions = client.get(f"{B}/drill?level=region&{NOV}").text
    assert groups(regions, "drill-table") == ["A-EAST"]
    stores = client.get(f"{B}/drill?level=store&parent=A-EAST&{NOV}").text
    assert groups(stores, "drill-table") == ["A-SH01"]
    # another region's stores: nothing, not even an empty row for them
    assert (
        groups(client.get(f"{B}/drill?level=store&parent=A-SOUTH&{NOV}").text, "drill-table") == []
    )
    # the customers behind SH01's "diverted" number: B and G, phones masked
    page = client.get(
        f"{B}/customers?kpi=diverted_customers&group_by=store&group=A-SH01&{NOV}"
    ).text
    assert behind(page) == 2
    assert "139****0002" in page and "139****0007" in page
    assert PHONE["B"] not in page
    # asking for a store outside the scope lists nobody (C was diverted in SH02)
    other = client.get(f"{B}/customers?kpi=diverted_customers&group_by=store&group=A-SH02&{NOV}")
    assert other.status_code == 200 and behind(other.text) == 0
    brand_wide = client.get(f"{B}/customers?kpi=diverted_customers&{NOV}").text
    assert behind(brand_wide) == 2 and "139****0003" not in brand_wide
    # a cohort cell lists only their customers too: November's cohort is B, C, G brand-wide
    cohort = client.get(f"{B}/cohorts/customers?month=2026-11&measure=size&{NOV}").text
    assert behind(cohort) == 2 and "139****0003" not in cohort
    # the leaderboard: only guides of their customers
    board = client.get(f"{B}/leaderboard?kpi=gmv&{NOV}").text
    assert len(groups(board, "leaderboard")) == 1 and "A.GUIDE" in board
    # contracts are readable, not writable
    assert client.get(f"{B}/contracts").status_code == 200
    token = client.cookies.get("siyu_csrf")
    denied = client.post(f"{B}/contracts", data={"csrf_token": token, "definition": "{}"})
    assert denied.status_code == 403


def test_admin_drills_region_store_guide_down_to_customers(
    client: Any,
    db: Session,
    story: Any,  # noqa: F811
) -> None:
    login(client, "a.admin")
    r = client.get(f"{B}?{NOV}")
    assert r.status_code == 200 and 'data-scoped="1"' not in r.text
    assert "共 7 位客户" in r.text
    regions = client.get(f"{B}/drill?level=region&{NOV}").text
    assert sorted(groups(regions, "drill-table")) == ["A-EAST", "A-SOUTH"]
    assert "level=store&amp;parent=A-EAST" in regions
    stores = client.get(f"{B}/drill?level=store&parent=A-EAST&{NOV}").text
    assert sorted(groups(stores, "drill-table")) == ["A-SH01", "A-SH02"]
    guides = client.get(f"{B}/drill?level=guide&parent=A-SH01&{NOV}").text
    assert "A.GUIDE" in guides
    # every number is a link to its customers: follow SH02's diverted count (C)
    link = re.search(r'data-kpi="diverted_customers" data-group="A-SH02" href="([^"]+)"', stores)
    assert link, stores
    page = client.get(link.group(1).replace("&amp;", "&")).text
    assert behind(page) == 1 and "139****0003" in page
    # the churn denominator (friends on 11-01: A, E, F)
    den = client.get(f"{B}/customers?kpi=churn_rate&side=denominator&{NOV}").text
    assert behind(den) == 3
    cohorts = client.get(f"{B}/cohorts?start=2026-08-01&{NOV[-14:]}")
    assert cohorts.status_code == 200
    # every cohort cell is a link to its customers (November's cohort: B, C and G)
    cell = re.search(r'href="(/b/a-coffee/metrics/cohorts/customers\?[^"]*month=2026-11[^"]*)"',
                     cohorts.text)  # fmt: skip
    assert cell, cohorts.text[:3000]
    page = client.get(cell.group(1).replace("&amp;", "&")).text
    assert behind(page) == 3 and "139****0002" in page and "139****0003" in page
    assert "data-links=" in cohorts.text
    assert client.get(f"{B}/channels?{NOV}").status_code == 200
    # KOC: the customers a note brought are behind the number too (B, from N-A on 11-02)
    from tests.test_metrics_kpis import koc_notes

    koc_notes(db, story)
    koc = client.get(f"{B}/customers?kpi=koc_customers_brought&{NOV}").text
    assert behind(koc) == 1 and "139****0002" in koc
    bad = client.get(f"{B}?start=2026-12-01&end=2026-11-01")
    assert bad.status_code == 422


def test_contracts_in_the_console(client: Any, db: Session, story: Any) -> None:  # noqa: F811
    headers = login(client, "a.admin")
    token = headers["X-CSRF-Token"]
    body = {
        "key": "nov",
        "name": "November",
        "starts_on": "2026-11-01",
        "ends_on": "2026-11-30",
        "kpis": [{"kpi": "diversion_rate", "fail": 0, "normal": 0.25, "good": 0.2, "excess": 0.3}],
    }
    r = client.post(f"{B}/contracts", data={"csrf_token": token, "definition": json.dumps(body)})
    assert r.status_code == 422
    assert 'data-code="metrics.lines_not_monotonic"' in r.text
    assert "diversion_rate.good" in r.text
    assert "&#34;normal&#34;: 0.25" in r.text or '"normal": 0.25' in r.text  # kept as typed
    r = client.post(f"{B}/contracts", data={"csrf_token": token, "definition": "{oops"})
    assert r.status_code == 422 and 'data-code="validation.failed"' in r.text
    body["kpis"] = [
        {"kpi": "diversion_rate", "fail": 0, "normal": 0.05, "good": 0.2, "excess": 0.25},
        {"kpi": "diverted_customers", "fail": 0, "normal": 2, "good": 4, "excess": 6},
    ]
    r = client.post(
        f"{B}/contracts",
        data={"csrf_token": token, "definition": json.dumps(body)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("/contracts/nov?done=created")
    page = client.get(f"{B}/contracts/nov").text
    # November's diversion rate: 3 of 4 = 75% → excess; 3 diverted: normal (lines 2 / 4 / 6)
    assert re.search(r'data-kpi="diversion_rate" data-line="excess"', page)
    assert re.search(r'data-kpi="diverted_customers" data-line="normal"', page)
    assert page.count('class="chart chart-band"') == 2
    # the client delivered half its traffic: the count lines halve (1 / 2 / 3) → excess
    body["forecast"] = [
        {
            "month": "2026-11",
            "channel": "qr",
            "committed_traffic": 100,
            "diversion_rate": 0.1,
            "delivered_traffic": 50,
        }
    ]
    r = client.post(
        f"{B}/contracts/nov",
        data={"csrf_token": token, "definition": json.dumps(body)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get(f"{B}/contracts/nov").text
    assert re.search(r'data-kpi="diverted_customers" data-line="excess"', page)
    assert 'data-factor="0.5"' in page
    overview = client.get(f"{B}?{NOV}").text
    assert 'data-line="excess"' in overview
    # a contract still running: its count KPIs show where the pace so far would end
    long = {**body, "key": "long", "name": "Long", "ends_on": "2036-10-31", "forecast": []}
    long["kpis"] = [{"kpi": "diverted_customers", "fail": 0, "normal": 100, "good": 200,
                     "excess": 300}]  # fmt: skip
    r = client.post(
        f"{B}/contracts",
        data={"csrf_token": token, "definition": json.dumps(long)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    running = client.get(f"{B}/contracts/long").text
    assert re.search(r'data-kpi="diverted_customers" data-line="fail"', running)
    assert "data-projected=" in running and "按当前进度预计" in running
    # the lines form: rates typed in percent, a KPI added, a mistake kept on screen
    form = {
        "csrf_token": token,
        "kpi_0": "diversion_rate", "direction_0": "higher",
        "fail_0": "0", "normal_0": "5", "good_0": "20", "excess_0": "80",
        "kpi_1": "diverted_customers", "direction_1": "higher",
        "fail_1": "0", "normal_1": "2", "good_1": "4", "excess_1": "6",
        "kpi_new": "gmv", "fail_new": "0", "normal_new": "100", "good_new": "300",
        "excess_new": "200",
    }  # fmt: skip
    r = client.post(f"{B}/contracts/nov/lines", data=form)
    assert r.status_code == 422 and 'data-code="metrics.lines_not_monotonic"' in r.text
    assert '<tr data-kpi="gmv" class="has-error">' in r.text
    assert 'name="excess_2" value="200"' in r.text  # what was typed stays
    form["excess_new"] = "500"
    r = client.post(f"{B}/contracts/nov/lines", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    saved = {k["kpi"]: k for k in store_json(client, token)["kpis"]}
    assert saved["diversion_rate"]["good"] == 0.2 and saved["diversion_rate"]["excess"] == 0.8
    assert saved["gmv"]["good"] == 30000 and saved["gmv"]["kind"] == "amount"  # ¥300 in fen
    page = client.get(f"{B}/contracts/nov").text
    # 75% sits between 20% and 80% now: good; GMV ¥350 (35,000 fen) beyond the halved
    # excess line (¥250): excess
    assert re.search(r'data-kpi="diversion_rate" data-line="good"', page)
    assert re.search(r'data-kpi="gmv" data-line="excess"', page)
    # reports page and an HTML report in the console
    listing = client.get(f"{B}/reports")
    assert listing.status_code == 200
    # PDF offered to generate and to schedule (ReportLab is a dependency)
    assert listing.text.count('<option value="pdf">PDF</option>') == 4
    html = client.get(f"{B}/reports/weekly?format=html&day=2026-11-04")
    assert html.status_code == 200 and "¥200.00" in html.text
    xlsx = client.get(f"{B}/reports/weekly?format=xlsx&day=2026-11-04")
    assert xlsx.headers["content-disposition"].endswith('.xlsx"')
    pdf = client.get(f"{B}/reports/weekly?format=pdf&day=2026-11-04")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].endswith('.pdf"')
    assert pdf.content.startswith(b"%PDF-")
    r = client.post(
        f"{B}/reports/schedules",
        data={"csrf_token": token, "period": "weekly", "recipients": "nope"},
    )
    assert r.status_code == 422
    r = client.post(
        f"{B}/reports/schedules",
        data={
            "csrf_token": token,
            "period": "weekly",
            "format": "pdf",
            "recipients": "c@brand.test",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    listing = client.get(f"{B}/reports")
    assert "c@brand.test" in listing.text and "<td>pdf</td>" in listing.text
    r = client.post(f"{B}/contracts/nov/delete", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"{B}/contracts/nov").status_code == 404


def test_a_brand_without_data_renders_every_page(client: Any, db: Session, world: Any) -> None:
    from datetime import date

    from siyu.core.tenancy import SYSTEM
    from siyu.metrics import reports
    from siyu.org.queries import access_brand

    built = reports.build(
        db, SYSTEM, access_brand(db, SYSTEM, "b-shop"), "weekly", date(2026, 11, 4)
    )
    assert (built.kpis and built.stores == []) or all(g.customers == 0 for g in built.stores)
    assert reports.render(built, "xlsx")[0] and reports.render(built, "html")[0]
    login(client, "b.admin")
    for path in ("", "/drill", "/leaderboard", "/cohorts", "/channels", "/contracts", "/reports"):
        r = client.get(f"/b/b-shop/metrics{path}")
        assert r.status_code == 200, path
    assert behind(client.get("/b/b-shop/metrics/customers").text) == 0


def store_json(client: Any, token: str) -> dict[str, Any]:
    """The contract as the JSON editor shows it."""
    import html

    page = client.get(f"{B}/contracts/nov").text
    raw = page.split('id="contract-definition"', 1)[1].split(">", 1)[1].split("</textarea>")[0]
    data: dict[str, Any] = json.loads(html.unescape(raw))
    return data
