"""Acceptance 4 of the SOP engine on the demo brand: the dry-run shows per-day touches,
pressure and guide workload, and matches what actual runs then do over the same days.

SQLite only: the demo lives in a data directory (store + lake), as ``siyu demo`` builds it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.core.clock import utcnow
from siyu.core.db import dispose_engines, open_session
from siyu.core.settings import reset_settings
from siyu.core.tenancy import SYSTEM
from siyu.org import queries
from siyu.sop import engine
from siyu.sop.models import GuideTask, Outbox, Sop
from siyu.tags.compute import local_day


def test_demo_dry_run_matches_the_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the demo (its SOPs enabled from the templates and today planned)
    data = tmp_path / "demo"
    monkeypatch.setenv("SIYU_DATA_DIR", str(data))
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    reset_settings()
    dispose_engines()
    r = CliRunner().invoke(
        app, ["demo", "--no-serve", "--customers", "800", "--days", "120", "--data-dir", str(data)]
    )
    assert r.exit_code == 0, r.output
    reset_settings()
    dispose_engines()
    with open_session() as db:
        brand = queries.access_brand(db, SYSTEM, "demo-coffee")
        assert db.scalar(select(func.count()).select_from(Sop).where(Sop.brand_id == brand.id))
        start = local_day(utcnow(), brand.timezone) + timedelta(days=1)
        before = db.scalar(select(func.count()).select_from(Outbox)) or 0
        tasks_before = db.scalar(select(func.count()).select_from(GuideTask)) or 0
        # when the next five days are simulated, then run
        sim = engine.simulate(db, SYSTEM, brand, start, 5)
        assert (db.scalar(select(func.count()).select_from(Outbox)) or 0) == before
        runs = [engine.run_day(db, SYSTEM, brand, start + timedelta(days=k)) for k in range(5)]
        # then every day the run did what the dry-run showed
        for planned, run in zip(sim["days"], runs, strict=True):
            for key in ("candidates", "status", "reasons", "sent_by_sop", "guides"):
                assert planned[key] == run.counts[key], (planned["day"], key)
        # and the dry-run had something to show: touches per day, pressure and workload
        sent = sum(sum(d["sent_by_sop"].values()) for d in sim["days"])
        assert sent > 0 and sum(sim["pressure"].values()) > 0
        # every sent touch is an outbox row or a guide task, once
        outbox = (db.scalar(select(func.count()).select_from(Outbox)) or 0) - before
        tasks = (db.scalar(select(func.count()).select_from(GuideTask)) or 0) - tasks_before
        assert outbox + tasks == sent
    dispose_engines()
