"""The ``siyu`` command.

siyu db upgrade
siyu org brand create demo-tea --name 思屿茶饮 --agency demo-agency
siyu serve --port 8000
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from siyu import __version__
from siyu.cli import bench, channels, content, customers, ingest, org, report, sop, tags, wecom
from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session, use_data_dir
from siyu.core.settings import get_settings
from siyu.core.validation import parse
from siyu.org import actions, queries
from siyu.org.schemas import ApiKeyIn, ApiKeyOut, AuditOut

app = typer.Typer(
    help="Siyu — the private-domain growth engine. Every command honours --data-dir / "
    "SIYU_DATA_DIR; the database is SIYU_DATABASE_URL (default: SQLite in the data dir).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Operational store (migrations).", no_args_is_help=True)
user_app = typer.Typer(help="Console users.", no_args_is_help=True)
apikey_app = typer.Typer(help="Brand API keys (the secret is shown once).", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org.app, name="org")
app.add_typer(customers.app, name="customers")
app.add_typer(customers.oneid_app, name="oneid")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(audit_app, name="audit")
app.add_typer(bench.app, name="bench")
app.add_typer(ingest.ingest_app, name="ingest")
app.add_typer(ingest.events_app, name="events")
app.add_typer(ingest.lake_app, name="lake")
app.add_typer(tags.app, name="tags")
app.add_typer(tags.segments_app, name="segments")
app.add_typer(tags.value_app, name="value")
app.add_typer(sop.app, name="sop")
app.add_typer(wecom.app, name="wecom")
app.add_typer(channels.app, name="channels")
app.add_typer(content.app, name="content")
app.command("worker")(ingest.worker)
app.command("report")(report.report)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@db_app.command("upgrade")
@handled
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply every pending migration."""
    from siyu.migrations import current, upgrade

    use_data_dir(data_dir)
    upgrade()
    typer.echo(f"database at revision {current()} ({_safe_url()})")


@db_app.command("current")
def db_current(data_dir: DataDir = None) -> None:
    """Print the database's migration revision."""
    from siyu.migrations import current

    use_data_dir(data_dir)
    typer.echo(current() or "(empty)")


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(get_settings().db_url).render_as_string(hide_password=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Serve the API (/api/v1) and the console (/) with uvicorn."""
    import uvicorn

    from siyu.migrations import upgrade

    use_data_dir(data_dir)
    upgrade()
    typer.echo(f"Siyu console: http://{host}:{port}/   API: http://{host}:{port}/api/v1/docs")
    uvicorn.run("siyu.server:create_app", factory=True, host=host, port=port, log_level="info")


@app.command("demo")
@handled
def demo(
    data_dir: DataDir = None,
    customers: Annotated[
        int, typer.Option("--customers", help="Customers over both brands.")
    ] = 20_000,
    days: Annotated[int, typer.Option("--days", help="Days of history.")] = 180,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 2026,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export", help="Where to write the source files (default DATA_DIR/demo-export)."
        ),
    ] = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Build the demo, do not serve.")
    ] = False,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    wecom_port: Annotated[
        int, typer.Option("--wecom-port", help="Port of the local WeCom server (0: none).")
    ] = 8030,
) -> None:
    """Build the demo agency (two brands, org trees, staff), generate their customers' data,
    export it as the files a brand hands over, import exactly those, compute the tags and
    segments, build a content library with an A/B test that ran ten days ago (clicks, replies,
    orders), a coupon SOP that ran three weeks ago with a 30% holdout (its effect measured
    against the holdout), KOC notes (one approved and rewarded, showing the customers its
    channel code brought), enable three SOPs and plan today, set up a contract with its KPI
    lines, and serve the console — with the local WeCom server connected to the first brand
    and a worker (callbacks, real-time SOPs, outbox)."""
    from siyu.core.money import format_fen
    from siyu.demo import campaign as demo_campaign
    from siyu.demo import content as demo_content
    from siyu.demo import koc as demo_koc
    from siyu.demo import metrics as demo_metrics
    from siyu.demo import sop as demo_sop
    from siyu.demo import tags as demo_tags
    from siyu.demo.export import export_brand, import_brand
    from siyu.demo.generate import generate
    from siyu.demo.org import build_demo_org
    from siyu.migrations import upgrade

    use_data_dir(data_dir)
    upgrade()
    folder = export or get_settings().resolved_data_dir / "demo-export"
    with session() as db:
        result = build_demo_org(db)
        for brand in generate(customers=customers, days=days, seed=seed):
            paths = export_brand(brand, folder / brand.shape.slug)
            typer.echo(
                f"{brand.shape.slug}: wrote {len(paths)} files to {folder / brand.shape.slug}"
            )
            for r in import_brand(db, folder / brand.shape.slug, brand.shape.slug):
                typer.echo(
                    f"  {r['file']}: {r['accepted']} stored, {r['duplicates']} already "
                    f"there, {r['rejected']} rejected ({r['seconds']} s)"
                )
            b = queries.access_brand(db, org.CLI, brand.shape.slug)
            codes = demo_metrics.setup(db, b, brand.shape)
            typer.echo(f"  channel codes: {codes} with their cost per customer")
            tagged = demo_tags.summary(demo_tags.setup(db, b))
            typer.echo(
                f"  tags: {tagged['status']}, {tagged['changes']} changes in {tagged['ms']} ms"
                + "".join(f"\n  tag {k} failed: {e}" for k, e in tagged["failed"].items())
            )
            made = demo_content.setup(db, b)
            typer.echo(
                f"  content: {made['materials']} materials, A/B test sent to "
                f"{made['ab_sent']} customers, {made['clicks']} tracking-link clicks "
                f"({made['ms']} ms)"
            )
            camp = demo_campaign.setup(db, b)
            typer.echo(
                f"  campaign: SOP {camp['sop']} ran three weeks ago on {camp['enrolled']} "
                f"customers ({camp['holdout']} held out), {camp['delivered']} delivered"
            )
            koc = demo_koc.setup(db, b)
            typer.echo(
                f"  koc: {koc['notes']} notes; the approved ones brought {koc['customers']} "
                f"customers, {koc['orders']} orders, GMV {format_fen(koc['gmv_fen'])}"
            )
            planned = demo_sop.summary(demo_sop.setup(db, b))
            typer.echo(
                f"  sops: {planned['status']}, {planned['enrolled']} enrolled, "
                f"{planned['candidates']} touches planned today {planned['by_status']}"
            )
    typer.echo(f"demo agency {result.agency_slug}: brands {', '.join(result.brands)}")
    typer.echo(
        f"sign in as {result.admin_username} / {result.password} "
        f"(also agency.am, coffee.hq, cf.mgr01, guide.shared — same password)"
    )
    if not no_serve:
        if wecom_port:
            _demo_wecom(result.brands[0], host, port, wecom_port)
        serve(host=host, port=port, data_dir=None)


def _demo_wecom(slug: str, host: str, port: int, wecom_port: int) -> None:
    """The local WeCom server for the demo brand, and the worker, in this process."""
    import threading

    from siyu import jobs
    from siyu.demo import wecom as demo_wecom
    from siyu.wecom.fake import FakeServer
    from siyu.wecom.fake_state import FakeWeCom

    fake = FakeWeCom()
    fake.configure(callback_url=f"http://{host}:{port}/wecom/callback/{slug}")
    server = FakeServer(fake, host="127.0.0.1", port=wecom_port)
    url = server.start()
    with session() as db:
        b = queries.access_brand(db, org.CLI, slug)
        counts = demo_wecom.setup(db, b, fake, url)
    typer.echo(
        f"local WeCom server: {url} ({slug}: {counts.get('staff', 0)} members, "
        f"{counts.get('contacts', 0)} contacts, {counts.get('groups', 0)} groups synced); "
        f"add a friend: curl -X POST {url}/fake/friends -H 'content-type: application/json' "
        f"""-d '{{"userid": "<guide userid>", "state": "xhs_note_spring"}}'"""
    )
    threading.Thread(target=jobs.run_forever, name="siyu-worker", daemon=True).start()


@app.command("openapi")
def openapi(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the OpenAPI schema of the API."""
    from siyu.server import create_app

    text = json.dumps(create_app().openapi(), ensure_ascii=False, indent=2, sort_keys=True)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@user_app.command("create-admin")
@handled
def create_admin(
    username: Annotated[str, typer.Option("--username")] = "admin",
    name: Annotated[str, typer.Option("--name")] = "Administrator",
    password: Annotated[
        str, typer.Option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a platform administrator who can see every agency and brand."""
    with session(data_dir) as db:
        staff = actions.create_admin(db, org.CLI, username, name, password)
        typer.echo(f"admin {staff.username} created")


@user_app.command("set-password")
@handled
def set_password(
    username: str,
    password: Annotated[
        str, typer.Option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    ] = "",
    data_dir: DataDir = None,
) -> None:
    """Set a staff member's console password (also lifts a lock-out)."""
    with session(data_dir) as db:
        actions.set_password(db, org.CLI, username, password)
        typer.echo(f"password of {username.lower()} set")


@apikey_app.command("create")
@handled
def apikey_create(
    brand: BrandOpt,
    name: Annotated[str, typer.Option("--name")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", help="Repeat: org.read, org.write, staff.write, audit.read, events.write, …"
        ),
    ],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key for a brand; the secret is printed once."""
    with session(data_dir) as db:
        b = queries.access_brand(db, org.CLI, brand, "apikeys.manage")
        key, secret = actions.create_api_key(
            db, org.CLI, b, parse(ApiKeyIn, {"name": name, "scopes": scope})
        )
        out = {**ApiKeyOut.model_validate(key).model_dump(), "key": secret}
        emit(out, as_json, ["id", "name", "scopes", "key"])


@apikey_app.command("list")
@handled
def apikey_list(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """List a brand's API keys (never their secrets)."""
    with session(data_dir) as db:
        b = queries.access_brand(db, org.CLI, brand, "apikeys.manage")
        emit(
            [
                ApiKeyOut.model_validate(k).model_dump()
                for k in queries.list_api_keys(db, org.CLI, b)
            ],
            as_json,
            ["id", "name", "prefix", "scopes", "last_used_at", "revoked_at"],
        )


@apikey_app.command("revoke")
@handled
def apikey_revoke(key_id: str, brand: BrandOpt, data_dir: DataDir = None) -> None:
    """Revoke an API key."""
    with session(data_dir) as db:
        b = queries.access_brand(db, org.CLI, brand, "apikeys.manage")
        actions.revoke_api_key(db, org.CLI, b, key_id)
        typer.echo(f"revoked {key_id}")


@audit_app.command("list")
@handled
def audit_list(
    brand: BrandOpt,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a brand's audit log, newest first."""
    with session(data_dir) as db:
        b = queries.access_brand(db, org.CLI, brand, "audit.read")
        emit(
            [
                AuditOut.model_validate(e).model_dump(mode="json")
                for e in queries.list_audit(db, org.CLI, b, limit=limit)
            ],
            as_json,
            ["at", "actor_label", "action", "entity_type", "entity_id"],
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
