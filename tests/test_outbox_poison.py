"""Bad input in the outbox: each poisonous row ends with its own reason code and the rows
around it are delivered in the same pass; the worker loop never stops."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu import jobs
from siyu.channels import actions
from siyu.channels.base import Capabilities, Message, Outcome
from siyu.channels.config import BrandAdapters
from siyu.channels.dispatcher import RetryPolicy, claim, dispatch
from siyu.core.clock import utcnow
from siyu.core.db import session_factory
from siyu.core.ids import new_id
from siyu.core.settings import reset_settings
from siyu.core.tenancy import SYSTEM
from siyu.customers import actions as customer_actions
from siyu.customers.models import Identity
from siyu.customers.schemas import ObservationIn
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox


class Provider:
    """A loopback webhook receiver and SMS provider; ``/slow`` answers too late."""

    def __init__(self) -> None:
        self.hooks: list[str] = []
        self.sms: list[dict[str, Any]] = []


@pytest.fixture
def provider() -> Iterator[tuple[str, Provider]]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.startswith("/slow"):
                time.sleep(2.5)
            if "/v1/sms/send" in self.path:
                state.sms.append(json.loads(body))
                answer = json.dumps({"code": "OK", "biz_id": "b"}).encode()
            else:
                state.hooks.append(self.headers.get("X-Siyu-Idempotency-Key", ""))
                answer = b"{}"
            try:
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the client gave up (time-out)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _row(db: Session, brand_id: str, key: str, channel: str, payload: Any, **kw: Any) -> None:
    db.add(
        Outbox(
            id=new_id(),
            brand_id=brand_id,
            idem_key=key,
            channel=channel,
            customer_id=kw.pop("customer_id", None),
            payload=payload,
            status="pending",
            attempts=0,
            available_at=utcnow() - timedelta(seconds=1),
            **kw,
        )
    )


def _rows(db: Session) -> dict[str, Outbox]:
    db.rollback()
    db.expire_all()
    return {r.idem_key: r for r in db.scalars(select(Outbox))}


def _customer(db: Session, brand: Any, phone: str) -> str:
    obs = ObservationIn.model_validate(
        {
            "source": "crm",
            "observed_at": "2026-05-01T10:00:00+08:00",
            "identifiers": [{"type": "phone", "value": phone}],
        }
    )
    (found,) = customer_actions.observe_batch(db, SYSTEM, brand, [obs])
    assert found.customer_id
    return found.customer_id


def test_poisonous_rows_fail_alone_with_specific_reasons(
    db: Session, world: Any, provider: tuple[str, Provider], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_CHANNEL_TIMEOUT", "1")
    reset_settings()
    base, state = provider
    coffee = access_brand(db, SYSTEM, "a-coffee")
    tea = access_brand(db, SYSTEM, "a-tea")
    actions.save_settings(
        db, SYSTEM, coffee, "webhook", {"url": f"{base}/hook", "secret": "s3cret"}
    )
    sms = {
        "endpoint": base,
        "key_id": "acct",
        "secret": "sms-secret",
        "sign_name": "A咖啡",
        "templates": {"hello": {"template_id": "SMS_1", "variables": ["name"]}},
    }
    actions.save_settings(db, SYSTEM, coffee, "sms", sms)
    actions.save_settings(db, SYSTEM, tea, "sms", {**sms, "endpoint": f"{base}/slow"})
    ann = _customer(db, coffee, "13800000001")
    tom = _customer(db, tea, "13800000002")
    broken = _customer(db, coffee, "13800000003")
    # a vault value that cannot be decrypted (damaged, or another installation's key)
    db.execute(
        update(Identity).where(Identity.customer_id == broken).values(value_enc="v1:AAAAAAAA")
    )
    hello = {"template": "hello", "params": {"name": "Ann"}}
    rows: list[tuple[str, str, Any, str | None]] = [
        ("good-1", "webhook", {"content": {"n": 1}}, None),
        ("not-an-object", "webhook", ["a", "list"], None),
        ("content-a-string", "webhook", {"content": "hello"}, None),
        ("huge", "webhook", {"content": {"text": "字" * 200_000}}, None),
        ("good-2", "webhook", {"content": {"n": 2}}, None),
        ("sms-ok", "sms", {"content": hello}, ann),
        ("sms-unknown-template", "sms", {"content": {"template": "nope", "params": {}}}, ann),
        ("sms-missing-var", "sms", {"content": {"template": "hello", "params": {}}}, ann),
        (
            "sms-extra-var",
            "sms",
            {"content": {"template": "hello", "params": {"name": "A", "x": 1}}},
            ann,
        ),
        (
            "sms-too-long",
            "sms",
            {"content": {"template": "hello", "params": {"name": "长" * 80}}},
            ann,
        ),
        ("sms-params-not-object", "sms", {"content": {"template": "hello", "params": [1]}}, ann),
        ("sms-vault-broken", "sms", {"content": hello}, broken),
        ("good-3", "webhook", {"content": {"n": 3}}, None),
    ]
    for key, channel, payload, customer in rows:
        _row(db, coffee.id, key, channel, payload, customer_id=customer)
    _row(db, tea.id, "sms-timeout", "sms", {"content": hello}, customer_id=tom)
    db.commit()

    handled = dispatch(db, 100, policy=RetryPolicy(max_attempts=2))
    assert handled == len(rows) + 1
    out = _rows(db)
    for key in ("good-1", "good-2", "good-3", "sms-ok"):
        assert out[key].status == "sent", (key, out[key].error)
    assert sorted(state.hooks) == ["good-1", "good-2", "good-3"]
    assert [m["to"] for m in state.sms] == ["+8613800000001"]
    expected = {
        "not-an-object": ("failed", "bad_payload"),
        "content-a-string": ("failed", "bad_payload"),
        "huge": ("failed", "message_too_large"),
        "sms-unknown-template": ("failed", "template_not_registered"),
        "sms-missing-var": ("failed", "template_params_invalid"),
        "sms-extra-var": ("failed", "template_params_invalid"),
        "sms-too-long": ("failed", "message_too_large"),
        "sms-params-not-object": ("failed", "bad_payload"),
        "sms-vault-broken": ("pending", "adapter_error"),
        "sms-timeout": ("pending", "provider_timeout"),
    }
    got = {key: (out[key].status, out[key].reason) for key in expected}
    assert got == expected
    assert all(out[k].error for k in expected)
    # the time-out keeps being retried until the attempts run out, then is a dead letter
    dispatch(db, 100, policy=RetryPolicy(max_attempts=2), now=utcnow() + timedelta(hours=1))
    late = _rows(db)["sms-timeout"]
    assert (late.status, late.reason, late.attempts) == ("failed", "provider_timeout", 2)
    assert (late.error or "").startswith("max attempts (2)")


def test_a_raising_adapter_and_broken_settings_do_not_stop_the_loop(
    db: Session, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Exploding:
        name = "console"
        capabilities = Capabilities()

        def send(self, message: Message) -> Outcome:
            if message.idem_key == "boom":
                raise RuntimeError("adapter bug")
            return Outcome.ok()

    coffee = access_brand(db, SYSTEM, "a-coffee")
    tea = access_brand(db, SYSTEM, "a-tea")
    actions.save_settings(
        db, SYSTEM, tea, "webhook", {"url": "http://127.0.0.1:9/x", "secret": "s"}
    )
    from siyu.channels.models import ChannelSetting

    db.execute(update(ChannelSetting).values(secret_enc="v1:garbage"))  # undecryptable
    for key in ("a", "boom", "b"):
        _row(db, coffee.id, key, "console", {"content": {}})
    _row(db, tea.id, "tea-hook", "webhook", {"content": {}})
    db.commit()
    assert dispatch(db, 10, adapters={"console": Exploding()}) == 3
    out = _rows(db)
    assert out["a"].status == out["b"].status == "sent"
    assert (out["boom"].status, out["boom"].reason) == ("pending", "adapter_error")
    # settings that cannot be decrypted: the brand's rows wait (transient), others go on
    _row(db, coffee.id, "c", "console", {"content": {}})
    db.commit()
    assert dispatch(db, 10, adapters=BrandAdapters(db)) == 2
    out = _rows(db)
    assert out["c"].status == "sent"
    assert (out["tea-hook"].status, out["tea-hook"].reason) == ("pending", "not_configured")
    # and the worker's job runs to the end
    handled = jobs.run_once(session_factory(db.get_bind()), only=frozenset({"channels.outbox"}))  # type: ignore[arg-type]
    assert handled == {"channels.outbox": 0}


def test_a_row_that_kills_its_worker_every_time_ends_failed(db: Session, world: Any) -> None:
    coffee = access_brand(db, SYSTEM, "a-coffee")
    _row(db, coffee.id, "deadly", "console", {"content": {}})
    db.commit()
    policy = RetryPolicy(max_attempts=3, lease=timedelta(seconds=30))
    now = utcnow()
    for i in range(3):  # three workers claim it and die before recording anything
        (c,) = claim(db, ["console"], 10, now + timedelta(minutes=i), policy.lease, f"w{i}", 3)
        assert c.attempts == i + 1
    assert claim(db, ["console"], 10, now + timedelta(minutes=3), policy.lease, "w3", 3) == []
    row = _rows(db)["deadly"]
    assert (row.status, row.reason, row.claimed_by) == ("failed", "worker_lost", "w2")
