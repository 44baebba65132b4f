"""``siyu sop …``: SOP definitions, templates, the breathing policy and the decision explorer.

siyu sop templates --brand demo-coffee
siyu sop add --brand demo-coffee --template dormant_winback
siyu sop add --brand demo-coffee --file member_day.json
siyu sop list --brand demo-coffee
siyu sop show dormant_winback --brand demo-coffee --json
siyu sop enable dormant_winback --brand demo-coffee
siyu sop policy --brand demo-coffee --set '{"caps": {"day": 1, "week": 2, "month": 6}}'
siyu sop decisions --brand demo-coffee --customer 01J… --reason weekly_cap
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, locale, session
from siyu.cli.org import CLI
from siyu.core.errors import Invalid
from siyu.core.i18n import translate
from siyu.org.queries import access_brand

app = typer.Typer(
    help="SOPs: definitions, templates, breathing policy, decisions.", no_args_is_help=True
)

SopArg = Annotated[str, typer.Argument(help="SOP key (or id).")]


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid("validation.failed", reason=f"{what}: {exc}") from None


def _row(sop: Any) -> dict[str, Any]:
    c = sop.counts
    return {
        "key": sop.key,
        "name": sop.name,
        "status": sop.status,
        "priority": sop.priority,
        "audience": sop.audience.get("kind"),
        "version": sop.version,
        "active": c.active,
        "holdout": c.holdout,
        "sent_7d": c.sent_7d,
        "deferred_7d": c.deferred_7d,
        "suppressed_7d": c.suppressed_7d,
    }


@app.command("list")
@handled
def list_sops(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """The brand's SOPs with live counts (enrolments; decisions of the last 7 days)."""
    from siyu.sop import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        sops = queries.list_sops(db, CLI, b)
        if as_json:
            emit([s.model_dump(mode="json") for s in sops], True)
        else:
            emit([_row(s) for s in sops], False)


@app.command("show")
@handled
def show(sop: SopArg, brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """One SOP: its definition, steps and counts."""
    from siyu.sop import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        out = queries.show_sop(db, CLI, b, sop)
    if as_json:
        emit(out.model_dump(mode="json"), True)
        return
    emit(_row(out), False)
    typer.echo(f"audience: {json.dumps(out.audience, ensure_ascii=False)}")
    if out.schedule:
        typer.echo(f"schedule: {json.dumps(out.schedule, ensure_ascii=False)}")
    if out.goal_event:
        typer.echo(f"goal: {out.goal_event}   holdout: {out.holdout_pct}%")
    for i, step in enumerate(out.steps):
        rest = {k: v for k, v in step.items() if k != "type"}
        typer.echo(f"  {i}. {step['type']}  {json.dumps(rest, ensure_ascii=False)}")


@app.command("templates")
@handled
def templates(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """The ready-made templates and what each needs from the brand."""
    from siyu.sop import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        rows = [t.model_dump(mode="json") for t in queries.templates(db, CLI, b)]
    if as_json:
        emit(rows, True)
    else:
        emit(
            [
                {"key": r["key"], "name": r["name"], "needs": json.dumps(r["needs"] or {})}
                for r in rows
            ],
            False,
        )


@app.command("add")
@handled
def add(
    brand: BrandOpt,
    file: Annotated[
        Path | None, typer.Option("--file", help="A JSON definition (see docs/sop.md).")
    ] = None,
    template: Annotated[
        str | None, typer.Option("--template", help="A template key (siyu sop templates).")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key (default: the template's).")] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    overrides: Annotated[
        str | None,
        typer.Option("--overrides", help='JSON of fields to replace, e.g. {"priority": 70}.'),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Define an SOP (a draft) from a JSON file or a template; checked against the brand."""
    from siyu.core.validation import parse
    from siyu.sop import actions
    from siyu.sop.schemas import SopIn

    if (file is None) == (template is None):
        raise typer.BadParameter("give exactly one of --file and --template")
    extra = _json(overrides, "--overrides") if overrides else {}
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "sop.write")
        if template is not None:
            sop = actions.create_from_template(
                db, CLI, b, template, **{**extra, "key": key, "name": name}
            )
        else:
            assert file is not None
            data = _json(file.read_text(encoding="utf-8"), str(file))
            data.update({k: v for k, v in {**extra, "key": key, "name": name}.items() if v})
            sop = actions.create_sop(db, CLI, b, parse(SopIn, data))
        typer.echo(f"{sop.key}  {sop.name}  ({sop.status}, version {sop.version})")


def _switch(sop: str, brand: str, data_dir: Path | None, on: bool) -> None:
    from siyu.sop import actions

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "sop.write")
        fn = actions.enable_sop if on else actions.disable_sop
        done = fn(db, CLI, b, sop)
        typer.echo(f"{done.key}  {done.status}")


@app.command("enable")
@handled
def enable(sop: SopArg, brand: BrandOpt, data_dir: DataDir = None) -> None:
    """Switch an SOP on."""
    _switch(sop, brand, data_dir, True)


@app.command("disable")
@handled
def disable(sop: SopArg, brand: BrandOpt, data_dir: DataDir = None) -> None:
    """Switch an SOP off (enrolments are kept; nothing is planned for it)."""
    _switch(sop, brand, data_dir, False)


@app.command("delete")
@handled
def delete(sop: SopArg, brand: BrandOpt, data_dir: DataDir = None) -> None:
    """Delete a draft SOP."""
    from siyu.sop import actions

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "sop.write")
        actions.delete_sop(db, CLI, b, sop)
        typer.echo(f"deleted {sop}")


@app.command("policy")
@handled
def policy(
    brand: BrandOpt,
    set_: Annotated[
        str | None,
        typer.Option(
            "--set", help="Replace the policy: JSON settings over the defaults (docs/sop.md)."
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the brand's breathing policy, or replace it with --set."""
    from siyu.sop import actions

    with session(data_dir) as db:
        if set_ is not None:
            b = access_brand(db, CLI, brand, "sop.write")
            got = actions.set_policy(db, CLI, b, _json(set_, "--set")).as_dict()
        else:
            b = access_brand(db, CLI, brand, "customers.read")
            got = actions.get_policy(db, CLI, b).as_dict()
    if as_json:
        emit(got, True)
        return
    for name, value in got.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
        typer.echo(f"{name}: {shown}")


@app.command("decisions")
@handled
def decisions(
    brand: BrandOpt,
    customer: Annotated[str | None, typer.Option("--customer", help="Customer id.")] = None,
    sop: Annotated[str | None, typer.Option("--sop", help="SOP key.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="planned, sent, deferred or suppressed.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="A reason code, e.g. weekly_cap.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Why didn't a customer get a touch: each planned touch with its status, reason code,
    cause, send time and deferral."""
    from siyu.sop import queries

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        rows = [
            d.model_dump(mode="json")
            for d in queries.decisions(db, CLI, b, customer, sop, status, reason, limit)
        ]
    if as_json:
        emit(rows, True)
        return
    lang = locale()
    for r in rows:
        r["why"] = translate(f"ui.sop.reason.{r['reason']}", lang) if r["reason"] else ""
    emit(
        rows,
        False,
        [
            "due_at",
            "sop",
            "customer_id",
            "channel",
            "status",
            "reason",
            "cause",
            "send_at",
            "deferred_until",
            "why",
        ],
    )


@app.command("tasks")
@handled
def tasks(
    brand: BrandOpt,
    staff: Annotated[str, typer.Option("--staff", help="Guide: staff id or username.")],
    day: Annotated[str | None, typer.Option("--day", help="Brand-local day, YYYY-MM-DD.")] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """A guide's tasks for a day plus open overdue ones, ranked by expected value."""
    from siyu.sop import queries

    when = date.fromisoformat(day) if day else None
    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        rows = [t.model_dump(mode="json") for t in queries.guide_tasks(db, CLI, b, staff, when)]
    emit(
        rows,
        as_json,
        ["due_at", "kind", "title", "customer_id", "sop", "expected_value", "status", "overdue"],
    )


def _day(text: str | None, tz: str) -> date:
    from siyu.core.clock import local_today

    return date.fromisoformat(text) if text else local_today(tz)


@app.command("simulate")
@handled
def simulate(
    brand: BrandOpt,
    days: Annotated[int, typer.Option("--days", min=1, max=366)] = 30,
    start: Annotated[
        str | None, typer.Option("--start", help="First brand-local day (default today).")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """The dry-run: per day the touches each SOP would send, deferrals and suppressions by
    reason, each guide's workload, and the pressure per customer. Nothing is written."""
    from siyu.sop import engine

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "customers.read")
        out = engine.simulate(db, CLI, b, _day(start, b.timezone), days)
    if as_json:
        emit(out, True)
        return
    rows = []
    for d in out["days"]:
        status = d.get("status", {})
        rows.append(
            {
                "day": d["day"],
                "candidates": d.get("candidates", 0),
                "sent": status.get("sent", 0),
                "deferred": status.get("deferred", 0),
                "suppressed": status.get("suppressed", 0),
                "sent_by_sop": json.dumps(d.get("sent_by_sop", {}), ensure_ascii=False),
            }
        )
    emit(rows, False)
    typer.echo(f"pressure (touches per customer: customers): {json.dumps(out['pressure'])}")


@app.command("run")
@handled
def run(
    brand: BrandOpt,
    day: Annotated[
        str | None, typer.Option("--day", help="Brand-local day to plan (default today).")
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan one brand-local day for real: enrol, advance, decide, write the outbox and guide
    tasks. Safe to rerun: nothing is sent twice."""
    from siyu.sop import engine

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "sop.write")
        done = engine.run_day(db, CLI, b, _day(day, b.timezone))
        counts = dict(done.counts or {})
        decided = counts.pop("status", {})  # the run's own status comes first
        out = {"run": done.id, "day": str(done.day), "status": done.status, "decisions": decided}
        out.update(counts)
    if as_json:
        emit(out, True)
    else:
        for name, value in out.items():
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
            typer.echo(f"{name}: {shown}")
