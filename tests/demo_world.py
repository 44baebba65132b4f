"""A demo brand in its own data directory for a test module: the same steps as ``siyu demo``
(org, generated brand exported as the hand-over files and imported), on SQLite and a local
lake, small enough to stay quick.

    @pytest.fixture(scope="module")
    def demo(tmp_path_factory):
        with demo_dir(tmp_path_factory.mktemp("x")) as data:
            with open_session() as db:
                brand = build_coffee(db, data, customers=900)
                ...
            yield {"data": data, ...}
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from siyu.core.db import dispose_engines
from siyu.core.settings import reset_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@contextmanager
def demo_dir(data: Path) -> Iterator[Path]:
    """Point the process at ``data`` (a fresh store and lake, migrated) until the block ends."""
    from siyu.migrations import upgrade

    old = {k: os.environ.get(k) for k in ("SIYU_DATA_DIR", "SIYU_DATABASE_URL")}
    os.environ["SIYU_DATA_DIR"] = str(data)
    os.environ.pop("SIYU_DATABASE_URL", None)
    reset_settings()
    dispose_engines()
    upgrade()
    try:
        yield data
    finally:
        dispose_engines()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


def build_coffee(db: Session, data: Path, customers: int, days: int = 90) -> Any:
    """The demo org and its coffee brand (``customers`` generated over ``days``), imported
    from the files a brand hands over, tags and segments computed; the brand."""
    from siyu.core.tenancy import SYSTEM
    from siyu.demo import tags as demo_tags
    from siyu.demo.export import export_brand, import_brand
    from siyu.demo.generate import generate
    from siyu.demo.org import build_demo_org
    from siyu.org import queries as org_queries

    build_demo_org(db)
    coffee = next(
        b for b in generate(customers=customers, days=days) if b.shape.slug == "demo-coffee"
    )
    export_brand(coffee, data / "export")
    import_brand(db, data / "export", "demo-coffee")
    brand = org_queries.access_brand(db, SYSTEM, "demo-coffee")
    demo_tags.setup(db, brand)
    return brand


def point_at(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """For an ``at_demo`` fixture: this test (past the per-test data directory) on the
    module's demo."""
    monkeypatch.setenv("SIYU_DATA_DIR", str(demo["data"]))
    reset_settings()
    dispose_engines()
    yield demo
    dispose_engines()
