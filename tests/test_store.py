"""The operational store: migrations from empty on SQLite and PostgreSQL, no missing
migration, UTC storage, atomic actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.db import Base, atomic, make_engine, on_commit
from siyu.core.errors import Conflict
from siyu.core.tenancy import SYSTEM
from siyu.migrations import load_models, missing_changes, upgrade
from siyu.org import actions, queries
from siyu.org.models import Agency
from siyu.org.schemas import AgencyIn, UnitIn


def test_migrations_apply_from_empty_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = make_engine(url)
    load_models()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    assert missing_changes(engine) == []


@pytest.mark.pg
def test_migrations_apply_from_empty_on_postgresql() -> None:
    import psycopg

    from tests.conftest import PG_ADMIN, _pg_available

    if not _pg_available():
        pytest.skip("PostgreSQL not reachable")
    name = "siyu_migrate_from_empty"
    admin = PG_ADMIN.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        engine = make_engine(url)
        load_models()
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert missing_changes(engine) == []
        engine.dispose()
    finally:
        from siyu.core.db import dispose_engines

        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_no_migration_is_missing(engine: Engine) -> None:
    assert missing_changes(engine) == []


def test_datetimes_come_back_aware_utc(db: Session) -> None:
    shanghai = timezone(timedelta(hours=8))
    agency = actions.create_agency(db, SYSTEM, AgencyIn(slug="tz-test", name="tz"))
    agency.created_at = datetime(2026, 1, 1, 8, 0, tzinfo=shanghai)
    with atomic(db):
        pass
    db.expire_all()
    loaded = db.get(Agency, agency.id)
    assert loaded is not None
    assert loaded.created_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert loaded.created_at.tzinfo is not None


def test_naive_datetimes_are_refused(db: Session) -> None:
    agency = actions.create_agency(db, SYSTEM, AgencyIn(slug="naive", name="n"))
    agency.created_at = datetime(2026, 1, 1)
    with pytest.raises(Exception, match="naive"):
        db.flush()
    db.rollback()


def test_failed_action_leaves_nothing_and_runs_no_hook(db: Session, world: object) -> None:
    brand = queries.access_brand(db, SYSTEM, "a-coffee")
    ran: list[str] = []
    audit_before = len(db.scalars(select(AuditEntry)).all())
    with pytest.raises(Conflict), atomic(db):
        actions.create_unit(db, SYSTEM, brand, UnitIn(code="OK1", name="x", parent="A-HQ"))
        on_commit(db, lambda: ran.append("hook"))
        actions.create_unit(db, SYSTEM, brand, UnitIn(code="A-HQ", name="dup"))
    assert ran == []
    assert queries.resolve_unit(db, brand, "OK1") is None
    assert len(db.scalars(select(AuditEntry)).all()) == audit_before


def test_hooks_run_after_commit(db: Session) -> None:
    ran: list[str] = []
    with atomic(db):
        actions.create_agency(db, SYSTEM, AgencyIn(slug="hooked", name="h"))
        on_commit(db, lambda: ran.append("after"))
        assert ran == []
    assert ran == ["after"]
