"""Alembic migrations of the operational store, run programmatically.

from siyu.migrations import upgrade, missing_changes
upgrade("sqlite:///siyu-data/siyu.db")
assert missing_changes(url) == []   # models and migrations agree
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from siyu.core.db import Base, get_engine

HERE = Path(__file__).parent


def load_models() -> None:
    """Import every module that defines tables, so ``Base.metadata`` is complete."""
    import siyu.channels.models
    import siyu.content.models
    import siyu.core.audit
    import siyu.customers.models
    import siyu.ingest.models
    import siyu.metrics.models
    import siyu.org.models
    import siyu.sop.models
    import siyu.tags.models
    import siyu.wecom.models  # noqa: F401


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    engine = get_engine(url)
    cfg = config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def missing_changes(engine: Engine) -> list[Any]:
    """Differences between the models and a migrated database (empty when none is missing)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    load_models()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))
