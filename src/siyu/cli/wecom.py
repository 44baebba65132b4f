"""``siyu wecom …``: the local WeCom server (a test double), a connectivity check, and a
brand's full sync.

siyu wecom sync --brand demo-coffee

siyu wecom fake --port 8030 --seed demo \\
    --callback-url http://127.0.0.1:8000/wecom/callback/demo-coffee
siyu wecom ping --base-url http://127.0.0.1:8030 --corp-id wwfakecorp000001 --secret fake-secret
"""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from siyu.cli.common import BrandOpt, DataDir, JsonOpt, emit, handled, session
from siyu.wecom.fake_settings import FakeSettings

_D = FakeSettings()  # the local server's defaults

app = typer.Typer(
    help="WeCom: the local WeCom server for tests and the demo; API checks; sync.",
    no_args_is_help=True,
)


@app.command("fake")
@handled
def fake(
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port).")] = 8030,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    corp_id: Annotated[str, typer.Option("--corp-id")] = _D.corp_id,
    secret: Annotated[str, typer.Option("--secret", help="The app secret.")] = _D.secret,
    agent_id: Annotated[str, typer.Option("--agent-id")] = _D.agent_id,
    token: Annotated[
        str, typer.Option("--token", help="Callback token (≤ 32 letters/digits).")
    ] = _D.token,
    aes_key: Annotated[
        str, typer.Option("--aes-key", help="Callback EncodingAESKey (43 chars).")
    ] = _D.aes_key,
    callback_url: Annotated[
        str | None,
        typer.Option("--callback-url", help="Where signed, encrypted events are POSTed."),
    ] = None,
    seed: Annotated[
        str | None, typer.Option("--seed", help="'demo': departments, staff, customers, groups.")
    ] = None,
    token_ttl: Annotated[int, typer.Option("--token-ttl", help="access_token seconds.")] = 7200,
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Calls per API per minute before 45009.")
    ] = 10_000,
    quota_rule: Annotated[
        str,
        typer.Option(
            "--quota-rule",
            help="Mass messages a customer or group receives: monthly_days (as many a month "
            "as the month has days), monthly_4 (the older rule), weekly_7, daily_1.",
        ),
    ] = _D.quota_rule,
    monthly_quota: Annotated[
        int | None,
        typer.Option("--monthly-quota", help="A number a month, overriding --quota-rule."),
    ] = None,
) -> None:
    """Serve the local WeCom server (/cgi-bin/… like qyapi.weixin.qq.com, /fake/… to drive
    it) until interrupted."""
    import uvicorn

    from siyu.wecom.crypto import WeComCrypt
    from siyu.wecom.fake import FakeWeCom, create_fake_app

    WeComCrypt(token, aes_key, corp_id)  # refuse a bad token or key before serving
    if quota_rule not in ("monthly_days", "monthly_4", "weekly_7", "daily_1"):
        raise typer.BadParameter(quota_rule, param_hint="--quota-rule")
    if seed not in (None, "demo"):
        raise typer.BadParameter("only 'demo' is known", param_hint="--seed")
    state = FakeWeCom(
        FakeSettings(
            corp_id=corp_id,
            secret=secret,
            agent_id=agent_id,
            token=token,
            aes_key=aes_key,
            callback_url=callback_url,
            token_ttl=token_ttl,
            api_limit_per_minute=rate_limit,
            quota_rule=quota_rule,
            monthly_quota=monthly_quota,
        )
    )
    if seed == "demo":
        counts = state.seed_demo()
        typer.echo(
            f"seeded: {counts['users']} staff, {counts['customers']} customers, "
            f"{counts['group_chats']} groups"
        )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    typer.echo(
        f"local WeCom server on http://{host}:{port} (corp {corp_id}); "
        f"callbacks → {callback_url or '(none)'}"
    )
    config = uvicorn.Config(create_fake_app(state), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@app.command("ping")
@handled
def ping(
    corp_id: Annotated[str, typer.Option("--corp-id")],
    secret: Annotated[str, typer.Option("--secret", envvar="SIYU_WECOM_SECRET")],
    base_url: Annotated[
        str, typer.Option("--base-url", help="WeCom API root (the local server for tests).")
    ] = "https://qyapi.weixin.qq.com",
) -> None:
    """Fetch an access token and count departments and staff: checks corp id and secret."""
    from siyu.wecom.client import WeComClient

    with WeComClient(corp_id, secret, base_url=base_url) as client:
        client.get_access_token()
        deps = client.list_departments()
        users = client.list_users() if deps else []
        typer.echo(f"ok: {len(deps)} departments, {len(users)} staff")


@app.command("sync")
@handled
def sync_cmd(brand: BrandOpt, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Full sync of the brand's WeCom now: staff, corporate tags (both ways), contacts
    (new ones through the inbox to OneID), groups."""
    from siyu.cli.org import CLI
    from siyu.org.queries import access_brand
    from siyu.wecom import sync

    with session(data_dir) as db:
        b = access_brand(db, CLI, brand, "wecom.manage")
        counts = sync.sync_brand(db, CLI, b)
    if as_json:
        emit(counts, True)
        return
    typer.echo(
        f"{b.slug}: {counts['staff']} members ({len(counts['staff_unmapped'])} unmapped), "
        f"{counts['contacts']} contacts ({counts['contacts_new']} new, "
        f"{counts['contacts_gone']} gone), {counts['groups']} groups, "
        f"{counts['tags_pushed']} tag pushes, in {counts['seconds']} s"
    )
