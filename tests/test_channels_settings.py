"""Per-brand channel settings (API, encryption at rest, the dispatcher's adapter factory),
recipients from the PII vault, and the dead-letter API."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels import actions, webhook
from siyu.channels.dispatcher import dispatch
from siyu.channels.models import ChannelSetting
from siyu.core.audit import AuditEntry
from siyu.core.clock import utcnow
from siyu.core.errors import Conflict, Invalid
from siyu.core.ids import new_id
from siyu.core.settings import reset_settings
from siyu.core.tenancy import SYSTEM
from siyu.customers import actions as customer_actions
from siyu.customers.schemas import ObservationIn
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox
from tests.factories import login


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hooks:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def hook_server() -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hooks.got.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/in", hooks
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox, int, Mailbox]]:
    """Two local SMTP servers: the brand's own and the installation's."""
    from aiosmtpd.controller import Controller

    boxes = (Mailbox(), Mailbox())
    ports = (_free_port(), _free_port())
    controllers = [
        Controller(box, hostname="127.0.0.1", port=port)
        for box, port in zip(boxes, ports, strict=True)
    ]
    for c in controllers:
        c.start()
    try:
        yield ports[0], boxes[0], ports[1], boxes[1]
    finally:
        for c in controllers:
            c.stop()


def _row(db: Session, brand_id: str, key: str, channel: str, **kw: Any) -> Outbox:
    row = Outbox(
        id=new_id(),
        brand_id=brand_id,
        idem_key=key,
        channel=channel,
        customer_id=kw.pop("customer_id", None),
        payload=kw.pop("payload", {"content": {"subject": "Hi", "text": "Hello"}}),
        status=kw.pop("status", "pending"),
        attempts=kw.pop("attempts", 0),
        available_at=utcnow() - timedelta(seconds=1),
        **kw,
    )
    db.add(row)
    return row


def _rows(db: Session) -> dict[str, Outbox]:
    db.expire_all()
    db.rollback()
    return {r.idem_key: r for r in db.scalars(select(Outbox))}


def _customer(
    db: Session, brand: Any, ref: str, *ids: tuple[str, str], refuse: str | None = None
) -> str:
    identifiers = [{"type": t, "value": v} for t, v in ids] + [{"type": "member_no", "value": ref}]
    obs: dict[str, Any] = {
        "source": "crm",
        "observed_at": "2026-05-01T10:00:00+08:00",
        "identifiers": identifiers,
    }
    if refuse:
        kind = "email" if "@" in refuse else "phone"
        obs["consents"] = [
            {
                "identifier": {"type": kind, "value": refuse},
                "purpose": "marketing",
                "granted": False,
                "at": "2026-05-02T10:00:00+08:00",
            }
        ]
    (found,) = customer_actions.observe_batch(
        db, SYSTEM, brand, [ObservationIn.model_validate(obs)]
    )
    assert found.customer_id
    return found.customer_id


# ---------------------------------------------------------------- settings through the API


def test_settings_api_keeps_secrets_write_only_and_encrypted(
    client: Any, db: Session, world: Any
) -> None:
    headers = login(client, "a.admin")
    base = "/api/v1/brands/a-coffee/channel-settings"
    secret = "whsec-very-secret-value-1234"
    r = client.put(
        f"{base}/webhook",
        json={"url": "https://crm.example.com/in", "secret": secret},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["secret_set"] and out["secret_hint"] == "****1234" and secret not in r.text
    assert out["config"] == {"url": "https://crm.example.com/in"}
    listed = client.get(base, headers=headers).json()
    assert [s["channel"] for s in listed] == ["webhook", "sms", "email"]
    assert secret not in json.dumps(listed)
    # at rest: encrypted, and the audit trail never holds the secret
    db.rollback()
    row = db.scalar(select(ChannelSetting).where(ChannelSetting.channel == "webhook"))
    assert row is not None and row.secret_enc and secret not in row.secret_enc
    audit = db.scalars(select(AuditEntry).where(AuditEntry.action == "channels.settings.save"))
    assert secret not in json.dumps([(a.before, a.after) for a in audit])
    # an empty secret keeps the stored one
    r = client.put(f"{base}/webhook", json={"url": "https://crm.example.com/v2"}, headers=headers)
    assert r.status_code == 200 and r.json()["secret_set"]
    db.rollback()
    db.refresh(row)
    from siyu.customers import vault

    assert row.secret_enc and vault.decrypt(row.secret_enc) == secret

    sms = {
        "endpoint": "https://sms.example.com",
        "key_id": "acct-1",
        "secret": "sms-secret-abcdefgh",
        "sign_name": "A咖啡",
        "templates": {"birthday": {"template_id": "SMS_001", "variables": ["name"]}},
    }
    r = client.put(f"{base}/sms", json=sms, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["config"]["templates"]["birthday"]["template_id"] == "SMS_001"
    # bad input: a clear code and field
    bad = client.put(f"{base}/sms", json={**sms, "templates": {"Bad Code": {}}}, headers=headers)
    assert bad.status_code == 422
    bad = client.put(f"{base}/webhook", json={"url": "ftp://x"}, headers=headers)
    assert bad.status_code == 422 and "url" in bad.text
    no_secret = client.put(
        f"{base}/webhook",
        json={"url": "https://x.example.com/in", "clear_secret": True},
        headers=headers,
    )
    assert no_secret.status_code == 422
    assert no_secret.json()["code"] == "channels.secret_required"
    r = client.put(f"{base}/email", json={"from_address": "not-an-address"}, headers=headers)
    assert r.status_code == 422
    assert client.put(f"{base}/wecom", json={}, headers=headers).status_code == 422
    # a guide may not see or change channel settings
    client.cookies.clear()
    guide = login(client, "a.guide")
    assert client.get(base, headers=guide).status_code == 403
    assert (
        client.put(f"{base}/webhook", json={"url": "https://e.example"}, headers=guide).status_code
        == 403
    )


# ---------------------------------------------------------------- the adapter factory


def test_dispatcher_uses_each_brands_settings_with_global_fallback(
    db: Session,
    world: Any,
    hook_server: tuple[str, Hooks],
    smtp: tuple[int, Mailbox, int, Mailbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, hooks = hook_server
    own_port, own_box, global_port, global_box = smtp
    monkeypatch.setenv("SIYU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SIYU_SMTP_PORT", str(global_port))
    monkeypatch.setenv("SIYU_SMTP_STARTTLS", "false")
    monkeypatch.setenv("SIYU_SMTP_FROM", "noreply@siyu.test")
    reset_settings()
    coffee = access_brand(db, SYSTEM, "a-coffee")
    tea = access_brand(db, SYSTEM, "a-tea")
    shop = access_brand(db, SYSTEM, "b-shop")
    actions.save_settings(db, SYSTEM, coffee, "webhook", {"url": url, "secret": "coffee-secret"})
    actions.save_settings(
        db,
        SYSTEM,
        coffee,
        "email",
        {
            "from_address": "hello@coffee.test",
            "smtp_host": "127.0.0.1",
            "smtp_port": own_port,
            "smtp_starttls": False,
        },
    )
    actions.save_settings(db, SYSTEM, tea, "email", {"from_address": "tea@tea.test"})
    ann = _customer(db, coffee, "C1", ("email", "Ann@Example.com"))
    tom = _customer(db, tea, "T1", ("email", "tom@example.com"))
    bob = _customer(db, shop, "B1", ("email", "bob@example.com"))
    _row(db, coffee.id, "coffee-hook", "webhook", payload={"content": {"x": 1}})
    _row(db, shop.id, "shop-hook", "webhook", payload={"content": {"x": 1}})
    _row(db, coffee.id, "coffee-mail", "email", customer_id=ann)
    _row(db, tea.id, "tea-mail", "email", customer_id=tom)
    _row(db, shop.id, "shop-mail", "email", customer_id=bob)
    db.commit()
    assert dispatch(db, 100) == 5
    rows = _rows(db)
    assert rows["coffee-hook"].status == "sent"
    headers, body = hooks.got[0]
    assert webhook.verify(
        b"coffee-secret", headers["X-Siyu-Timestamp"], body, headers["X-Siyu-Signature"]
    )
    # b-shop has no webhook settings: a dead letter with a clear reason
    assert rows["shop-hook"].status == "failed" and rows["shop-hook"].reason == "not_configured"
    # a-coffee's own SMTP server and sender; the address came from the vault
    (mail,) = own_box.envelopes
    assert mail.mail_from == "hello@coffee.test" and mail.rcpt_tos == ["ann@example.com"]
    # a-tea: the installation's SMTP server with the brand's sender; b-shop: all global
    senders = sorted((e.mail_from, e.rcpt_tos[0]) for e in global_box.envelopes)
    assert senders == [
        ("noreply@siyu.test", "bob@example.com"),
        ("tea@tea.test", "tom@example.com"),
    ]
    # the outbox rows never held the addresses
    assert all("@" not in json.dumps(r.payload) for r in rows.values())
    # a disabled setting stops the channel for that brand
    actions.save_settings(
        db, SYSTEM, coffee, "webhook", {"url": url, "secret": "", "enabled": False}
    )
    _row(db, coffee.id, "coffee-hook-2", "webhook")
    db.commit()
    dispatch(db, 10)
    assert _rows(db)["coffee-hook-2"].reason == "not_configured"


# ---------------------------------------------------------------- recipients from the vault


def test_sms_recipient_consent_and_no_recipient(
    db: Session, world: Any, hook_server: tuple[str, Hooks]
) -> None:
    url, hooks = hook_server
    coffee = access_brand(db, SYSTEM, "a-coffee")
    base = url.rsplit("/", 1)[0]
    actions.save_settings(
        db,
        SYSTEM,
        coffee,
        "sms",
        {
            "endpoint": base,
            "key_id": "acct",
            "secret": "sms-secret",
            "sign_name": "A咖啡",
            "templates": {"hello": {"template_id": "SMS_9", "variables": ["name"]}},
        },
    )
    ann = _customer(db, coffee, "C1", ("phone", "13812345678"))
    nophone = _customer(db, coffee, "C2", ("email", "x@example.com"))
    refused = _customer(db, coffee, "C3", ("phone", "13900000003"), refuse="13900000003")
    content = {"template": "hello", "params": {"name": "Ann"}}
    for key, cid, kind in (
        ("ann", ann, "marketing"),
        ("nophone", nophone, "marketing"),
        ("refused-mkt", refused, "marketing"),
        ("refused-tx", refused, "transactional"),
        ("ghost", "01GHOSTCUSTOMER0000000000", "transactional"),
    ):
        _row(db, coffee.id, key, "sms", customer_id=cid, payload={"content": content, "kind": kind})
    db.commit()
    dispatch(db, 10)
    rows = _rows(db)
    # the loopback "provider" answers 204 without a JSON body: unreadable → transient; what
    # matters here is which rows reached it and with what number
    sent_to = sorted(json.loads(b)["to"] for _, b in hooks.got)
    assert sent_to == ["+8613812345678", "+8613900000003"]
    assert rows["nophone"].status == "failed" and rows["nophone"].reason == "no_recipient"
    assert "has no phone" in (rows["nophone"].error or "")
    assert rows["refused-mkt"].status == "failed" and rows["refused-mkt"].reason == "opted_out"
    assert rows["ghost"].reason == "no_recipient"
    assert rows["ann"].status == "pending" and rows["refused-tx"].status == "pending"
    assert all("138" not in json.dumps(r.payload) for r in rows.values())


# ---------------------------------------------------------------- dead letters


def test_dead_letter_api_lists_filters_and_retries(client: Any, db: Session, world: Any) -> None:
    coffee = access_brand(db, SYSTEM, "a-coffee")
    shop = access_brand(db, SYSTEM, "b-shop")
    for i in range(3):
        _row(db, coffee.id, f"dead-{i}", "sms", status="failed", attempts=8, reason="rejected")
    _row(db, coffee.id, "dead-mail", "email", status="failed", attempts=1, reason="no_recipient")
    _row(db, coffee.id, "ok", "email", status="sent", attempts=1)
    _row(db, coffee.id, "waiting", "sms")
    other = _row(db, shop.id, "shop-dead", "sms", status="failed", attempts=8, reason="rejected")
    db.commit()
    headers = login(client, "a.admin")
    base = "/api/v1/brands/a-coffee"
    dead = client.get(f"{base}/outbox", params={"status": "failed"}, headers=headers).json()
    assert {d["idem_key"] for d in dead} == {"dead-0", "dead-1", "dead-2", "dead-mail"}
    assert all(d["attempts"] >= 1 and d["reason"] for d in dead)
    sms = client.get(
        f"{base}/outbox", params={"status": "failed", "channel": "sms"}, headers=headers
    ).json()
    assert len(sms) == 3
    by_reason = client.get(
        f"{base}/outbox", params={"status": "failed", "reason": "no_recipient"}, headers=headers
    ).json()
    assert [d["idem_key"] for d in by_reason] == ["dead-mail"]
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert client.get(f"{base}/outbox", params={"since": future}, headers=headers).json() == []
    bad = client.get(f"{base}/outbox", params={"reason": "nope"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["code"] == "channels.bad_filter"

    summary = client.get(f"{base}/outbox-summary", headers=headers).json()
    counts = {c["channel"]: c for c in summary["channels"]}
    assert counts["sms"]["failed"] == 3 and counts["sms"]["pending"] == 1
    assert counts["email"]["sent"] == 1 and summary["total"]["failed"] == 4
    assert summary["reasons"] == {"no_recipient": 1, "rejected": 3}

    one = next(d for d in dead if d["idem_key"] == "dead-mail")
    r = client.post(f"{base}/outbox/{one['id']}:retry", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["attempts"] == 0
    assert r.json()["reason"] is None
    # a row that is not a dead letter, or another brand's, is refused and nothing changes
    again = client.post(f"{base}/outbox/{one['id']}:retry", headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "channels.not_dead_letter"
    ids = [d["id"] for d in sms]
    mixed = client.post(f"{base}/outbox:retry", json={"ids": [*ids, other.id]}, headers=headers)
    assert mixed.status_code == 404
    now = _rows(db)
    assert [now[f"dead-{i}"].status for i in range(3)] == ["failed"] * 3  # all or nothing
    r = client.post(f"{base}/outbox:retry", json={"ids": ids}, headers=headers)
    assert r.status_code == 200 and r.json()["retried"] == 3
    rows = _rows(db)
    assert all(rows[f"dead-{i}"].status == "pending" for i in range(3))
    assert rows["shop-dead"].status == "failed"
    db.rollback()
    audit = list(db.scalars(select(AuditEntry).where(AuditEntry.action == "outbox.retry")))
    assert len(audit) == 4 and all(a.before and a.before["status"] == "failed" for a in audit)


def test_retry_action_checks_state_and_permission(db: Session, world: Any) -> None:
    from siyu.org.auth import actor_for_staff
    from siyu.org.models import Staff

    coffee = access_brand(db, SYSTEM, "a-coffee")
    row = _row(db, coffee.id, "live", "sms")
    db.commit()
    with pytest.raises(Conflict):
        actions.retry(db, SYSTEM, coffee, [row.id])
    staff = db.scalar(select(Staff).where(Staff.username == "a.analyst"))
    assert staff is not None
    from siyu.core.errors import Forbidden

    with pytest.raises(Forbidden):
        actions.retry(db, actor_for_staff(db, staff), coffee, [row.id])
    with pytest.raises(Invalid):
        actions.save_settings(db, SYSTEM, coffee, "sms", {"endpoint": "https://x.example"})


# ---------------------------------------------------------------- the console pages


def test_console_outbox_and_settings_pages(client: Any, db: Session, world: Any) -> None:
    coffee = access_brand(db, SYSTEM, "a-coffee")
    dead = _row(db, coffee.id, "dead", "sms", status="failed", attempts=3, reason="opted_out")
    _row(db, coffee.id, "sent", "email", status="sent", attempts=1)
    db.commit()
    headers = login(client, "a.admin")
    page = client.get("/b/a-coffee/channels")
    assert page.status_code == 200
    assert 'data-key="dead"' in page.text and 'data-key="sent"' not in page.text
    assert "已退订" in page.text  # zh-CN by default
    assert client.get("/b/a-coffee/channels?status=sent").text.count('data-key="sent"') == 1
    bad = client.get("/b/a-coffee/channels?since=yesterday")
    assert bad.status_code == 422
    # retry without a CSRF token is refused; with it, re-queued and audited
    assert client.post("/b/a-coffee/channels/retry", data={"id": dead.id}).status_code == 403
    token = headers["X-CSRF-Token"]
    r = client.post(
        "/b/a-coffee/channels/retry",
        data={"id": dead.id, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "done=retried" in r.headers["location"]
    assert _rows(db)["dead"].status == "pending"
    nothing = client.post("/b/a-coffee/channels/retry", data={"csrf_token": token})
    assert nothing.status_code == 422

    en = client.get("/b/a-coffee/channels/settings?lang=en", follow_redirects=True)
    assert "Channel settings" in en.text
    r = client.post(
        "/b/a-coffee/channels/settings/sms",
        data={
            "csrf_token": token,
            "endpoint": "https://sms.example.com",
            "key_id": "acct",
            "sign_name": "A咖啡",
            "secret": "sms-secret-1234567",
            "templates": "birthday | SMS_001 | name, city\nbad line",
            "enabled": "1",
        },
    )
    assert r.status_code == 422 and "line 2" in r.text
    r = client.post(
        "/b/a-coffee/channels/settings/sms",
        data={
            "csrf_token": token,
            "endpoint": "https://sms.example.com",
            "key_id": "acct",
            "sign_name": "A咖啡",
            "secret": "sms-secret-1234567",
            "templates": "birthday | SMS_001 | name, city",
            "enabled": "1",
        },
        follow_redirects=True,
    )
    assert r.status_code == 200 and "SMS settings saved." in r.text
    assert "sms-secret-1234567" not in r.text and "****4567" in r.text
    assert "birthday | SMS_001 | name,city" in r.text
    db.rollback()
    stored = db.scalar(select(ChannelSetting).where(ChannelSetting.channel == "sms"))
    assert stored is not None
    assert stored.config["templates"]["birthday"] == {
        "template_id": "SMS_001",
        "variables": ["name", "city"],
        "sign_name": None,
    }
    # a guide has no channels page and no link to it
    client.cookies.clear()
    login(client, "a.guide")
    assert client.get("/b/a-coffee/channels").status_code == 403
    assert "/channels" not in client.get("/b/a-coffee/org").text


def test_every_reason_code_has_a_label_in_both_languages() -> None:
    from siyu.channels.base import REASONS
    from siyu.web.render import has_key

    for locale in ("zh-CN", "en"):
        assert all(has_key(f"ui.channels.reason.{r}", locale) for r in REASONS)
