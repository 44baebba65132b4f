"""``siyu customers …`` and ``siyu oneid …`` as an operator runs them, on SQLite and
PostgreSQL (the store is ``SIYU_DATABASE_URL``; ``--data-dir`` holds the keys).

One test builds everything from an empty data directory, the way a new installation would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.core.audit import AuditEntry
from siyu.customers.models import Identity, Review
from tests.customer_factories import (
    ZHANG_MASKED,
    ZHANG_PHONE,
    observation,
    seed_customers,
    seed_review,
)

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--data-dir", os.environ["SIYU_DATA_DIR"]])
    assert result.exit_code == code, result.output
    return result.output


def as_json(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


def test_search(db: Session, world: Any) -> None:
    cast = seed_customers(db)
    rows = as_json("customers", "search", ZHANG_PHONE, "--brand", "a-coffee")
    assert [(r["id"], r["phone"], r["owner"]) for r in rows] == [
        (cast.zhang, ZHANG_MASKED, "A.GUIDE")
    ]
    everyone = as_json("customers", "search", "--brand", "a-coffee")
    assert {r["id"] for r in everyone} == {cast.zhang, cast.li, cast.wang}
    assert len(as_json("customers", "search", "--brand", "a-coffee", "--limit", "1")) == 1
    table = run("customers", "search", "M-002", "--brand", "a-coffee")
    assert table.splitlines()[0].split() == [
        "id",
        "name",
        "phone",
        "member_no",
        "owner",
        "last_seen_at",
    ]
    assert cast.li in table and "139****1111" in table
    assert run("customers", "search", "nobody", "--brand", "a-coffee").strip() == "(none)"
    assert "[org.brand_not_found]" in run("customers", "search", "--brand", "nope", code=2)


def test_show(db: Session, world: Any) -> None:
    cast = seed_customers(db)
    view = as_json("customers", "show", cast.zhang, "--brand", "a-coffee")
    assert view["id"] == cast.zhang and view["name"] == "张**"
    assert {i["type"] for i in view["identities"]} == {
        "phone",
        "email",
        "member_no",
        "unionid",
        "external_userid",
    }
    assert view["owners"][0]["username"] == "a.guide"
    assert view["consents"][0]["purpose"] == "marketing"
    assert "revealed" not in view
    text = run("customers", "show", cast.zhang, "--brand", "a-coffee")
    for part in ("identities:", "owners:", "consents:", "history:", "orders:", "timeline:"):
        assert part in text
    assert "attr.level" in text and ZHANG_MASKED in text and "三丰" in text
    out = run("customers", "show", "01NOSUCHCUSTOMER0000000000", "--brand", "a-coffee", code=2)
    assert "[customers.not_found]" in out
    # another tenant's customer is not found through this brand
    assert "[customers.not_found]" in run(
        "customers", "show", cast.zhang, "--brand", "a-tea", code=2
    )


def test_merge_and_split(db: Session, world: Any) -> None:
    cast = seed_customers(db)
    out = as_json(
        "customers", "merge", cast.zhang, cast.li, "--brand", "a-coffee", "--note", "同一人"
    )
    survivor = out["survivor"]
    assert {survivor, *out["merged"]} == {cast.zhang, cast.li}
    gone = out["merged"][0]
    # the merged-away id shows the survivor
    assert as_json("customers", "show", gone, "--brand", "a-coffee")["id"] == survivor
    # split Li's phone and member number back out
    li_identities = _identities_shown_as(db, survivor, "139****1111", "M-***")
    assert len(li_identities) == 2
    args = ["customers", "split", survivor, "--brand", "a-coffee"]
    for identity in li_identities:
        args += ["--identity", identity]
    out = as_json(*args, "--note", "误合并")
    assert out["stayed"] == survivor and out["moved"] != survivor
    moved = as_json("customers", "show", out["moved"], "--brand", "a-coffee")
    assert {i["value"] for i in moved["identities"]} == {"139****1111", "M-***"}
    # errors are coded
    err = run("customers", "merge", cast.zhang, "--brand", "a-coffee", code=2)
    assert "[customers.merge_needs_two]" in err
    err = run("customers", "split", survivor, "--brand", "a-coffee", "--identity", "nope", code=2)
    assert "[customers.bad_split]" in err
    db.rollback()
    actions = set(db.scalars(select(AuditEntry.action).where(AuditEntry.actor_label == "cli")))
    assert {"customer.merge", "customer.split"} <= actions


def _identities_shown_as(db: Session, customer: str, *masked: str) -> list[str]:
    db.rollback()  # see what the CLI committed
    return list(
        db.scalars(
            select(Identity.id).where(Identity.customer_id == customer, Identity.masked.in_(masked))
        )
    )


def test_oneid_reviews_decide_and_run(db: Session, world: Any) -> None:
    first = seed_review(db, "A", "13600000001")
    second = seed_review(db, "B", "13600000002")
    listed = as_json("oneid", "reviews", "--brand", "a-coffee")
    assert {r["id"] for r in listed} == {first.id, second.id}
    assert listed[0]["id_types"] == ["member_no", "phone"]
    table = run("oneid", "reviews", "--brand", "a-coffee")
    assert first.id in table and "unique_conflict" in table
    out = as_json("oneid", "decide", first.id, "--brand", "a-coffee", "--approve", "--note", "补卡")
    assert out == {"id": first.id, "status": "approved", "note": "补卡"}
    assert as_json("oneid", "decide", second.id, "--brand", "a-coffee", "--reject")["status"] == (
        "rejected"
    )
    assert as_json("oneid", "reviews", "--brand", "a-coffee") == []
    approved = as_json("oneid", "reviews", "--brand", "a-coffee", "--status", "approved")
    assert [r["id"] for r in approved] == [first.id]
    err = run("oneid", "decide", first.id, "--brand", "a-coffee", "--reject", code=2)
    assert "[customers.review_closed]" in err
    err = run("oneid", "decide", first.id, "--brand", "a-coffee", code=2)
    assert "--approve" in err
    db.rollback()
    decided = {r.id: r.decided_by for r in db.scalars(select(Review))}
    assert decided == {first.id: "cli", second.id: "cli"}
    stats = as_json("oneid", "run", "--brand", "a-coffee")
    assert stats["identities"] == 6 and stats["observations"] == 4
    assert "components_rewritten" in run("oneid", "run", "--brand", "a-coffee")


def test_from_an_empty_data_dir(tmp_path: Path, monkeypatch: Any) -> None:
    # given a fresh installation: SQLite in the data dir, nothing else configured
    data_dir = tmp_path / "fresh"
    monkeypatch.setenv("SIYU_DATA_DIR", str(data_dir))
    run("db", "upgrade")
    run("org", "brand", "create", "tea", "--name", "思屿茶饮")
    from siyu.cli.common import use_data_dir
    from siyu.core.db import dispose_engines, open_session
    from siyu.core.tenancy import SYSTEM
    from siyu.customers import actions
    from siyu.org import queries

    use_data_dir(data_dir)
    with open_session() as db:
        brand = queries.access_brand(db, SYSTEM, "tea")
        actions.observe_batch(
            db, SYSTEM, brand, [observation(0, ids={"phone": ZHANG_PHONE, "member_no": "T1"})]
        )
    dispose_engines()
    # when the operator looks the customer up
    rows = as_json("customers", "search", ZHANG_PHONE, "--brand", "tea")
    # then it is found, masked, and the reveal works with this data dir's key
    assert [r["phone"] for r in rows] == [ZHANG_MASKED]
    out = run("customers", "show", rows[0]["id"], "--brand", "tea", "--reveal", "phone")
    assert ZHANG_PHONE in out
    assert (data_dir / "siyu.db").exists() and (data_dir / "pii.key").exists()
    audit = json.loads(run("audit", "list", "--brand", "tea", "--json"))
    assert "customer.reveal" in {a["action"] for a in audit}
