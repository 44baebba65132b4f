"""Acceptance: phone numbers are unreadable in the database file and masked in the API, the
console and the CLI unless revealed with permission; each reveal is in the audit log.

Customers come from ``customers.actions.observe_batch`` (tests/customer_factories.py); every
check runs on SQLite (the database file itself, and its write-ahead log) and PostgreSQL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from siyu.cli.main import app as cli_app
from siyu.core.audit import AuditEntry
from siyu.core.db import Base
from siyu.org.permissions import API_SCOPES
from tests.customer_factories import (
    LI_PHONE,
    PHONES,
    WANG_PHONE,
    ZHANG_EMAIL,
    ZHANG_MASKED,
    ZHANG_NAME,
    ZHANG_PHONE,
    Cast,
    seed_customers,
)
from tests.factories import api_key, login

# Personal values that must never be stored or shown in plain text.
SECRETS = (*PHONES, ZHANG_EMAIL, ZHANG_NAME)
# Values stored in plain text on purpose: finding them proves the scans read real data.
PLAIN = ("M-PII-001", "wmZhang001")
MASKED = {ZHANG_PHONE: ZHANG_MASKED, LI_PHONE: "139****1111", WANG_PHONE: "137****2222"}


@pytest.fixture
def cast(db: Session, world: Any) -> Cast:
    found = seed_customers(db)
    db.commit()
    return found


def cli(*args: str, code: int = 0) -> str:
    # the data dir holds the PII key: the CLI must use the one the customers were stored with
    data_dir = os.environ["SIYU_DATA_DIR"]
    result = CliRunner().invoke(cli_app, [*args, "--data-dir", data_dir])
    assert result.exit_code == code, result.output
    return result.output


def reveals(db: Session) -> list[tuple[str | None, str, str]]:
    db.rollback()  # see what the app and the CLI committed in their own sessions
    rows = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "customer.reveal").order_by(AuditEntry.id)
    )
    return [(e.entity_id, e.actor_label, (e.after or {}).get("field", "")) for e in rows]


# ---------------------------------------------------------------- (a) at rest


def test_phones_are_unreadable_in_the_database_file(
    engine: Engine, db: Session, cast: Cast
) -> None:
    db.close()
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        with engine.connect() as conn:  # the log first, then the file after a checkpoint
            raw = _file_bytes(path)
            conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        raw += _file_bytes(path)
        for value in PLAIN:
            assert value.encode() in raw, value
        for secret in SECRETS:
            assert secret.encode() not in raw, secret
    # and no column of any table holds one, whatever its type
    dump = _table_text(engine)
    for value in PLAIN:
        assert value in dump, value
    for secret in SECRETS:
        assert secret not in dump, secret
    assert ZHANG_MASKED in dump


def _file_bytes(path: Path) -> bytes:
    out = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return out + (wal.read_bytes() if wal.exists() else b"")


def _table_text(engine: Engine) -> str:
    parts = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if engine.dialect.name == "postgresql":
                sql = f'SELECT CAST(t AS text) FROM "{table.name}" AS t'
            else:
                sql = f'SELECT * FROM "{table.name}"'
            parts.extend(str(tuple(row)) for row in conn.execute(text(sql)))
    return "\n".join(parts)


# ---------------------------------------------------------------- (b) API


def test_api_shows_masked_phones_only(client: Any, db: Session, cast: Cast) -> None:
    key = api_key(db, "a-coffee", *API_SCOPES)
    headers = {"Authorization": f"Bearer {key}"}
    r = client.get("/api/v1/brands/a-coffee/customers", headers=headers)
    assert r.status_code == 200
    assert {row["phone"] for row in r.json()} == set(MASKED.values())
    r = client.get("/api/v1/brands/a-coffee/customers", params={"q": ZHANG_PHONE}, headers=headers)
    assert [row["phone"] for row in r.json()] == [ZHANG_MASKED]
    for cid in (cast.zhang, cast.li, cast.wang):
        r = client.get(f"/api/v1/brands/a-coffee/customers/{cid}", headers=headers)
        assert r.status_code == 200
        assert not [s for s in SECRETS if s in r.text], r.text
    phones = [i for i in r.json()["identities"] if i["type"] == "phone"]
    assert [p["value"] for p in phones] == [MASKED[WANG_PHONE]]


# ---------------------------------------------------------------- (c) console


def test_console_shows_masked_phones_only(client: Any, cast: Cast) -> None:
    login(client, "a.admin")  # allowed to reveal, but has not
    listing = client.get("/b/a-coffee/customers").text
    assert all(masked in listing for masked in MASKED.values())
    pages = [listing] + [
        client.get(f"/b/a-coffee/customers/{cid}").text for cid in (cast.zhang, cast.li, cast.wang)
    ]
    for page in pages:
        assert not [s for s in SECRETS if s in page]
    assert ZHANG_MASKED in pages[1]
    # searching by the full number finds the customer; the results show it masked (the
    # search box keeps what the user typed)
    found = client.get("/b/a-coffee/customers", params={"q": ZHANG_PHONE}).text
    results = found[found.index('id="customer-results"') :]
    assert ZHANG_MASKED in results and ZHANG_PHONE not in results


# ---------------------------------------------------------------- (d) CLI


def test_cli_shows_masked_phones_only(db: Session, cast: Cast) -> None:
    out = cli("customers", "show", cast.zhang, "--brand", "a-coffee")
    assert ZHANG_MASKED in out and not [s for s in SECRETS if s in out]
    out = cli("customers", "search", ZHANG_PHONE, "--brand", "a-coffee", "--json")
    assert [row["phone"] for row in json.loads(out)] == [ZHANG_MASKED]
    out = cli("customers", "show", cast.zhang, "--brand", "a-coffee", "--json")
    assert not [s for s in SECRETS if s in out]
    assert reveals(db) == []  # looking is not revealing


# ---------------------------------------------------------------- (e) reveal with permission


def test_api_reveal_needs_permission_and_is_audited(client: Any, db: Session, cast: Cast) -> None:
    url = f"/api/v1/brands/a-coffee/customers/{cast.zhang}:reveal"
    # a guide serving this very customer may not reveal
    guide = login(client, "a.guide")
    assert client.get(f"/api/v1/brands/a-coffee/customers/{cast.zhang}").status_code == 200
    r = client.post(url, json={"field": "phone"}, headers=guide)
    assert r.status_code == 403 and r.json()["code"] == "auth.permission_denied"
    assert ZHANG_PHONE not in r.text
    # nor may an API key without the scope
    key = api_key(db, "a-coffee", "customers.read")
    r = client.post(url, json={"field": "phone"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["code"] == "auth.missing_scope"
    assert reveals(db) == []
    # an admin may; each reveal is audited, without the value
    admin = login(client, "a.admin")
    r = client.post(url, json={"field": "phone"}, headers=admin)
    assert r.status_code == 200 and r.json() == {"field": "phone", "value": ZHANG_PHONE}
    r = client.post(url, json={"field": "email"}, headers=admin)
    assert r.json()["value"] == ZHANG_EMAIL
    assert reveals(db) == [
        (cast.zhang, "A.ADMIN (a.admin)", "phone"),
        (cast.zhang, "A.ADMIN (a.admin)", "email"),
    ]
    audit = client.get("/b/a-coffee/audit").text
    assert audit.count("customer.reveal") == 2 and ZHANG_PHONE not in audit


def test_console_reveal_needs_permission_and_is_audited(
    client: Any, db: Session, cast: Cast
) -> None:
    url = f"/b/a-coffee/customers/{cast.zhang}/reveal"
    guide = login(client, "a.guide")
    r = client.post(url, data={"field": "phone"}, headers={**guide, "HX-Request": "true"})
    assert r.status_code == 403 and 'data-code="auth.permission_denied"' in r.text
    assert ZHANG_PHONE not in r.text
    assert reveals(db) == []
    admin = login(client, "a.admin")
    r = client.post(url, data={"field": "phone"}, headers={**admin, "HX-Request": "true"})
    assert r.status_code == 200 and ZHANG_PHONE in r.text
    assert reveals(db) == [(cast.zhang, "A.ADMIN (a.admin)", "phone")]
    # revealing is not remembered: the next view is masked again
    page = client.get(f"/b/a-coffee/customers/{cast.zhang}").text
    assert ZHANG_PHONE not in page and ZHANG_MASKED in page


def test_cli_reveal_is_audited(db: Session, cast: Cast) -> None:
    out = cli("customers", "show", cast.zhang, "--brand", "a-coffee", "--reveal", "phone")
    assert f"revealed.phone  {ZHANG_PHONE}" in out
    out = cli(
        "customers",
        "show",
        cast.zhang,
        "--brand",
        "a-coffee",
        "--reveal",
        "name",
        "--reveal",
        "email",
        "--json",
    )
    assert json.loads(out)["revealed"] == {"name": ZHANG_NAME, "email": ZHANG_EMAIL}
    assert reveals(db) == [
        (cast.zhang, "cli", "phone"),
        (cast.zhang, "cli", "name"),
        (cast.zhang, "cli", "email"),
    ]
    out = cli("customers", "show", cast.wang, "--brand", "a-coffee", "--reveal", "email", code=2)
    assert "[customers.field_empty]" in out
    out = cli("customers", "show", cast.wang, "--brand", "a-coffee", "--reveal", "x", code=2)
    assert "[customers.bad_reveal_field]" in out
