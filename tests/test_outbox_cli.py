"""``siyu channels …`` and ``siyu worker --once --only channels.outbox`` from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.core.clock import utcnow
from siyu.core.db import make_engine, open_session
from siyu.core.ids import new_id
from siyu.core.settings import get_settings
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_outbox_from_the_command_line(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path / "cli")]
    run("db", "upgrade", *d)
    run("org", "brand", "create", "tea", "--name", "茶", *d)
    engine = make_engine(get_settings().db_url)
    with open_session(engine) as db:
        brand = access_brand(db, SYSTEM, "tea")
        for key, channel in (("ok", "console"), ("hook", "webhook")):
            db.add(
                Outbox(
                    id=new_id(),
                    brand_id=brand.id,
                    idem_key=key,
                    channel=channel,
                    payload={"content": {}},
                    status="pending",
                    attempts=0,
                    available_at=utcnow() - timedelta(seconds=1),
                )
            )
        db.commit()
    engine.dispose()
    done = json.loads(run("worker", "--once", "--only", "channels.outbox", *d).strip())
    assert done == {"channels.outbox": 2}
    run("worker", "--once", "--only", "nope", *d, code=2)
    summary = json.loads(run("channels", "summary", "--brand", "tea", "--json", *d))
    assert summary["total"]["sent"] == 1 and summary["reasons"] == {"not_configured": 1}
    dead = json.loads(
        run("channels", "outbox", "--brand", "tea", "--status", "failed", "--json", *d)
    )
    assert [r["idem_key"] for r in dead] == ["hook"]
    settings = tmp_path / "hook.json"
    settings.write_text(json.dumps({"url": "http://127.0.0.1:9/x", "secret": "cli-secret-0001"}))
    shown = run("channels", "set", "webhook", "--brand", "tea", "--file", str(settings), *d)
    assert "cli-secret-0001" not in shown and "****0001" in shown
    assert "retried 1" in run("channels", "retry", "--brand", "tea", "--all-failed", *d)
    run("channels", "retry", dead[0]["id"], "--brand", "tea", *d, code=2)  # no longer failed
    assert "--all-failed" in run("channels", "retry", "--help")
