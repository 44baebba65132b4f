"""Test fixtures: every store test runs on SQLite and on PostgreSQL.

- ``db_url`` is parametrised: ``sqlite`` (a migrated template file copied per test) and
  ``pg`` (one database per test session at 127.0.0.1:5432, truncated between tests).
- ``world`` builds a small multi-tenant cast through the real actions.
- ``client`` is an HTTP client over the real ASGI app bound to the test database.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("SIYU_ARGON2_PROFILE", "fast")

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.core.db import Base, make_engine, session_factory
from siyu.core.settings import reset_settings

PG_ADMIN = os.environ.get("SIYU_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN.replace("+psycopg", ""), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SIYU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from siyu.migrations import upgrade

    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    from siyu.core.db import dispose_engines

    dispose_engines()
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if os.environ.get("SIYU_SKIP_PG") == "1":
        pytest.skip("SIYU_SKIP_PG=1")
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL not reachable")
    import psycopg

    name = f"siyu_test_{os.getpid()}"
    admin = PG_ADMIN.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    from siyu.migrations import upgrade

    upgrade(url)
    from siyu.core.db import dispose_engines

    dispose_engines()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "siyu.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def engine(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SIYU_DATABASE_URL", db_url)
    reset_settings()
    from siyu.migrations import load_models

    load_models()
    eng = make_engine(db_url)
    if eng.dialect.name == "postgresql":
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with eng.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    session = session_factory(engine)()
    yield session
    session.close()


@dataclass
class World:
    """A small cast: agency ``acme`` with brands ``a-coffee`` and ``a-tea``; brand ``b-shop``
    belongs to nobody's agency (another tenant). Passwords are all ``password123``."""

    password: str = "password123"


@pytest.fixture
def world(db: Session) -> World:
    from tests.factories import build_world

    build_world(db)
    return World()


@pytest.fixture
def app(engine: Engine):  # type: ignore[no-untyped-def]
    from siyu.server import create_app

    application = create_app()
    application.state.session_factory = session_factory(engine)
    return application


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c
