"""Operational store: engine, sessions, the declarative base and the transaction helper.

SQLite (one WAL file under the data directory) by default, PostgreSQL in production. Actions
own the transaction through :func:`atomic`; work that must happen only once the data is
committed is registered with :func:`on_commit`.

    with atomic(db):
        db.add(unit)
        on_commit(db, lambda: notify(unit.id))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    MetaData,
    String,
    Table,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from siyu.core.clock import as_utc, ensure_aware, utcnow
from siyu.core.ids import new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC; refuses naive values; always returns aware UTC (SQLite included)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else ensure_aware(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


def id_column() -> Mapped[str]:
    return mapped_column(String(26), primary_key=True, default=new_id)


def created_column() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # WAL makes NORMAL durable against application crashes; a bigger page cache keeps
            # the random-key indexes (hashes, ids) of bulk inserts in memory.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA cache_size=-131072")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, **kwargs)


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    if url is None:
        from siyu.core.settings import get_settings

        settings = get_settings()
        settings.ensure_data_dir()
        url = settings.db_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def open_session(engine: Engine | None = None) -> Iterator[Session]:
    db = session_factory(engine)()
    try:
        yield db
    finally:
        db.close()


def request_session(state: Any) -> Iterator[Session]:
    """A session for one HTTP request: the app's ``state.session_factory`` when set (tests
    bind the app to their database that way), else the configured store."""
    factory = getattr(state, "session_factory", None) or session_factory()
    db = factory()
    try:
        yield db
    finally:
        db.close()


_DEPTH = "siyu_atomic_depth"
_HOOKS = "siyu_on_commit"


@contextmanager
def atomic(db: Session) -> Iterator[Session]:
    """Commit when the outermost block ends without error, roll back otherwise.

    Nested blocks join the outer transaction, so an action may call another action and the
    whole stays one unit. After-commit hooks run only once the outermost commit succeeded.
    """
    depth = db.info.get(_DEPTH, 0)
    db.info[_DEPTH] = depth + 1
    try:
        yield db
        if depth == 0:
            db.commit()
    except BaseException:
        if depth == 0:
            db.rollback()
            db.info.pop(_HOOKS, None)
        raise
    finally:
        db.info[_DEPTH] = depth
    if depth == 0:
        hooks: list[Callable[[], None]] = db.info.pop(_HOOKS, [])
        for hook in hooks:
            hook()


def on_commit(db: Session, hook: Callable[[], None]) -> None:
    """Run ``hook`` after the current transaction commits (never if it rolls back)."""
    db.info.setdefault(_HOOKS, []).append(hook)


def _utc_param(value: datetime | None, sqlite: bool) -> datetime | None:
    """A datetime as the driver takes it: naive UTC on SQLite (as ``UTCDateTime`` stores),
    aware UTC elsewhere."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = as_utc(value)
    return value.replace(tzinfo=None) if sqlite else value


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, typed (for executemany statements without ORM overhead)."""
    return cast(Table, model.__table__)


def bulk_insert(db: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with one driver-level ``executemany``.

    SQLAlchemy's per-row parameter processing costs more than the database's own work for
    tens of thousands of rows; here values are converted once per column kind (UTC
    datetimes, JSON), column by column, and handed to the driver directly. Every row must
    carry every column named by the first row. A column that is None in every row and has
    no default is left out of the statement (the database stores NULL all the same).
    """
    if not rows:
        return
    import json

    conn = db.connection()
    dialect = conn.dialect
    sqlite = dialect.name == "sqlite"
    columns: list[str] = []
    values: list[list[Any]] = []
    for name in rows[0]:
        column = table.c[name]
        col = [row[name] for row in rows]
        if (
            column.default is None
            and column.server_default is None
            and not any(v is not None for v in col)
        ):
            continue
        col_type = column.type
        if isinstance(col_type, UTCDateTime):
            col = [_utc_param(v, sqlite) for v in col]
        elif isinstance(col_type, JSON):
            col = [None if v is None else json.dumps(v, ensure_ascii=False) for v in col]
        columns.append(name)
        values.append(col)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    marks = ", ".join(mark for _ in columns)
    # Only quoted identifiers from our own metadata are formatted in; values are bound.
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608
    params = list(zip(*values, strict=True))
    conn.exec_driver_sql(sql, params)
