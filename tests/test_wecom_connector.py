"""The WeCom connector end to end, against the local WeCom server over loopback HTTP: the
callback endpoint (signature, replay, retries), a new friend becoming a customer with an
attributed acquisition event and a welcome message within 20 s, WeCom channel adapters, mass
results feeding the platform quota, sync and inheritance."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.channels.base import Message
from siyu.channels.wecom import WeComChannel
from siyu.core.clock import utcnow
from siyu.core.db import session_factory
from siyu.core.tenancy import SYSTEM
from siyu.customers import vault
from siyu.customers.models import Customer, Identity
from siyu.ingest import actions as ingest
from siyu.org.models import Brand, Membership, Staff
from siyu.org.queries import access_brand
from siyu.sop import engine as sop_engine
from siyu.sop.models import Outbox, PlatformQuotaUse, Sop, Touch
from siyu.tags import segments
from siyu.tags.schemas import SegmentIn
from siyu.wecom import apps, callback, inherit, results, sync, ways
from siyu.wecom.crypto import WeComCrypt, signature
from siyu.wecom.fake import FakeServer
from siyu.wecom.fake_state import FakeWeCom
from siyu.wecom.models import WecomCallback, WecomContact, WecomGroup, WecomTransfer
from tests.test_sop_engine import add_sop

CORP = "wwsiyutest000001"
SECRET = "test-secret-1"
TOKEN = "SiyuTestToken1"
AES = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Wired:
    fake: FakeWeCom
    brand: Brand
    app_url: str
    engine: Engine


@pytest.fixture
def wired(db: Session, world: object, engine: Engine, app: Any) -> Iterator[Wired]:
    """The local WeCom server, our app on a loopback port, and a-coffee's app pointing at
    the fake (whose callbacks go to our endpoint)."""
    import uvicorn

    fake = FakeWeCom()
    fake.configure(corp_id=CORP, secret=SECRET, token=TOKEN, aes_key=AES)
    fake.add_department(1, "总部")
    fake.add_user("aguide", "导购小A")
    fake.add_user("aguide2", "导购小B")
    server_fake = FakeServer(fake)
    fake_url = server_fake.start()
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    app_url = f"http://127.0.0.1:{port}"
    fake.configure(callback_url=f"{app_url}/wecom/callback/a-coffee")
    brand = access_brand(db, SYSTEM, "a-coffee")
    apps.configure(
        db,
        SYSTEM,
        brand,
        apps.AppIn(corp_id=CORP, secret=SECRET, token=TOKEN, aes_key=AES, base_url=fake_url),
    )
    # a second guide of the brand with a WeCom userid
    guide = db.scalar(select(Staff).where(Staff.username == "a.guide"))
    assert guide is not None
    try:
        yield Wired(fake, brand, app_url, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        server_fake.stop()


def _worker(engine: Engine) -> tuple[threading.Event, threading.Thread]:
    from siyu.jobs import run_forever

    stop = threading.Event()
    t = threading.Thread(
        target=run_forever,
        kwargs={"interval": 0.2, "stop": stop, "factory": session_factory(engine)},
        daemon=True,
    )
    t.start()
    return stop, t


def _welcome_sop(db: Session, brand: Brand, text: str) -> Sop:
    sop = add_sop(
        db,
        brand,
        "welcome",
        [
            {
                "type": "touch",
                "channel": "wecom_1to1",
                "sender": "owner_guide",
                "content": {"text": text},
                "valid_hours": 2,
            }
        ],
        audience={"kind": "event", "event": "wecom_contact_added"},
        priority=90,
        # a reply to the customer's own add: WeCom takes it within 20 s, at any hour
        policy={"quiet_start": "00:00", "quiet_end": "00:00"},
    )
    sop.enabled_at = utcnow() - timedelta(minutes=5)  # real time reads from here on
    db.commit()
    return sop


def _customer_by_external(db: Session, brand: Brand, ext: str) -> str | None:
    h = vault.match_hash(brand.id, "external_userid", vault.normalise("external_userid", ext))
    return db.scalar(
        select(Identity.customer_id).where(
            Identity.brand_id == brand.id,
            Identity.id_type == "external_userid",
            Identity.value_hash == h,
        )
    )


# ---------------------------------------------------------------- acceptance 2


def test_new_friend_becomes_customer_attributed_and_welcomed_within_20s(
    db: Session, wired: Wired
) -> None:
    from siyu.analytics.engine import connect

    fake, brand = wired.fake, wired.brand
    text = "您好，欢迎添加！新人券已放入账户～"
    _welcome_sop(db, brand, text)
    ways.create_way(
        db,
        SYSTEM,
        brand,
        ways.ContactWayIn(
            name="小红书笔记", state="xhs_note_01", staff_userids=["aguide"], cost_fen=30000
        ),
    )
    stop, t = _worker(wired.engine)
    try:
        start = time.monotonic()
        added = fake.add_friend("aguide", name="小王", state="xhs_note_01", unionid="ounion_w1")
        ext = added["external_userid"]
        while not fake.state.welcome_sent and time.monotonic() - start < 30:
            time.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        t.join(timeout=30)
    db.rollback()
    debug = (
        [(r.status, r.error) for r in db.scalars(select(WecomCallback))],
        [(o.channel, o.status, o.error) for o in db.scalars(select(Outbox))],
        fake.state.callbacks if hasattr(fake.state, "callbacks") else None,
    )
    assert fake.state.welcome_sent, f"no welcome reached the local WeCom server: {debug}"
    cb = db.scalar(select(WecomCallback))
    ob = db.scalar(select(Outbox))
    if cb is not None and ob is not None:
        print(
            f"welcome after {elapsed:.2f} s: callback stored {cb.received_at:%T.%f}, "
            f"handled {cb.processed_at:%T.%f}, outbox row {ob.created_at:%T.%f}, "
            f"sent {ob.sent_at:%T.%f}"
        )
    assert elapsed < 20
    sent = fake.state.welcome_sent[0]
    assert sent["welcome_code"] == added["welcome_code"]
    assert text in str(sent)

    db.rollback()
    # a customer, linked by OneID through external_userid (and unionid)
    cid = _customer_by_external(db, brand, ext)
    assert cid is not None
    h = vault.match_hash(brand.id, "unionid", vault.normalise("unionid", "ounion_w1"))
    assert db.scalar(select(Identity.customer_id).where(Identity.value_hash == h)) == cid
    contact = db.scalar(select(WecomContact).where(WecomContact.external_userid == ext))
    assert contact is not None and contact.state == "xhs_note_01"
    assert contact.welcome_used_at is not None
    # an attributed acquisition event in the lake
    with connect() as eng:
        ev = eng.table("events", brand.id)
        got = eng.execute(
            ev.filter(ev.event_type == "wecom_contact_added").select("properties", "source")
        ).to_pylist()
    assert len(got) == 1 and got[0]["source"] == "wecom"
    assert "xhs_note_01" in str(got[0]["properties"])
    listed = {w.state: w for w in ways.list_ways(db, brand)}
    assert listed["xhs_note_01"].friends == 1
    assert listed["xhs_note_01"].cost_per_friend_fen == 30000
    # the callback was handled once
    rows = list(db.scalars(select(WecomCallback)))
    assert [r.status for r in rows] == ["done"]


# ---------------------------------------------------------------- the endpoint


def _post(client: Any, crypt: WeComCrypt, xml: str, ts: int | None = None, **over: str) -> Any:
    ts = ts or int(time.time())
    enc = crypt.encrypt(xml)
    q = {
        "msg_signature": signature(TOKEN, str(ts), "12345", enc),
        "timestamp": str(ts),
        "nonce": "12345",
    }
    q.update(over)
    body = (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName>"
        f"<Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    )
    return client.post("/wecom/callback/a-coffee", params=q, content=body.encode())


EVENT = (
    "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
    "<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    "<Event><![CDATA[change_external_contact]]></Event>"
    "<ChangeType><![CDATA[del_follow_user]]></ChangeType><UserID><![CDATA[aguide]]></UserID>"
    "<ExternalUserID><![CDATA[wmGone]]></ExternalUserID></xml>"
)


def test_callback_endpoint_refuses_forged_replayed_and_malformed(
    db: Session, world: object, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    apps.configure(
        db, SYSTEM, brand, apps.AppIn(corp_id=CORP, secret=SECRET, token=TOKEN, aes_key=AES)
    )
    crypt = WeComCrypt(TOKEN, AES, CORP)
    now = int(time.time())
    xml = EVENT.format(corp=CORP, ts=now)

    # URL verification answers the plaintext as is
    echo = crypt.encrypt("8791237918273")
    r = client.get(
        "/wecom/callback/a-coffee",
        params={
            "msg_signature": signature(TOKEN, str(now), "n1", echo),
            "timestamp": str(now),
            "nonce": "n1",
            "echostr": echo,
        },
    )
    assert (r.status_code, r.text) == (200, "8791237918273")

    ok = _post(client, crypt, xml, now)
    assert (ok.status_code, ok.text) == (200, "success")
    # WeCom's retry of the same event (a new nonce and signature) is answered, not queued again
    again = _post(client, crypt, xml, now + 5)
    assert (again.status_code, again.text) == (200, "success")
    db.rollback()
    assert len(list(db.scalars(select(WecomCallback)))) == 1

    with caplog.at_level("WARNING", logger="siyu.wecom.callback"):
        forged = _post(client, crypt, xml, now, msg_signature="0" * 40)
        assert forged.status_code == 403
        replay = _post(client, crypt, EVENT.format(corp=CORP, ts=now - 3600), now - 3600)
        assert replay.status_code == 403
        other = WeComCrypt(TOKEN, AES, "wwsomeoneelse")  # receiveid of another corp
        assert _post(client, other, xml, now).status_code == 400
        r = client.post(
            "/wecom/callback/a-coffee",
            params={"msg_signature": "x", "timestamp": str(now), "nonce": "1"},
            content=b"<xml><Encrypt>broken",
        )
        assert r.status_code == 400
    codes = " ".join(rec.getMessage() for rec in caplog.records)
    for code in ("wecom.bad_signature", "wecom.stale_timestamp", "wecom.receiveid_mismatch"):
        assert code in codes
    assert client.post("/wecom/callback/no-such-brand", content=b"<xml/>").status_code == 404
    assert client.post("/wecom/callback/a-coffee", content=b"x" * 70_000).status_code == 413
    db.rollback()
    assert len(list(db.scalars(select(WecomCallback)))) == 1


def test_a_failing_callback_does_not_stop_the_queue(db: Session, world: object) -> None:
    brand = access_brand(db, SYSTEM, "a-coffee")
    apps.configure(
        db, SYSTEM, brand, apps.AppIn(corp_id=CORP, secret=SECRET, token=TOKEN, aes_key=AES)
    )
    db.add_all(
        [
            WecomCallback(
                brand_id=brand.id,
                dedup_key="bad",
                event="change_external_contact",
                change_type="del_follow_user",
                fields={"Event": "change_external_contact", "ChangeType": "del_follow_user"},
            ),
            WecomCallback(
                brand_id=brand.id,
                dedup_key="good",
                event="change_external_contact",
                change_type="del_follow_user",
                fields={
                    "Event": "change_external_contact",
                    "ChangeType": "del_follow_user",
                    "UserID": "aguide",
                    "ExternalUserID": "wmX",
                    "CreateTime": str(int(time.time())),
                },
            ),
        ]
    )
    db.commit()
    for _ in range(5):
        callback.process_callbacks(db)
    status = {r.dedup_key: (r.status, r.error) for r in db.scalars(select(WecomCallback))}
    assert status["good"] == ("done", None)
    assert status["bad"][0] == "failed" and "wecom.parse_failed" in (status["bad"][1] or "")


# ---------------------------------------------------------------- adapters and results


def _friend(db: Session, w: Wired, userid: str = "aguide", phone: str = "13900001111") -> str:
    """A customer known by phone who also follows ``userid`` on WeCom (via the fake)."""
    added = w.fake.add_friend(userid, name="老客", welcome_code=False, wait=True)
    ext = added["external_userid"]
    db.rollback()  # the callback was written by the app meanwhile: start a fresh snapshot
    out = ingest.ingest_batch(
        db,
        SYSTEM,
        w.brand,
        [
            {
                "event_id": f"add-{ext}",
                "event_type": "wecom_contact_added",
                "occurred_at": "2026-06-01T10:00:00+08:00",
                "identifiers": [
                    {"type": "external_userid", "value": ext},
                    {"type": "phone", "value": phone},
                ],
                "properties": {"staff_userid": userid, "external_userid": ext},
            }
        ],
    )
    assert out.accepted == 1
    db.add(
        WecomContact(brand_id=w.brand.id, external_userid=ext, staff_userid=userid, status="active")
    )
    db.commit()
    return ext


def test_mass_message_waits_for_confirmation_and_status_3_feeds_the_quota(
    db: Session, wired: Wired
) -> None:
    w = wired
    w.fake.configure(monthly_quota=1)
    ext = _friend(db, w)
    cid = _customer_by_external(db, w.brand, ext)
    assert cid
    # someone else's mass message reaches the customer first this month
    channel = WeComChannel("wecom_mass", session_factory(w.engine))
    first = channel.send(
        Message(w.brand.id, "other-tool-1", "wecom_mass", cid, {"content": {"text": "别处的群发"}})
    )
    assert first.status == "sent" and first.provider_id
    w.fake.confirm_mass(first.provider_id)
    ours = channel.send(
        Message(w.brand.id, "ours-1", "wecom_mass", cid, {"content": {"text": "会员日提醒"}})
    )
    assert ours.status == "sent"
    # nothing went out before the guide confirmed
    db.rollback()
    assert results.read_results(db) == 1  # the first is settled (1), ours still unconfirmed
    assert not list(db.scalars(select(PlatformQuotaUse)))
    w.fake.confirm_mass(ours.provider_id or "")
    db.execute(update(results.WecomMassSend).values(checked_at=None))
    db.commit()
    assert results.read_results(db) == 1
    uses = list(db.scalars(select(PlatformQuotaUse)))
    assert [(u.customer_id, u.source_key.split(":")[1]) for u in uses] == [(cid, ours.provider_id)]

    # the SOP engine counts it: a wecom_mass touch today meets the platform quota
    brand = w.brand
    guide = db.scalar(select(Staff.id).where(Staff.username == "a.guide"))
    db.execute(update(Customer).where(Customer.brand_id == brand.id).values(owner_staff_id=guide))
    db.commit()
    segments.create(
        db,
        SYSTEM,
        brand,
        SegmentIn(key="friends", name="好友", definition="exists(wecom_contact_added, last 3650d)"),
    )
    mass = add_sop(
        db,
        brand,
        "massday",
        [{"type": "touch", "channel": "wecom_mass", "content": {"text": "x"}, "valid_hours": 48}],
        audience={"kind": "segment", "segment": "friends"},
        policy={"quiet_start": "00:00", "quiet_end": "00:00"},
    )
    mass.enabled_at = utcnow() - timedelta(days=1)
    db.commit()
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo(brand.timezone)).date()
    sop_engine.run_day(db, SYSTEM, brand, today)
    t = db.scalar(select(Touch).where(Touch.customer_id == cid))
    assert t is not None and t.status != "sent"
    assert "platform_quota" in (t.reason or "")


def test_welcome_code_expired_falls_back_to_a_confirmed_message(db: Session, wired: Wired) -> None:
    w = wired
    ext = _friend(db, w)
    cid = _customer_by_external(db, w.brand, ext)
    row = db.scalar(select(WecomContact).where(WecomContact.external_userid == ext))
    assert row is not None
    row.welcome_code = "stale-code"
    row.welcome_expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    guide = db.scalar(select(Staff.id).where(Staff.username == "a.guide"))
    out = WeComChannel("wecom_1to1", session_factory(w.engine)).send(
        Message(
            w.brand.id,
            "k1",
            "wecom_1to1",
            cid,
            {"content": {"text": "欢迎"}, "guide_staff_id": guide},
        )
    )
    assert out.status == "sent" and not w.fake.state.welcome_sent
    assert out.provider_id in w.fake.state.mass
    # too long for WeCom: refused before any call, final
    long = WeComChannel("wecom_1to1", session_factory(w.engine)).send(
        Message(w.brand.id, "k2", "wecom_1to1", cid, {"content": {"text": "长" * 1400}})
    )
    assert long.status == "permanent" and "wecom.text_too_long" in (long.reason or "")
    # a customer who follows nobody: final, with the reason
    nobody = WeComChannel("wecom_mass", session_factory(w.engine)).send(
        Message(
            w.brand.id, "k3", "wecom_mass", "01NOSUCHCUSTOMER0000000000", {"content": {"text": "x"}}
        )
    )
    assert nobody.status == "permanent" and "not_a_friend" in (nobody.reason or "")


def test_rate_limited_send_is_transient(db: Session, wired: Wired) -> None:
    w = wired
    ext = _friend(db, w)
    cid = _customer_by_external(db, w.brand, ext)
    w.fake.inject("externalcontact/add_msg_template", 45009, times=50)
    out = WeComChannel("wecom_mass", session_factory(w.engine)).send(
        Message(w.brand.id, "k1", "wecom_mass", cid, {"content": {"text": "x"}})
    )
    assert out.status == "transient" and "45009" in (out.reason or "")


# ---------------------------------------------------------------- sync and inheritance


def test_sync_mirrors_staff_contacts_groups_and_tags(db: Session, wired: Wired) -> None:
    w = wired
    for i in range(3):
        w.fake.add_friend(
            "aguide", name=f"客户{i}", welcome_code=False, state="store_01", wait=True
        )
    db.rollback()  # the app wrote the add callbacks meanwhile
    out = sync.sync_brand(db, SYSTEM, w.brand)
    assert out["contacts"] == 3 and out["contacts_new"] == 3
    assert "aguide2" in out["staff_unmapped"]
    # the adds went through the inbox (OneID → customers once flushed)
    ingest.flush_inbox(db)
    rows = list(db.scalars(select(WecomContact)))
    assert len(rows) == 3 and {r.state for r in rows} == {"store_01"}
    # a second sync finds nothing new; a friend deleted on WeCom is marked
    w.fake.remove_friend("aguide", rows[0].external_userid, by="customer")
    again = sync.sync_brand(db, SYSTEM, w.brand)
    assert again["contacts_new"] == 0 and again["contacts_gone"] == 1
    assert all(r.customer_id for r in db.scalars(select(WecomContact)))


def test_resigned_inheritance_moves_customers_after_24h(db: Session, wired: Wired) -> None:
    w = wired
    exts = [_friend(db, w, phone=f"1390000222{i}") for i in range(3)]
    # aguide2 must be a member of the brand
    m = db.scalar(
        select(Membership).where(
            Membership.brand_id == w.brand.id, Membership.wecom_userid.is_(None)
        )
    )
    assert m is not None
    m.wecom_userid = "aguide2"
    db.commit()
    out = inherit.transfer_customers(
        db,
        SYSTEM,
        w.brand,
        inherit.TransferIn(mode="resigned", handover_userid="aguide", takeover_userid="aguide2"),
    )
    assert out.requested == 3
    assert inherit.poll_transfers(db) == 0  # WeCom completes resigned transfers after 24 h
    w.fake.advance(24 * 3600 + 1)
    assert inherit.poll_transfers(db) == 3
    moved = {
        (c.external_userid, c.staff_userid, c.status) for c in db.scalars(select(WecomContact))
    }
    for ext in exts:
        assert (ext, "aguide2", "active") in moved and (ext, "aguide", "transferred") in moved
    assert {t.status for t in db.scalars(select(WecomTransfer))} == {"done"}
    # the same customers again are refused by our own record after two moves
    with pytest.raises(Exception):
        inherit.transfer_customers(
            db,
            SYSTEM,
            w.brand,
            inherit.TransferIn(mode="on_job", handover_userid="aguide2", takeover_userid="aguide2"),
        )


def test_demo_wecom_setup_connects_syncs_and_creates_channel_codes(
    db: Session, world: object
) -> None:
    from siyu.demo import wecom as demo_wecom

    fake = FakeWeCom()
    with FakeServer(fake) as server:
        brand = access_brand(db, SYSTEM, "a-coffee")
        counts = demo_wecom.setup(db, brand, fake, server.base_url)
        members = [
            str(u)
            for u in db.scalars(
                select(Membership.wecom_userid).where(
                    Membership.brand_id == brand.id, Membership.wecom_userid.is_not(None)
                )
            )
        ]
        assert counts["staff"] == len(members) and counts["staff_unmapped"] == []
        assert counts["contacts"] == 24 and counts["groups"] == 2
        assert counts["tags"]["tags"] == 3
        assert {w.state for w in ways.list_ways(db, brand)} == {"store_qr", "xhs_note_spring"}
        assert len(fake.state.contact_ways) == 2
        # setting up again over the same server (a re-run) creates no duplicates
        again = demo_wecom.setup(db, brand, FakeWeCom(), server.base_url)
        assert again["contacts_new"] == 0


def test_cli_sync(db: Session, wired: Wired) -> None:
    from typer.testing import CliRunner

    from siyu.cli.main import app as cli

    wired.fake.add_friend("aguide", name="CLI客户", welcome_code=False, wait=True)
    db.rollback()
    result = CliRunner().invoke(cli, ["wecom", "sync", "--brand", "a-coffee", "--json"])
    assert result.exit_code == 0, result.output
    assert '"contacts": 1' in result.output and '"contacts_new": 1' in result.output
    bad = CliRunner().invoke(cli, ["wecom", "sync", "--brand", "b-shop"])
    assert bad.exit_code != 0


def test_group_changes_mirror_the_group_and_emit_join_and_leave_events(
    db: Session, wired: Wired
) -> None:
    from siyu.ingest.models import InboxEvent

    w = wired
    chat = w.fake.add_group_chat("aguide", "会员福利群", members=["aguide"], customers=[])
    chat_id = chat["chat_id"]
    for x in ("wmg1", "wmg2", "wmg3"):
        w.fake.add_customer(f"群友{x}", external_userid=x)
    w.fake.change_group_members(chat_id, add=["wmg1", "wmg2", "wmg3"])
    w.fake.wait_callbacks()
    db.rollback()
    callback.process_callbacks(db)
    group = db.scalar(select(WecomGroup).where(WecomGroup.chat_id == chat_id))
    assert group is not None and group.member_count == 4 and group.name == "会员福利群"
    joined = [
        e for e in db.scalars(select(InboxEvent)) if e.payload["event_type"] == "group_joined"
    ]
    assert sorted(e.payload["identifiers"][0]["value"] for e in joined) == ["wmg1", "wmg2", "wmg3"]
    w.fake.change_group_members(chat_id, remove=["wmg2"])
    w.fake.wait_callbacks()
    db.rollback()
    callback.process_callbacks(db)
    left = [e for e in db.scalars(select(InboxEvent)) if e.payload["event_type"] == "group_left"]
    assert [e.payload["identifiers"][0]["value"] for e in left] == ["wmg2"]
    db.refresh(group)
    assert group.member_count == 3
