"""``siyu channels …``: the outbox (state counts, dead letters, retries) and channel settings.

siyu channels summary --brand demo-coffee
siyu channels outbox --brand demo-coffee --status failed --reason no_recipient
siyu channels retry 01J… 01J… --brand demo-coffee
siyu channels retry --all-failed --reason provider_timeout --brand demo-coffee
siyu channels settings --brand demo-coffee
siyu channels set webhook --brand demo-coffee --file webhook.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.cli.org import CLI
from siyu.core.errors import Invalid
from siyu.org.queries import access_brand

app = typer.Typer(
    help="Channels: outbox state, dead letters and retries, per-brand settings.",
    no_args_is_help=True,
)
PERMISSION = "channels.manage"


@app.command("summary")
@handled
def summary(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Outbox rows per channel and state, and dead letters per reason."""
    from siyu.channels import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, PERMISSION)
        out = queries.summary(db, CLI, b)
        if as_json:
            emit(out.model_dump(mode="json"), True)
        else:
            emit([c.model_dump() for c in [*out.channels, out.total]], False)
            for code, n in out.reasons.items():
                typer.echo(f"failed {code}: {n}")


@app.command("outbox")
@handled
def outbox(
    brand: BrandOpt,
    status: Annotated[
        str | None, typer.Option("--status", help="pending|sending|sent|failed")
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel")] = None,
    sop: Annotated[str | None, typer.Option("--sop", help="SOP key or id")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="a reason code")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Outbox rows, latest outcome first (``--status failed``: the dead letters)."""
    from siyu.channels import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, PERMISSION)
        rows = queries.outbox(
            db, CLI, b, status=status, channel=channel, sop=sop, reason=reason, limit=limit
        )
        if as_json:
            emit([r.model_dump(mode="json") for r in rows], True)
        else:
            keep = ("id", "channel", "status", "attempts", "reason", "idem_key")
            emit([{k: getattr(r, k) for k in keep} for r in rows], False)


@app.command("retry")
@handled
def retry(
    brand: BrandOpt,
    ids: Annotated[list[str] | None, typer.Argument(help="Outbox row ids")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Every dead letter (with the filters)")
    ] = False,
    channel: Annotated[str | None, typer.Option("--channel")] = None,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    data_dir: DataDir = None,
) -> None:
    """Re-queue dead letters (attempts back to 0; audited)."""
    from siyu.channels import actions, queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, PERMISSION)
        wanted = list(ids or [])
        if all_failed:
            rows = queries.outbox(
                db, CLI, b, status="failed", channel=channel, reason=reason, limit=1000
            )
            wanted += [r.id for r in rows]
        if not wanted:
            raise Invalid("validation.failed", reason="name ids or use --all-failed")
        done: list[str] = []
        for i in range(0, len(wanted), 500):
            done += actions.retry(db, CLI, b, wanted[i : i + 500])
        typer.echo(f"retried {len(done)}")


@app.command("settings")
@handled
def settings(brand: BrandOpt, data_dir: DataDir = None) -> None:
    """The brand's channel settings (secrets never shown: only whether one is set)."""
    from siyu.channels import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, PERMISSION)
        emit([s.model_dump(mode="json") for s in queries.settings(db, CLI, b)], True)


@app.command("set")
@handled
def set_settings(
    channel: Annotated[str, typer.Argument(help="webhook | sms | email")],
    brand: BrandOpt,
    file: Annotated[Path, typer.Option("--file", help="JSON settings (see docs/channels.md)")],
    data_dir: DataDir = None,
) -> None:
    """Replace the brand's settings of one channel from a JSON file."""
    from siyu.channels import actions, queries

    try:
        body: Any = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Invalid("validation.failed", reason=f"{file}: {exc}") from None
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, PERMISSION)
        actions.save_settings(db, CLI, b, channel, body)
        out = next(s for s in queries.settings(db, CLI, b) if s.channel == channel)
        emit(out.model_dump(mode="json"), True)
