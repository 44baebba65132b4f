"""Channel adapters against loopback servers, and the outbox dispatcher on the store."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu import jobs
from siyu.channels import sms, webhook
from siyu.channels.base import Capabilities, Channel, Message, Outcome
from siyu.channels.console import ConsoleChannel
from siyu.channels.dispatcher import RetryPolicy, claim, dispatch
from siyu.channels.email import EmailChannel, SmtpConfig
from siyu.core.clock import utcnow
from siyu.core.db import session_factory
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _msg(channel: str = "email", to: str | None = "ann@example.com", **content: Any) -> Message:
    payload: dict[str, Any] = {"content": content}
    if to:
        payload["to"] = to
    return Message("brand1", f"key-{new_id()}", channel, "cust1", payload)


# ---------------------------------------------------------------- e-mail (aiosmtpd)


class _Handler:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_reply: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.rcpt_reply:
            return self.rcpt_reply[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtpd() -> Iterator[tuple[_Handler, int]]:
    from aiosmtpd.controller import Controller

    handler, port = _Handler(), _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_email_arrives_at_a_real_local_smtp_server(smtpd: tuple[_Handler, int]) -> None:
    handler, port = smtpd
    channel = EmailChannel(
        SmtpConfig(host="127.0.0.1", port=port, sender="a@brand.test", starttls=False)
    )
    assert isinstance(channel, Channel)
    message = _msg(subject="生日快乐", text="Hello Ann", html="<p>Hello</p>")
    outcome = channel.send(message)
    assert outcome.status == "sent", outcome
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "a@brand.test"
    assert envelope.rcpt_tos == ["ann@example.com"]
    data = envelope.content.decode()
    assert "Hello Ann" in data and f"X-Siyu-Idempotency-Key: {message.idem_key}" in data
    # the same message twice carries the same Message-ID (receivers can drop duplicates)
    assert channel.build(message)["Message-ID"] == channel.build(message)["Message-ID"]

    handler.rcpt_reply = {"gone@example.com": "550 no such user", "busy@example.com": "451 later"}
    assert channel.send(_msg(to="gone@example.com", subject="x")).status == "permanent"
    assert channel.send(_msg(to="busy@example.com", subject="x")).status == "transient"
    assert channel.send(_msg(to=None)).reason == "no_recipient"
    # STARTTLS requested but not offered by the server: a configuration fault, final
    tls = EmailChannel(SmtpConfig(host="127.0.0.1", port=port, starttls=True))
    assert tls.send(_msg(subject="x")).status == "permanent"


def test_email_unreachable_server_is_transient() -> None:
    channel = EmailChannel(
        SmtpConfig(host="127.0.0.1", port=_free_port(), starttls=False, timeout=2)
    )
    outcome = channel.send(_msg(subject="x"))
    assert outcome.status == "transient" and outcome.reason


# ---------------------------------------------------------------- loopback HTTP


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, str], bytes]]
    respond: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.requests.append((self.path, dict(self.headers.items()), body))
        status, answer = self.respond(self.path, dict(self.headers.items()), body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"requests": [], "respond": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_is_signed_and_classified(http_server: tuple[str, type[_Recorder]]) -> None:
    base, handler = http_server
    statuses = {"/ok": 204, "/down": 503, "/bad": 400, "/slow": 429}
    handler.respond = staticmethod(lambda path, headers, body: (statuses[path], b""))
    secret = b"brand-secret"
    endpoints = {
        name: webhook.WebhookEndpoint(f"{base}/{name}", secret) for name in ("ok", "down", "bad")
    }
    endpoints["slow"] = webhook.WebhookEndpoint(f"{base}/slow", secret)
    channel = webhook.WebhookChannel(endpoints, timeout=5)

    def send(brand: str) -> Outcome:
        return channel.send(Message(brand, "idem-1", "webhook", "c1", {"content": {"x": "中"}}))

    assert send("ok").status == "sent"
    _, headers, body = handler.requests[-1]
    ts, sig = headers["X-Siyu-Timestamp"], headers["X-Siyu-Signature"]
    assert headers["X-Siyu-Idempotency-Key"] == "idem-1"
    assert json.loads(body)["payload"]["content"]["x"] == "中"
    assert webhook.verify(secret, ts, body, sig)
    assert not webhook.verify(secret, ts, body.replace(b"idem-1", b"idem-2"), sig)
    assert not webhook.verify(b"other", ts, body, sig)
    assert not webhook.verify(secret, ts, body, sig, now=int(ts) + 3600)  # replayed late
    assert not webhook.verify(secret, "nope", body, sig)

    assert send("down").status == "transient"
    assert send("slow").status == "transient"
    bad = send("bad")
    assert bad.status == "permanent" and bad.reason == "http 400"
    assert send("unknown-brand").reason == "webhook_not_configured"
    dead = webhook.WebhookChannel(
        {"x": webhook.WebhookEndpoint(f"http://127.0.0.1:{_free_port()}/", secret)}, timeout=2
    )
    assert dead.send(Message("x", "k", "webhook", None)).status == "transient"


def test_sms_provider_errors_are_classified(http_server: tuple[str, type[_Recorder]]) -> None:
    base, handler = http_server
    secret = b"sms-secret"
    answers = {
        "+8613800000001": (200, "OK"),
        "+8613800000002": (200, "THROTTLED"),
        "+8613800000003": (200, "INVALID_MOBILE"),
        "+8613800000004": (502, "-"),
        "+8613800000005": (200, "WHATEVER"),
        "+8613800000006": (400, "TEMPLATE_PARAMS_INVALID"),
    }

    def respond(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        good = (
            sms.signature(secret, headers["X-Sms-Timestamp"], headers["X-Sms-Nonce"], body)
            == headers["X-Sms-Signature"]
        )
        if path != "/v1/sms/send" or not good:
            return 200, json.dumps({"code": "SIGNATURE_INVALID"}).encode()
        status, code = answers[json.loads(body)["to"]]
        return status, json.dumps({"code": code, "message": "m", "biz_id": "b1"}).encode()

    handler.respond = staticmethod(respond)
    templates = {"brand1": {"birthday": sms.SmsTemplate("SMS_001", "A咖啡", ("name",))}}
    channel = sms.SmsChannel(sms.SmsProvider(base, "acct", secret, timeout=5), templates)

    def send(to: str, **content: Any) -> Outcome:
        content.setdefault("template", "birthday")
        content.setdefault("params", {"name": "Ann"})
        return channel.send(Message("brand1", "k1", "sms", "c1", {"to": to, "content": content}))

    ok = send("+8613800000001")
    assert ok.status == "sent" and ok.provider_id == "b1"
    sent = json.loads(handler.requests[-1][2])
    assert sent["template"] == "SMS_001" and sent["out_id"] == "k1"
    assert send("+8613800000002").status == "transient"
    assert send("+8613800000003").status == "permanent"
    assert send("+8613800000004").status == "transient"
    assert send("+8613800000005").status == "permanent"
    assert send("+8613800000006").status == "permanent"
    wrong = sms.SmsChannel(sms.SmsProvider(base, "acct", b"wrong"), templates)
    assert (
        wrong.send(
            Message(
                "brand1",
                "k",
                "sms",
                None,
                {
                    "to": "+8613800000001",
                    "content": {"template": "birthday", "params": {"name": "A"}},
                },
            )
        ).reason
        == "sms SIGNATURE_INVALID"
    )
    before = len(handler.requests)
    assert send("+8613800000001", template="nope").status == "permanent"
    assert send("+8613800000001", params={}).reason == "template_params_missing: name"
    assert len(handler.requests) == before  # refused before any request


# ---------------------------------------------------------------- dispatcher


class Scripted:
    """An adapter answering from a script per idempotency key (default: sent), counting."""

    capabilities = Capabilities()

    def __init__(self, name: str, script: dict[str, list[Outcome]] | None = None) -> None:
        self.name = name
        self.script = script or {}
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def send(self, message: Message) -> Outcome:
        with self.lock:
            self.calls[message.idem_key] += 1
        queue = self.script.get(message.idem_key)
        return queue.pop(0) if queue else Outcome.ok()


def _row(db: Session, brand_id: str, key: str, channel: str = "webhook", **kw: Any) -> Outbox:
    row = Outbox(
        id=new_id(),
        brand_id=brand_id,
        idem_key=key,
        channel=channel,
        customer_id=None,
        payload={"content": {"n": key}},
        status="pending",
        attempts=0,
        available_at=kw.pop("available_at", utcnow() - timedelta(seconds=1)),
        **kw,
    )
    db.add(row)
    return row


def _status(db: Session) -> dict[str, Outbox]:
    db.expire_all()
    return {r.idem_key: r for r in db.scalars(select(Outbox))}


@pytest.fixture
def brand_id(db: Session, world: Any) -> str:
    return access_brand(db, SYSTEM, "a-coffee").id


def test_dispatcher_sends_retries_and_fails(db: Session, brand_id: str) -> None:
    for key in ("ok", "flaky", "bad", "doomed"):
        _row(db, brand_id, key)
    _row(db, brand_id, "later", available_at=utcnow() + timedelta(hours=1))
    _row(db, brand_id, "wecom", channel="wecom_1to1")
    db.commit()
    adapter = Scripted(
        "webhook",
        {
            "flaky": [Outcome.transient("503")],
            "bad": [Outcome.permanent("http 400")],
            "doomed": [Outcome.transient("down")] * 5,
        },
    )
    policy = RetryPolicy(max_attempts=3, base=timedelta(seconds=60))
    adapters: dict[str, Channel] = {"webhook": adapter}
    start = utcnow()
    assert dispatch(db, 100, adapters=adapters, policy=policy, rng=random.Random(1)) == 4
    rows = _status(db)
    assert rows["ok"].status == "sent" and rows["ok"].sent_at is not None
    assert rows["bad"].status == "failed" and rows["bad"].error == "http 400"
    flaky = rows["flaky"]
    assert flaky.status == "pending" and flaky.attempts == 1 and flaky.error == "503"
    assert start + timedelta(seconds=30) <= flaky.available_at <= utcnow() + timedelta(seconds=60)
    assert rows["later"].status == "pending" and rows["later"].attempts == 0
    wecom = rows["wecom"]  # no adapter yet: untouched
    assert wecom.status == "pending" and wecom.attempts == 0

    # nothing is due right now
    assert dispatch(db, 100, adapters=adapters, policy=policy) == 0
    # later: the retries are due; the sent and failed rows are never sent again
    assert (
        dispatch(db, 100, adapters=adapters, policy=policy, now=utcnow() + timedelta(minutes=2))
        == 2
    )
    rows = _status(db)
    assert rows["flaky"].status == "sent" and rows["flaky"].attempts == 2
    assert rows["doomed"].status == "pending" and rows["doomed"].attempts == 2
    # the back-off grows: attempt 2 waits 60–120 s
    assert rows["doomed"].available_at >= utcnow() + timedelta(seconds=55)
    dispatch(db, 100, adapters=adapters, policy=policy, now=utcnow() + timedelta(hours=1))
    doomed = _status(db)["doomed"]
    assert doomed.status == "failed" and doomed.attempts == 3
    assert doomed.error == "max attempts (3): down"
    assert adapter.calls == Counter({"ok": 1, "flaky": 2, "bad": 1, "doomed": 3, "later": 1})


def test_adapter_exception_is_a_transient_failure(db: Session, brand_id: str) -> None:
    class Broken:
        name = "console"
        capabilities = Capabilities()

        def send(self, message: Message) -> Outcome:
            raise RuntimeError("boom")

    _row(db, brand_id, "k", channel="console")
    db.commit()
    assert dispatch(db, 10, adapters={"console": Broken()}) == 1
    row = _status(db)["k"]
    assert row.status == "pending" and "boom" in (row.error or "")


def test_killed_worker_rows_are_reclaimed(db: Session, brand_id: str) -> None:
    _row(db, brand_id, "k")
    db.commit()
    policy = RetryPolicy(lease=timedelta(minutes=5))
    now = utcnow()
    (claimed,) = claim(db, ["webhook"], 10, now, policy.lease)  # ... and the worker dies
    assert _status(db)["k"].status == "sending"
    adapter = Scripted("webhook")
    adapters: dict[str, Channel] = {"webhook": adapter}
    assert dispatch(db, 10, adapters=adapters, policy=policy, now=now + timedelta(minutes=1)) == 0
    later = now + timedelta(minutes=6)
    assert dispatch(db, 10, adapters=adapters, policy=policy, now=later) == 1
    row = _status(db)["k"]
    assert row.status == "sent" and row.attempts == 2 and adapter.calls["k"] == 1
    # the dead worker's late report is fenced out: the newer claim's result stands
    from siyu.channels.dispatcher import record

    assert record(db, claimed.row_id, claimed.deadline, 1, Outcome.permanent("x"), policy) == ""
    assert _status(db)["k"].status == "sent"


def test_worker_job_registered(db: Session, brand_id: str) -> None:
    assert "channels.outbox" in {k.name for k in jobs.kinds()}
    _row(db, brand_id, "demo", channel="console")
    db.commit()
    handled = jobs.run_once(session_factory(db.get_bind()))  # type: ignore[arg-type]
    assert handled["channels.outbox"] == 1
    assert _status(db)["demo"].status == "sent"


def test_console_channel_records() -> None:
    console = ConsoleChannel()
    assert console.send(_msg(channel="console")).status == "sent"
    assert len(console.sent) == 1


@pytest.mark.pg
def test_two_workers_never_send_a_row_twice(db: Session, brand_id: str, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL (SQLite runs one worker)")
    for i in range(400):
        _row(db, brand_id, f"k{i}")
    db.commit()

    class Slow(Scripted):
        def send(self, message: Message) -> Outcome:
            time.sleep(0.001)
            return super().send(message)

    adapter = Slow("webhook")
    factory = session_factory(engine)
    errors: list[BaseException] = []
    per_worker: list[int] = [0, 0, 0]

    def work(i: int) -> None:
        try:
            with factory() as session:
                while n := dispatch(session, 25, adapters={"webhook": adapter}):
                    per_worker[i] += n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(per_worker) == 400 and min(per_worker) > 0
    assert set(adapter.calls.values()) == {1} and len(adapter.calls) == 400
    assert {r.status for r in _status(db).values()} == {"sent"}
