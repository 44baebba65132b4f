"""The facts rollup (``siyu.metrics.rollup``): KPIs read from it equal the KPIs read from
the raw events, on the hand-built story of ``test_metrics_kpis`` and after the lake changes
(new facts appended, files compacted, an identity erased)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from siyu.analytics import lake
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.metrics import kpis as m
from siyu.metrics import rollup
from siyu.metrics import scope as dim_scope
from siyu.metrics.definitions import GROUP_BYS
from siyu.metrics.sql import ALWAYS
from tests.test_metrics_kpis import AS_OF, END, START, added, ev, story  # noqa: F401 - the fixture

PERIODS = ((START, END), (date(2026, 8, 1), date(2026, 11, 30)), (date(2026, 11, 3), END))


def snapshot(t: m.KpiTable) -> list[tuple[Any, ...]]:
    return [(r.group, r.customers, {k: v.as_dict() for k, v in r.values.items()}) for r in t.rows]


def both(db: Session, brand: Any, **kw: Any) -> tuple[m.KpiTable, m.KpiTable]:
    dims = dim_scope.load(db, SYSTEM, brand)
    costs = m.channel_costs(db, brand.id)
    sopm = m.sop_members(db, brand.id, AS_OF)[0] if kw.get("group_by") == "sop" else None
    fast = m.compute(dims, as_of=AS_OF, costs=costs, sopm=sopm, rollup=True, **kw)
    raw = m.compute(dims, as_of=AS_OF, costs=costs, sopm=sopm, rollup=False, **kw)
    return fast, raw


def parts(brand_id: str, kind: str = "hist") -> list[Path]:
    where = rollup.folder(brand_id)
    assert where is not None
    return sorted(where.glob(f"{kind}-*.parquet"))


def rollup_rows(brand_id: str, kind: str = "hist") -> Any:
    """The rollup's rows of ``kind`` with their identity keys (through the dictionary)."""
    import duckdb

    listed = [str(p) for p in parts(brand_id, kind)]
    keys = [str(p) for p in parts(brand_id, "keys")]
    con = duckdb.connect()
    try:
        return con.execute(
            "SELECT k.identity_key, f.* FROM read_parquet($f) f "
            "JOIN read_parquet($k) k ON k.ik = f.ik",
            {"f": listed, "k": keys},
        ).fetch_arrow_table()
    finally:
        con.close()


def test_rollup_equals_raw_events(db: Session, story: Any) -> None:  # noqa: F811
    for start, end in PERIODS:
        for group_by in (None, *GROUP_BYS):
            fast, raw = both(db, story, start=start, end=end, group_by=group_by)
            assert snapshot(fast) == snapshot(raw), (start, end, group_by)
    # the history part holds the history types only, each with its property parsed
    rows = rollup_rows(story.id)
    assert set(rows.column("event_type").to_pylist()) <= set(ALWAYS)
    # the windowed part the other types the KPIs count, the CSAT parsed; the orders too
    win = rollup_rows(story.id, "win")
    assert set(win.column("event_type").to_pylist()) <= set(rollup.WINDOW_TYPES)
    assert win.num_rows and rollup_rows(story.id, "ord").num_rows
    # one dense integer per identity key
    keys = pq.read_table(parts(story.id, "keys")[0])
    assert sorted(keys["ik"].to_pylist()) == list(range(keys.num_rows))
    assert len(set(keys["identity_key"].to_pylist())) == keys.num_rows
    added_states = {
        p for t, p in zip(rows["event_type"].to_pylist(), rows["prop"].to_pylist(), strict=True)
        if t == "wecom_contact_added"
    }  # fmt: skip
    assert added_states == {"poster", "ad"}
    # drill-downs agree too
    dims = dim_scope.load(db, SYSTEM, story)
    for kpi in ("diverted_customers", "churn_rate", "group_participation_rate"):
        for side in ("numerator", "denominator"):
            if kpi == "diverted_customers" and side == "denominator":
                continue
            got = [
                m.customer_ids_behind(
                    dims, kpi, start=START, end=END, side=side, as_of=AS_OF, rollup=use
                )
                for use in (True, False)
            ]
            assert got[0] == got[1], (kpi, side)


def test_rollup_extended_when_new_facts_arrive(db: Session, story: Any) -> None:  # noqa: F811
    before, _ = both(db, story, start=START, end=END)
    first = parts(story.id)
    assert len(first) == 1
    # D becomes a friend in November and joins a group: a new fact in the history types
    more = [
        added("d9", "2026-11-18", "D", "poster"),
        ev("d8", "group_joined", "2026-11-19", "D", chat_id="wrGZ01"),
    ]
    out = ingest.ingest_batch(db, SYSTEM, story, more)
    assert out.rejected == 0
    fast, raw = both(db, story, start=START, end=END)
    assert snapshot(fast) == snapshot(raw)
    assert before.value("diverted_customers") == 3
    assert fast.value("diverted_customers") == 4
    # extended with one more part, the first one kept; the dictionary only gains D's key
    now = parts(story.id)
    assert len(now) == 2 and first[0] in now
    assert len(parts(story.id, "keys")) == 1  # D's key was known already
    # a fact under an identity key never seen: the dictionary gains one part, ids stay dense
    out = ingest.ingest_batch(
        db, SYSTEM, story, [ev("d7", "page_viewed", "2026-11-20", "D", member_no="M-D7", path="/")]
    )
    assert out.rejected == 0
    fast, raw = both(db, story, start=START, end=END)
    assert snapshot(fast) == snapshot(raw)
    keys = pa.concat_tables([pq.read_table(p) for p in parts(story.id, "keys")])
    assert len(parts(story.id, "keys")) == 2
    assert sorted(keys["ik"].to_pylist()) == list(range(keys.num_rows))
    assert any(k.startswith("member_no:") for k in keys["identity_key"].to_pylist())


def test_rollup_rebuilt_when_files_go_away(db: Session, story: Any) -> None:  # noqa: F811
    both(db, story, start=START, end=END)
    # a second file on a day that has one already (B's add day), so compaction merges them
    out = ingest.ingest_batch(
        db, SYSTEM, story, [ev("b9", "page_viewed", "2026-11-02", "B", path="/p")]
    )
    assert out.rejected == 0
    both(db, story, start=START, end=END)
    first = parts(story.id)
    assert len(first) == 2
    # compaction replaces files the rollup was built from: it is rebuilt
    lake.compact(story.id, retention_hours=0)
    fast, raw = both(db, story, start=START, end=END)
    assert snapshot(fast) == snapshot(raw)
    rebuilt = parts(story.id)
    assert rebuilt and not set(rebuilt) & set(first)
    # an erased identity leaves the rollup too
    rows = rollup_rows(story.id)
    types = rows["event_type"].to_pylist()
    gone = rows["identity_key"].to_pylist()[types.index("wecom_contact_deleted_by_customer")]
    lake.erase(story.id, [gone])
    fast, raw = both(db, story, start=START, end=END)
    assert snapshot(fast) == snapshot(raw)
    assert gone not in rollup_rows(story.id)["identity_key"].to_pylist()
    # … and the dictionary
    keys = pq.read_table(parts(story.id, "keys")[0])["identity_key"].to_pylist()
    assert gone not in keys and len(parts(story.id, "keys")) == 1


def test_legacy_history_rollup_deleted(db: Session, story: Any) -> None:  # noqa: F811
    where = rollup.folder(story.id)
    assert where is not None
    legacy = where.parent.parent / "events-history" / where.name
    legacy.mkdir(parents=True)
    (legacy / "part-x.parquet").write_bytes(b"old")
    fast, raw = both(db, story, start=START, end=END)
    assert snapshot(fast) == snapshot(raw)
    assert not legacy.exists()
