"""The fact lake: a fact id is stored once per brand whatever the order and grouping of
appends (a property test), compaction keeps the data, erasure removes an identity's facts,
and the engine reads through the brand's partition only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from siyu.analytics import engine, lake
from siyu.analytics.keyindex import forget
from siyu.core.settings import reset_settings
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions, queries
from siyu.org.queries import access_brand


def facts(ids: list[str], day: date, key: str = "phone:" + "a" * 32) -> pa.Table:
    n = len(ids)
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
    return pa.table(
        {
            "dt": pa.array([day] * n, pa.date32()),
            "event_id": pa.array(ids, pa.string()),
            "event_type": ["page_viewed"] * n,
            "occurred_at": pa.array([at] * n, pa.timestamp("us", tz="UTC")),
            "identity_key": [key] * n,
            "identity_keys": [[key]] * n,
        }
    )


def stored_ids(brand_id: str) -> list[str]:
    return sorted(lake.read("events", brand_id, ["event_id"]).column(0).to_pylist())


@pytest.mark.slow
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3)), max_size=8),
        min_size=1,
        max_size=5,
    )
)
def test_no_reader_ever_sees_a_duplicate(
    batches: list[list[tuple[str, int]]], tmp_path_factory: Any, monkeypatch: Any
) -> None:
    # given a fresh lake (and a fresh in-process key index: forget simulates a new process)
    monkeypatch.setenv("SIYU_DATA_DIR", str(tmp_path_factory.mktemp("lake")))
    reset_settings()
    seen: set[str] = set()
    for n, batch in enumerate(batches):
        # when ids arrive in any grouping, repeated inside and across batches, on any day
        table = (
            pa.concat_tables([facts([i], date(2026, 1, 1) + timedelta(days=d)) for i, d in batch])
            if batch
            else facts([], date(2026, 1, 1))
        )
        result = lake.append("events", "B1", table)
        expected_new = [
            i
            for k, (i, _) in enumerate(batch)
            if i not in seen and i not in [x for x, _ in batch[:k]]
        ]
        assert result.written == len(expected_new)
        seen.update(expected_new)
        if n % 2:
            forget(lake.location("events"))
        # then a reader sees each id exactly once
        assert stored_ids("B1") == sorted(seen)
    reset_settings()


def test_duplicates_are_reported_per_row_and_other_brands_are_separate() -> None:
    day = date(2026, 3, 1)
    first = lake.append("events", "B1", facts(["x", "y", "x"], day))
    assert first.duplicate.tolist() == [False, False, True]
    again = lake.append("events", "B1", facts(["y", "z"], day + timedelta(days=9)))
    assert again.duplicate.tolist() == [True, False]
    other = lake.append("events", "B2", facts(["x"], day))
    assert other.written == 1
    assert stored_ids("B1") == ["x", "y", "z"]
    assert stored_ids("B2") == ["x"]
    dry = lake.append("events", "B1", facts(["w", "x"], day), dry_run=True)
    assert dry.duplicate.tolist() == [False, True] and dry.written == 1
    assert stored_ids("B1") == ["x", "y", "z"]


def test_compaction_keeps_data_and_dedup_still_holds() -> None:
    day = date(2026, 3, 1)
    for i in range(6):
        lake.append("events", "B1", facts([f"e{i}a", f"e{i}b"], day))
    before = lake.stats("B1")["events"]
    assert before == {"rows": 12, "files": 6}
    out = lake.compact("B1", retention_hours=0)
    assert out["events"]["files_removed"] == 6 and out["events"]["files_added"] == 1
    assert lake.stats("B1")["events"] == {"rows": 12, "files": 1}
    assert lake.append("events", "B1", facts(["e0a", "new"], day)).written == 1
    assert len(stored_ids("B1")) == 13


def test_erasure_removes_an_identity_everywhere(db: Session, world: object, client: Any) -> None:
    from tests.factories import api_key

    headers = {"Authorization": f"Bearer {api_key(db, 'a-coffee', 'events.write')}"}

    def ev(i: int, phone: str, **kw: Any) -> dict[str, Any]:
        return {
            "event_id": f"e{i}",
            "event_type": kw.pop("event_type", "page_viewed"),
            "occurred_at": "2026-03-01T10:00:00+08:00",
            "identifiers": [{"type": "phone", "value": phone}],
            "properties": kw.pop("properties", {"path": "/p"}),
        }

    order = {
        "order_id": "O1",
        "channel": "pos",
        "paid_fen": 100,
        "items": [{"sku": "S", "unit_price_fen": 100, "amount_fen": 100}],
    }
    batch = [
        ev(1, "13800000001"),
        ev(2, "13800000002"),
        ev(3, "13800000001", event_type="order_paid", properties=order),
    ]
    r = client.post("/api/v1/brands/a-coffee/events:batch", json={"events": batch}, headers=headers)
    assert r.json()["accepted"] == 3
    brand = access_brand(db, SYSTEM, "a-coffee")
    from siyu.customers import vault

    gone = vault.identity_key(brand.id, "phone", "13800000001")
    deleted = actions.erase_identities(db, SYSTEM, brand, [gone])
    assert deleted["events"] == 2 and deleted["orders"] == 1 and deleted["order_items"] == 1
    with queries.open_facts(db, SYSTEM, "a-coffee") as f:
        rows = f.execute(f.table("events")).to_pylist()
        obs = f.execute(f.table("identity_observations")).to_pylist()
        assert f.execute(f.table("orders").count()).as_py() == 0
    assert [r["event_id"] for r in rows] == ["e2"]
    assert all(gone not in o["identity_keys"] for o in obs)
    # and the old files that held them are gone from disk, not just from the log
    assert lake.stats(brand.id)["events"]["rows"] == 1


def test_engine_reads_one_brand_and_declares_capabilities() -> None:
    lake.append("events", "B1", facts(["a", "b"], date(2026, 3, 1)))
    lake.append("events", "B2", facts(["c"], date(2026, 3, 1)))
    with engine.connect("duckdb") as eng:
        assert eng.EMBEDDED and eng.SUPPORTS_WINDOW_FUNCTIONS and not eng.SUPPORTS_DELTA_NATIVE
        t = eng.table("events", "B1")
        assert sorted(eng.execute(t.select("event_id")).column(0).to_pylist()) == ["a", "b"]
        daily = eng.execute(t.group_by(t.dt).aggregate(n=t.count())).to_pylist()
        assert daily == [{"dt": date(2026, 3, 1), "n": 2}]
        assert eng.execute(eng.table("orders", "B1").count()).as_py() == 0
    try:
        engine.connect("spark")
    except ValueError as exc:
        assert "unknown analytics engine" in str(exc)
    else:
        raise AssertionError("spark is not implemented and must not pretend to be")
