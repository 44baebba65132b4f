"""Every function and window of the tag language on a small fixed dataset (DuckDB).

Expected members are worked out by hand from the rows below (as of 2026-06-30 12:00 in
Shanghai: "last 365d" starts 2025-07-01, "last 90d" 2026-04-02, "last 30d" 2026-06-01,
"last 7d" 2026-06-24, "last 2w" 2026-06-17, last month is May 2026).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from siyu.tags import lang
from siyu.tags.lang.catalogue import EventCatalogue

TZ = "Asia/Shanghai"
AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=ZoneInfo(TZ))
CUSTOMERS = ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"]
CATALOGUE = EventCatalogue(
    lang.STANDARD_CATALOGUE.events,
    EventCatalogue.build({}, {"city": "str", "level": "str"}).profile,
)


def _at(day: str, hour: int = 12) -> tuple[datetime, date]:
    d = date.fromisoformat(day)
    local = datetime(d.year, d.month, d.day, hour, tzinfo=ZoneInfo(TZ))
    return local.astimezone(UTC), d


def _order(cid: str, kind: str, day: str, channel: str, fen: int, **kw: Any) -> dict[str, Any]:
    at, dt = _at(day, kw.pop("hour", 12))
    return {
        "customer_id": cid,
        "kind": kind,
        "occurred_at": at,
        "dt": dt,
        "order_id": kw.get("order_id", f"{cid}-{day}"),
        "refund_id": None,
        "channel": channel,
        "store_code": kw.get("store"),
        "paid_fen": fen if kind == "paid" else None,
        "total_fen": fen if kind == "paid" else None,
        "discount_fen": 0 if kind == "paid" else None,
        "refund_fen": fen if kind == "refunded" else None,
        "coupon_codes": kw.get("coupons", []),
        "source": "pos" if channel == "pos" else "mall",
    }


def _event(cid: str, etype: str, day: str, props: dict[str, Any], **kw: Any) -> dict[str, Any]:
    at, dt = _at(day, kw.get("hour", 12))
    return {
        "customer_id": cid,
        "event_type": etype,
        "occurred_at": at,
        "dt": dt,
        "properties": json.dumps(props, ensure_ascii=False),
        "source": kw.get("source", "sdk"),
    }


def orders_rows() -> list[dict[str, Any]]:
    return [
        _order("c1", "paid", "2026-06-25", "mini_mall", 12000),
        _order("c1", "paid", "2026-05-10", "pos", 30000, store="SH01"),
        _order("c1", "paid", "2025-12-01", "tmall", 8000),
        _order("c1", "refunded", "2026-06-26", "mini_mall", 2000, order_id="c1-2026-06-25"),
        _order("c2", "paid", "2026-06-03", "pos", 60000, store="SH02", coupons=["SUMMER"]),
        _order("c2", "paid", "2026-06-28", "pos", 5000, store="SH01"),
        _order("c4", "paid", "2026-05-31", "douyin", 10000),
        _order("c4", "paid", "2026-06-01", "mini_mall", 20000, coupons=["WELCOME", "SUMMER"]),
        _order("c4", "paid", "2025-07-01", "tmall", 7000),
        _order("c4", "paid", "2025-06-30", "tmall", 9000),
        _order("c5", "paid", "2026-01-15", "jd", 15000),
        _order("c5", "refunded", "2026-01-20", "jd", 5000, order_id="c5-2026-01-15"),
        _order("c5", "refunded", "2026-01-21", "jd", 5000, order_id="c5-2026-01-15"),
        # after the as-of moment: never seen
        _order("c3", "paid", "2026-06-30", "mini_mall", 99900, hour=20),
        # not in the universe
        _order("c9", "paid", "2026-06-20", "pos", 50000, store="SH01"),
    ]


def events_rows() -> list[dict[str, Any]]:
    pv = "page_viewed"
    return [
        _event("c1", pv, "2026-06-29", {"path": "/home", "duration_ms": 1000}),
        _event("c1", pv, "2026-06-01", {"path": "/menu", "duration_ms": 5000}),
        _event("c1", "survey_answered", "2026-06-20", {"survey_id": "s1", "csat": 2}),
        _event("c1", "coupon_issued", "2026-06-05", {"coupon_code": "A"}),
        _event("c1", "coupon_issued", "2026-06-06", {"coupon_code": "B"}),
        _event("c1", "coupon_issued", "2026-06-07", {"coupon_code": "C"}),
        _event("c1", "coupon_redeemed", "2026-06-10", {"coupon_code": "A"}),
        _event("c1", "checked_in", "2026-06-15", {"place": "store", "store_code": "SH01"}),
        _event("c1", "group_joined", "2026-01-05", {"chat_id": "g1"}),
        _event(
            "c1",
            "message_received",
            "2026-06-28",
            {"staff_userid": "s1", "chat_type": "group", "msg_type": "text"},
        ),
        _event("c2", "survey_answered", "2026-06-01", {"survey_id": "s1", "csat": 5}),
        _event("c2", "survey_answered", "2026-06-29", {"survey_id": "s2", "csat": 1}),
        _event("c2", pv, "2026-02-01", {"path": "/home", "duration_ms": 200}),
        _event("c2", "coupon_redeemed", "2026-04-10", {"coupon_code": "D"}),
        _event("c2", "coupon_redeemed", "2026-05-10", {"coupon_code": "E"}),
        _event("c2", "coupon_redeemed", "2026-06-10", {"coupon_code": "F"}),
        _event("c3", pv, "2026-06-30", {"path": "/home", "duration_ms": 700}, hour=10),
        _event("c3", pv, "2026-06-30", {"path": "/cart"}, hour=20),  # after as-of
        _event("c3", "checked_in", "2026-06-20", {"place": "group"}),
        _event(
            "c3",
            "wecom_contact_added",
            "2026-03-01",
            {"staff_userid": "s1", "external_userid": "x"},
            source="wecom",
        ),
        _event(
            "c5",
            "message_received",
            "2026-06-25",
            {"staff_userid": "s1", "chat_type": "single", "msg_type": "text"},
        ),
        _event("c5", "group_joined", "2026-06-25", {"chat_id": "g1"}, source="wecom"),
        _event(
            "c5",
            "order_refunded",
            "2026-01-20",
            {"order_id": "o", "channel": "jd", "refund_fen": 5000, "reason": "damaged"},
        ),
        _event(
            "c5",
            "order_refunded",
            "2026-01-21",
            {"order_id": "o", "channel": "jd", "refund_fen": 5000, "reason": "late"},
        ),
        _event(
            "c7",
            pv,
            "2025-12-15",
            {"path": "/promo", "scene": 1047, "duration_ms": 3000},
            source="mini",
        ),
        _event("c7", pv, "2026-06-20", {"path": "/promo", "scene": 1001}, source="h5"),
        _event("c8", "group_left", "2026-06-01", {"chat_id": "g1"}),
        _event("c9", pv, "2026-06-20", {"path": "/home"}),
    ]


def customers_rows() -> list[dict[str, Any]]:
    cities = {"c1": "上海", "c2": "北京", "c3": "上海", "c4": "杭州"}
    levels = {"c1": "gold", "c2": "silver", "c4": "gold"}
    return [{"customer_id": c, "city": cities.get(c), "level": levels.get(c)} for c in CUSTOMERS]


def arrow_tables() -> tuple[pa.Table, pa.Table, pa.Table]:
    from siyu.tags.lang.facts import EVENT_COLUMNS, ORDER_COLUMNS

    ts = pa.timestamp("us", tz="UTC")
    types = {
        "string": pa.string(),
        "timestamp('UTC')": ts,
        "date": pa.date32(),
        "int64": pa.int64(),
        "array<string>": pa.list_(pa.string()),
    }
    ev = pa.Table.from_pylist(
        events_rows(), schema=pa.schema([(k, types[v]) for k, v in EVENT_COLUMNS.items()])
    )
    od = pa.Table.from_pylist(
        orders_rows(), schema=pa.schema([(k, types[v]) for k, v in ORDER_COLUMNS.items()])
    )
    cu = pa.Table.from_pylist(
        customers_rows(),
        schema=pa.schema(
            [("customer_id", pa.string()), ("city", pa.string()), ("level", pa.string())]
        ),
    )
    return ev, od, cu


CASES: list[tuple[str, set[str]]] = [
    # count
    ("count(order_paid) >= 2", {"c1", "c2", "c4"}),
    ("count(order_paid, last 365d) >= 3", {"c1", "c4"}),
    ('count(order_paid, channel = "pos") = 2', {"c2"}),
    ('count(order_paid, channel in ("mini_mall", "douyin"), last 90d) >= 2', {"c4"}),
    ("count(order_paid) = 0", {"c3", "c6", "c7", "c8"}),
    # sum
    ("sum(order_paid.paid_fen, last 30d) >= ¥200", {"c2", "c4"}),
    ("sum(order_refunded.refund_fen) >= 10000", {"c5"}),
    # avg
    ("avg(survey_answered.csat) < 3", {"c1"}),
    ("avg(page_viewed.duration_ms, last 30d) >= 1000", {"c1"}),
    # min / max
    ("min(survey_answered.csat, last 7d) = 1", {"c2"}),
    ("max(order_paid.paid_fen) >= 50000", {"c2"}),
    # count distinct
    ("count_distinct(order_paid.store_code) >= 2", {"c2"}),
    ("count_distinct(page_viewed.path) = 2", {"c1"}),
    # first / last value
    ('last_value(order_paid.channel) = "pos"', {"c2"}),
    ('first_value(order_paid.channel, last 365d) = "tmall"', {"c1", "c4"}),
    ('last_value(page_viewed.path) = "/promo"', {"c7"}),
    # exists
    ("exists(group_joined)", {"c1", "c5"}),
    ("not exists(page_viewed, last 30d) and exists(page_viewed)", {"c2"}),
    # days_since
    ("days_since(last order_paid) <= 5", {"c1", "c2"}),
    ("days_since(first order_paid) >= 365", {"c4"}),
    ("days_since(order_paid) between 150 and 170", {"c5"}),
    # in / between / property filters
    ("count(order_paid, paid_fen between 10000 and 20000) >= 2", {"c4"}),
    ('count(order_paid, channel not in ("pos", "mini_mall")) >= 1', {"c1", "c4", "c5"}),
    ('exists(order_paid, coupon_codes contains "SUMMER")', {"c2", "c4"}),
    ('exists(checked_in, place = "store")', {"c1"}),
    ('count(page_viewed, source = "mini") >= 1', {"c7"}),
    ('exists(order_refunded, reason = "damaged")', {"c5"}),
    ('exists(page_viewed, scene >= 1000 and path != "/home")', {"c7"}),
    ('exists(page_viewed, duration_ms > 4000 or path = "/promo")', {"c1", "c7"}),
    ('exists(wecom_contact_added, source = "wecom")', {"c3"}),
    # windows
    ("exists(order_paid, last 2w)", {"c1", "c2"}),
    ("exists(order_paid, this month)", {"c1", "c2", "c4"}),
    ("exists(order_paid, last month)", {"c1", "c4"}),
    ("count(coupon_redeemed, since 2026-05-10) >= 2", {"c2"}),
    ("exists(order_paid, between 2026-05-01 and 2026-06-02)", {"c1", "c4"}),
    ("exists(page_viewed, last 1d)", {"c3"}),
    # profile columns
    ('city = "上海" and not exists(order_paid)', {"c3"}),
    ('level in ("gold") or city = "北京"', {"c1", "c2", "c4"}),
    # arithmetic, not, or
    ("sum(order_paid.paid_fen) / count(order_paid) >= 25000", {"c2"}),
    (
        "sum(order_paid.paid_fen) - sum(order_refunded.refund_fen) < 10000 and exists(order_paid)",
        {"c5"},
    ),
    ("not (exists(order_paid) or exists(page_viewed))", {"c6", "c8"}),
]


@pytest.fixture(scope="module")
def facts() -> lang.Facts:
    return lang.facts_from_arrow(*arrow_tables())


@pytest.fixture(scope="module")
def con() -> Any:
    import ibis

    return ibis.duckdb.connect()


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_members(rule: str, expected: set[str], facts: lang.Facts, con: Any) -> None:
    expr = lang.compile_rule(rule, CATALOGUE, facts, AS_OF, TZ)
    got = set(con.to_pyarrow(expr).column("customer_id").to_pylist())
    assert got == expected


def test_all_cases_in_one_pass_agree_with_one_by_one(facts: lang.Facts, con: Any) -> None:
    rules = {f"r{i}": rule for i, (rule, _) in enumerate(CASES)}
    result = lang.members(con.to_pyarrow(lang.compile_rules(rules, CATALOGUE, facts, AS_OF, TZ)))
    for i, (_, expected) in enumerate(CASES):
        assert set(result[f"r{i}"]) == expected


def test_json_tree_compiles_to_the_same_members(facts: lang.Facts, con: Any) -> None:
    for rule, expected in CASES[:12]:
        tree = lang.to_json(lang.parse(rule))
        expr = lang.compile_rule(tree, CATALOGUE, facts, AS_OF, TZ)
        assert set(con.to_pyarrow(expr).column("customer_id").to_pylist()) == expected


def test_value_expressions(facts: lang.Facts, con: Any) -> None:
    spend = con.to_pyarrow(
        lang.compile_value("sum(order_paid.paid_fen, last 365d)", CATALOGUE, facts, AS_OF, TZ)
    )
    values = dict(zip(spend["customer_id"].to_pylist(), spend["value"].to_pylist(), strict=True))
    assert values == {
        "c1": 50000,
        "c2": 65000,
        "c3": 0,
        "c4": 37000,
        "c5": 15000,
        "c6": 0,
        "c7": 0,
        "c8": 0,
    }
    days = con.to_pyarrow(
        lang.compile_value("days_since(last order_paid)", CATALOGUE, facts, AS_OF, TZ)
    )
    values = dict(zip(days["customer_id"].to_pylist(), days["value"].to_pylist(), strict=True))
    assert values["c1"] == 5 and values["c4"] == 29 and values["c6"] is None


def test_as_of_moves_windows_and_hides_later_facts(facts: lang.Facts, con: Any) -> None:
    rule = "exists(order_paid, this month)"
    later = datetime(2026, 6, 30, 21, 0, tzinfo=ZoneInfo(TZ))  # c3's order at 20:00 now counts
    got = con.to_pyarrow(lang.compile_rule(rule, CATALOGUE, facts, later, TZ))
    assert set(got.column("customer_id").to_pylist()) == {"c1", "c2", "c3", "c4"}
    july = datetime(2026, 7, 1, 9, 0, tzinfo=ZoneInfo(TZ))
    got = con.to_pyarrow(lang.compile_rule(rule, CATALOGUE, facts, july, TZ))
    assert got.num_rows == 0
    # The same instant is still 30 June in New York: the brand's zone decides the day.
    got = con.to_pyarrow(lang.compile_rule(rule, CATALOGUE, facts, july, "America/New_York"))
    assert set(got.column("customer_id").to_pylist()) == {"c1", "c2", "c3", "c4"}


def test_standard_pack_compiles_and_runs(facts: lang.Facts, con: Any) -> None:
    result = con.to_pyarrow(lang.compile_rules(lang.pack_rules(), CATALOGUE, facts, AS_OF, TZ))
    got = lang.members(result)
    assert len(got) == 20
    assert set(got["repeat_buyer"]) == {"c1", "c2", "c4"}
    assert set(got["csat_detractor"]) == {"c1", "c2"}
    assert set(got["store_visitor"]) == {"c1", "c2"}
    assert set(got["this_month_not_last"]) == {"c2"}


@pytest.mark.parametrize("dialect", ["duckdb", "spark", "trino", "clickhouse"])
def test_to_sql_prints_each_dialect(dialect: str) -> None:
    sql = lang.to_sql("count(order_paid, last 90d) >= 3", CATALOGUE, AS_OF, TZ, dialect)
    assert "orders" in sql and "2026" in sql
    pack = lang.to_sql(lang.pack_rules(), CATALOGUE, AS_OF, TZ, dialect)
    assert "repeat_buyer" in pack and "csat" in pack
