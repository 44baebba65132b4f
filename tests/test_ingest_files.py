"""File imports into OneID and the lake: encodings, per-row errors, re-imports that add
nothing, XLSX and JSONL, orders with items, saved mappings per source, the CLI's exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli.main import app as cli
from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Customer
from siyu.ingest import actions, queries
from siyu.org.queries import access_brand

HEADER = "手机号,会员号,事件类型,时间,页面路径,来源页,survey_id,csat\n"


def good_row(i: int) -> str:
    phone = f"1380013{i % 40:04d}"
    day, minute = 1 + i % 28, i % 60
    if i % 3 == 0:
        when = f"2026-03-{day:02d} 10:{minute:02d}:00"
        return f"{phone},M{i % 40},survey_answered,{when},,,S1,{1 + i % 5}\n"
    when = f"2026/3/{day} 09:{minute:02d}"
    return f"{phone},,page_viewed,{when},/pages/item?id={i},/pages/index,,\n"


BAD_ROWS = {
    # line number in the file → (row text, column named in the report, code)
    7: ("12345,,page_viewed,2026-03-01 10:00,/p,,,\n", "手机号", "customers.bad_phone"),
    23: ("13800138000,,page_viewed,yesterday,/p,,,\n", "时间", "ingest.bad_time"),
    41: (
        "13800138000,,teleported,2026-03-01 10:00,/p,,,\n",
        "事件类型",
        "ingest.unknown_event_type",
    ),
    58: ("13800138000,,page_viewed,2026-03-01 10:00,,,,\n", "页面路径", "ingest.required"),
    90: ("13800138000,,survey_answered,2026-03-01 10:00,,,S1,7\n", "csat", "ingest.out_of_range"),
}


def events_csv(rows: int = 100) -> str:
    out = [HEADER]
    for line in range(2, rows + 2):
        out.append(BAD_ROWS[line][0] if line in BAD_ROWS else good_row(line))
    return "".join(out)


def count(db: Session, actor: Any, brand: str, table: str = "events") -> int:
    with queries.open_facts(db, actor, brand) as facts:
        t = facts.table(table)
        return int(facts.execute(t.count()).as_py())


def test_gb18030_csv_with_bad_rows_keeps_good_ones_and_reimport_adds_nothing(
    db: Session, world: object, tmp_path: Path
) -> None:
    # given a brand's export in GB18030 with 5 bad rows out of 100
    brand = access_brand(db, SYSTEM, "a-coffee")
    path = tmp_path / "events.csv"
    path.write_bytes(events_csv().encode("gb18030"))
    # when it is imported
    out = actions.import_file(db, SYSTEM, brand, path, kind="events", source="crm")
    # then the good rows are stored and each bad row is named by line, column and code
    assert (out.total, out.accepted, out.rejected, out.duplicates) == (100, 95, 5, 0)
    got = {e["line"]: (e["field"], e["code"]) for e in out.errors}
    assert got == {line: (col, code) for line, (_, col, code) in BAD_ROWS.items()}
    assert all(e["reason"] for e in out.errors)
    assert count(db, SYSTEM, "a-coffee") == 95
    # and the rows are queryable through the engine (Ibis on DuckDB)
    with queries.open_facts(db, SYSTEM, "a-coffee") as facts:
        ev = facts.table("events")
        by_type = facts.execute(ev.group_by(ev.event_type).aggregate(n=ev.count())).to_pylist()
        assert sum(r["n"] for r in by_type) == 95
        surveys = facts.execute(
            ev.filter(ev.event_type == "survey_answered").select("properties", "identity_key")
        ).to_pylist()
    assert all(json.loads(s["properties"])["csat"] in range(1, 6) for s in surveys)
    assert all(s["identity_key"].split(":")[0] in ("member_no", "phone") for s in surveys)
    # and no raw phone number reaches the lake
    with queries.open_facts(db, SYSTEM, "a-coffee") as facts:
        table = facts.execute(facts.table("events"))
    # no phone number of the file anywhere (hex ids may hold any 5 digits: check whole numbers)
    dumped = json.dumps(table.to_pylist(), default=str)
    assert not any(good_row(i).split(",")[0] in dumped for i in range(2, 102))
    # and OneID saw one customer per distinct person (40 phones)
    assert db.scalar(select(func.count()).select_from(Customer)) == 40
    # when the same file is imported again, nothing is added
    again = actions.import_file(db, SYSTEM, brand, path, kind="events", source="crm")
    assert (again.accepted, again.duplicates, again.rejected) == (0, 95, 5)
    assert count(db, SYSTEM, "a-coffee") == 95


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_utf8_and_bom(db: Session, world: object, tmp_path: Path, encoding: str) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    path = tmp_path / "e.csv"
    path.write_bytes((HEADER + good_row(2)).encode(encoding))
    out = actions.import_file(db, SYSTEM, brand, path, kind="events")
    assert (out.accepted, out.rejected) == (1, 0)


def test_cli_exit_codes_and_report(db: Session, world: object, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(events_csv(30).encode("gb18030"))
    r = CliRunner().invoke(cli, ["ingest", str(path), "--brand", "a-coffee", "--kind", "events"])
    assert r.exit_code == 3, r.output
    report = path.with_name("events.csv.errors.json")
    assert f"report: {report}" in r.output
    body = json.loads(report.read_text(encoding="utf-8"))
    assert {e["line"] for e in body["errors"]} == {7, 23}
    assert body["errors"][0]["field"] == "手机号"
    good = tmp_path / "good.csv"
    good.write_text(HEADER + good_row(2) + good_row(3), encoding="utf-8")
    r = CliRunner().invoke(cli, ["ingest", str(good), "--brand", "a-coffee", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "[dry run]" in r.output
    assert count(db, SYSTEM, "a-coffee") == 28  # 30 rows, 2 bad; the dry run wrote nothing


def test_xlsx_customers_import(db: Session, world: object, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["手机号", "姓名", "性别", "生日", "会员等级", "城市"])
    sheet.append([13512346810, "张三", "男", "1990-05-01", "金卡", "上海"])
    sheet.append(["13512346811", "李四", "女", "1992/7/8", "银卡", "杭州"])
    sheet.append(["1351234", "王五", "男", "", "", ""])  # malformed phone
    buf = io.BytesIO()
    book.save(buf)
    path = tmp_path / "members.xlsx"
    path.write_bytes(buf.getvalue())
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = actions.import_file(db, SYSTEM, brand, path, kind="customers", source="crm")
    assert (out.accepted, out.rejected) == (2, 1)
    assert out.errors[0]["line"] == 4 and out.errors[0]["field"] == "手机号"
    with queries.open_facts(db, SYSTEM, "a-coffee") as facts:
        rows = facts.execute(facts.table("events")).to_pylist()
    props = [json.loads(r["properties"]) for r in rows]
    # PII stays in the vault: no names or birthdays in the lake
    assert all("name" not in p and "birthday" not in p for p in props)
    assert {p["gender"] for p in props} == {"male", "female"}
    assert db.scalar(select(func.count()).select_from(Customer)) == 2


def test_jsonl_import(db: Session, world: object, tmp_path: Path) -> None:
    lines = [
        {
            "event_id": "j1",
            "event_type": "tracking_event",
            "occurred_at": "2026-03-01T10:00:00+08:00",
            "identifiers": [{"type": "unionid", "value": "u-1"}],
            "properties": {"name": "add_to_cart", "props": {"sku": "A1", "qty": 2}},
        },
        "not an object",
        {"event_id": "j2", "event_type": "page_viewed", "occurred_at": "2026-03-01T10:00:00"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken\n"
    path = tmp_path / "events.jsonl"
    path.write_text(text, encoding="utf-8")
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = actions.import_file(db, SYSTEM, brand, path, kind="events")
    assert (out.total, out.accepted, out.rejected) == (4, 1, 3)
    codes = {e["line"]: e["code"] for e in out.errors}
    assert codes[2] == "ingest.not_an_object"
    assert codes[3] == "invalid.timezone_aware"  # naive occurred_at is refused
    assert codes[4] == "ingest.bad_json"


ORDERS_CSV = (
    "订单号,下单时间,渠道,手机号,商品编码,商品名称,数量,单价,实付金额,类型\n"
    "T1,2026-03-01 10:00,天猫,13800138000,SKU1,拿铁,2,18.00,50.00,支付\n"
    "T1,2026-03-01 10:00,天猫,13800138000,SKU2,司康,1,14.00,50.00,支付\n"
    "T2,2026-03-02 11:00,门店,13800138001,SKU1,拿铁,1,18.00,18,支付\n"
    "T3,2026-03-02 12:00,门店,13800138002,SKU1,拿铁,1,abc,18,支付\n"  # bad price
    "T3,2026-03-02 12:00,门店,13800138002,SKU2,司康,1,14.00,18,支付\n"
    "T1,2026-03-03 09:00,天猫,13800138000,,,,,14.00,退款\n"
)


def test_orders_csv_makes_orders_and_items(db: Session, world: object, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(ORDERS_CSV.encode("gb18030"))
    brand = access_brand(db, SYSTEM, "a-coffee")
    out = actions.import_file(db, SYSTEM, brand, path, kind="orders", source="pos")
    assert (out.total, out.accepted, out.rejected) == (6, 3, 2)
    codes = {e["line"]: e["code"] for e in out.errors}
    assert codes == {5: "ingest.bad_amount", 6: "ingest.order_incomplete"}
    with queries.open_facts(db, SYSTEM, "a-coffee") as facts:
        orders = facts.table("orders")
        rows = facts.execute(orders.order_by(orders.order_key)).to_pylist()
        items = facts.execute(facts.table("order_items")).to_pylist()
    by_key = {r["order_key"]: r for r in rows}
    assert set(by_key) == {
        "paid:T1",
        "paid:T2",
        f"refund:T1:{by_key[next(k for k in by_key if k.startswith('refund'))]['event_id']}",
    }
    assert by_key["paid:T1"]["paid_fen"] == 5000 and by_key["paid:T1"]["channel"] == "tmall"
    assert by_key["paid:T1"]["item_count"] == 3
    assert by_key["paid:T2"]["channel"] == "pos"
    refund = next(r for k, r in by_key.items() if k.startswith("refund"))
    assert refund["refund_fen"] == 1400 and refund["kind"] == "refunded"
    assert sorted((i["order_id"], i["line_no"], i["amount_fen"]) for i in items) == [
        ("T1", 1, 3600),
        ("T1", 2, 1400),
        ("T2", 1, 1800),
    ]
    # re-import: nothing new anywhere
    again = actions.import_file(db, SYSTEM, brand, path, kind="orders", source="pos")
    assert (again.accepted, again.duplicates) == (0, 3)
    assert count(db, SYSTEM, "a-coffee", "orders") == 3
    assert count(db, SYSTEM, "a-coffee", "order_items") == 3


def test_mapping_saved_per_source_is_reused(db: Session, world: object, tmp_path: Path) -> None:
    # given a source whose headers no alias knows
    csv_text = "会员手机,动作,发生于,页面\n13800138000,浏览,2026-03-01 10:00,/pages/a\n"
    path = tmp_path / "weird.csv"
    path.write_text(csv_text, encoding="utf-8")
    mapping = tmp_path / "weird.yaml"
    mapping.write_text(
        "columns:\n  会员手机: phone\n  动作: event_type\n  发生于: occurred_at\n  页面: path\n"
        "values:\n  event_type:\n    浏览: page_viewed\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    # when it is imported once with the mapping and --source
    r = runner.invoke(
        cli,
        [
            "ingest",
            str(path),
            "--brand",
            "a-coffee",
            "--source",
            "weird",
            "--mapping",
            str(mapping),
        ],
    )
    assert r.exit_code == 0, r.output
    # then the mapping is saved for that source
    r = runner.invoke(cli, ["ingest", "mapping", "list", "--brand", "a-coffee", "--json"])
    assert json.loads(r.output)[0]["source"] == "weird"
    # and the next file of that source needs no --mapping
    path2 = tmp_path / "weird2.csv"
    path2.write_text(csv_text.replace("/pages/a", "/pages/b"), encoding="utf-8")
    r = runner.invoke(cli, ["ingest", str(path2), "--brand", "a-coffee", "--source", "weird"])
    assert r.exit_code == 0, r.output
    assert count(db, SYSTEM, "a-coffee") == 2
    # while without the source the columns mean nothing
    r = runner.invoke(cli, ["ingest", str(path2), "--brand", "a-coffee"])
    assert r.exit_code == 2 and "ingest.missing_column" in r.output


def test_events_catalogue_cli() -> None:
    r = CliRunner().invoke(cli, ["events", "catalogue", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    types = {row["event_type"] for row in rows}
    assert {"order_paid", "wecom_contact_added", "page_viewed", "survey_answered"} <= types
    csat = next(
        f
        for row in rows
        if row["event_type"] == "survey_answered"
        for f in row["fields"]
        if f["name"] == "csat"
    )
    assert csat["required"] is True


@pytest.mark.slow
def test_bench_ingest_prints_its_figures_as_json_last() -> None:
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            "ingest",
            "--events",
            "20000",
            "--customers",
            "2000",
            "--reference",
            "2000",
            "--http-batches",
            "1",
            "--http-singles",
            "20",
        ],
    )
    assert r.exit_code == 0, r.output
    figures = json.loads(r.output.strip().splitlines()[-1])
    assert figures["events"] == 20000 and figures["events_per_s"] > 0
    assert 0 < figures["accepted"] <= 20000
    assert figures["http_events"] == 10000 and figures["http_events_per_s"] > 0
    assert {"reference_events_per_s", "ratio", "http_reference_events_per_s"} <= set(figures)


def test_oneid_failure_after_facts_landed_is_completed_by_the_next_import(
    db: Session, world: object, tmp_path: Path, monkeypatch: Any
) -> None:
    # given an import whose OneID step fails while the lake append (another thread) succeeds
    from siyu.customers import actions as customer_actions

    brand = access_brand(db, SYSTEM, "a-coffee")
    path = tmp_path / "events.csv"
    path.write_text(HEADER + "".join(good_row(i) for i in range(2, 42)), encoding="utf-8")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store went away")

    with monkeypatch.context() as m:
        m.setattr(customer_actions, "observe_hashed", broken)
        with pytest.raises(RuntimeError):
            actions.import_file(db, SYSTEM, brand, path, kind="events", source="crm")
    db.rollback()
    assert count(db, SYSTEM, "a-coffee") == 40  # the facts landed
    assert count(db, SYSTEM, "a-coffee", "identity_observations") == 0  # evidence did not
    assert db.scalar(select(func.count()).select_from(Customer)) == 0
    # when the same file is imported again
    out = actions.import_file(db, SYSTEM, brand, path, kind="events", source="crm")
    # then nothing is stored twice and every identity is resolved now
    assert (out.accepted, out.duplicates) == (0, 40)
    assert count(db, SYSTEM, "a-coffee") == 40
    assert count(db, SYSTEM, "a-coffee", "identity_observations") > 0
    assert db.scalar(select(func.count()).select_from(Customer)) == 40
