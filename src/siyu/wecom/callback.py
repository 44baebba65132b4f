"""WeCom callbacks (``GET/POST /wecom/callback/{brand}``): receive fast, handle in the worker.

:func:`receive` runs in the request: it finds the brand's app, refuses stale or future
timestamps (a replay), checks the signature, decrypts (AES-256-CBC, receiveid = corp id) and
stores the event's fields once — keyed by a hash of the decrypted fields, so WeCom's retries
(it re-sends after 5 s, three tries in all) are answered ``success`` without being handled
twice. Anything refused raises a :class:`~siyu.wecom.crypto.CallbackError` (or ``NotFound``
for an unknown brand) and is logged with its reason; nothing is stored.

:func:`process_callbacks` is the worker's job ``wecom.callbacks`` (run before the inbox flush,
so a new friend is in the lake and greeted in the same worker round): contact events update
the contact mirror, fetch the contact's details and become catalogue events in the ingest
inbox (→ OneID and the lake → real-time SOP triggers); group and tag events refresh the
mirror of groups and corporate tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import NotFound, SiyuError
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest_actions
from siyu.org import queries as org_queries
from siyu.wecom import contacts
from siyu.wecom.apps import app_of, client_of, crypt_of, settings_of
from siyu.wecom.contacts import catalogue_event
from siyu.wecom.crypto import CallbackError
from siyu.wecom.models import WecomCallback
from siyu.wecom.sync import added_event_id

log = logging.getLogger("siyu.wecom.callback")


def _brand_app(db: Session, brand_ref: str) -> tuple[Any, Any]:
    brand = org_queries.find_brand(db, brand_ref)
    if brand is None:
        raise NotFound("wecom.unknown_brand", brand=brand_ref)
    return brand, app_of(db, brand.id)


def _refuse(brand_ref: str, exc: SiyuError, client: str | None) -> None:
    log.warning("wecom callback refused: brand=%s from=%s code=%s", brand_ref, client, exc.code)


def verify_url(
    db: Session, brand_ref: str, query: Mapping[str, str], client: str | None = None
) -> str:
    """URL verification: the decrypted ``echostr``, answered as is."""
    try:
        _, app = _brand_app(db, brand_ref)
        return crypt_of(app).verify_url(
            query.get("msg_signature", ""),
            query.get("timestamp", ""),
            query.get("nonce", ""),
            query.get("echostr", ""),
        )
    except SiyuError as exc:
        _refuse(brand_ref, exc, client)
        raise


def dedup_key(fields: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(fields.items()))).encode()).hexdigest()[:64]


def receive(
    db: Session,
    brand_ref: str,
    query: Mapping[str, str],
    body: bytes,
    client: str | None = None,
    now: float | None = None,
) -> str:
    """Check, decrypt and queue one POSTed callback; returns ``queued`` or ``duplicate``."""
    try:
        brand, app = _brand_app(db, brand_ref)
        ts = query.get("timestamp", "")
        skew = settings_of(app).callback_max_skew_s
        if not ts.isdigit() or abs((now or time.time()) - int(ts)) > skew:
            raise CallbackError("wecom.stale_timestamp", timestamp=ts[:20])
        fields = crypt_of(app).decrypt_message(
            query.get("msg_signature", ""), ts, query.get("nonce", ""), body
        )
        if fields.get("ToUserName") and fields["ToUserName"] != app.corp_id:
            raise CallbackError("wecom.receiveid_mismatch")
    except SiyuError as exc:
        _refuse(brand_ref, exc, client)
        raise
    key = dedup_key(fields)
    brand_id = brand.id
    # end the read transaction first: on SQLite a read snapshot cannot become a write once
    # the worker has committed since (SQLITE_BUSY_SNAPSHOT); a fresh transaction can wait
    db.rollback()
    try:
        with atomic(db):
            db.add(
                WecomCallback(
                    brand_id=brand_id,
                    dedup_key=key,
                    event=(fields.get("Event") or fields.get("MsgType") or "")[:64],
                    change_type=(fields.get("ChangeType") or None),
                    fields=fields,
                    status="queued",
                )
            )
    except IntegrityError:
        db.rollback()
        log.info("wecom callback duplicate: brand=%s key=%s", brand_ref, key[:12])
        return "duplicate"
    return "queued"


# ---------------------------------------------------------------- the worker's side


def _claim(db: Session, limit: int) -> list[WecomCallback]:
    stmt = (
        select(WecomCallback)
        .where(WecomCallback.status == "queued")
        .order_by(WecomCallback.received_at, WecomCallback.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(db.scalars(stmt))


def _created(fields: Mapping[str, str]) -> datetime:
    raw = fields.get("CreateTime", "")
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw), UTC)
    return utcnow()


def handle(db: Session, row: WecomCallback) -> None:
    """Handle one stored callback (inside the caller's transaction)."""
    brand = org_queries.find_brand(db, row.brand_id)
    if brand is None:
        raise NotFound("wecom.unknown_brand", brand=row.brand_id)
    app = app_of(db, brand.id)
    f = row.fields
    at = _created(f)
    event, change = f.get("Event", ""), f.get("ChangeType", "")
    events: list[dict[str, Any]] = []
    if event == "change_external_contact":
        ext, staff = f.get("ExternalUserID", ""), f.get("UserID", "")
        if not ext or not staff:
            raise CallbackError("wecom.parse_failed", reason="ExternalUserID/UserID missing")
        ids = [{"type": "external_userid", "value": ext}]
        if change in ("add_external_contact", "add_half_external_contact"):
            valid = timedelta(seconds=settings_of(app).welcome_valid_s)
            detail = contacts.fetch_detail(app, ext)
            unionid = detail.get("unionid") if detail else None
            contacts.upsert_added(
                db,
                brand.id,
                ext,
                staff,
                state=f.get("State") or None,
                welcome_code=f.get("WelcomeCode") or None,
                welcome_expires_at=row.received_at + valid if f.get("WelcomeCode") else None,
                added_at=at,
                detail=detail,
            )
            if unionid:
                ids.append({"type": "unionid", "value": unionid})
            added = catalogue_event(
                "wecom_contact_added",
                row.dedup_key,
                at,
                ids,
                staff_userid=staff,
                external_userid=ext,
                unionid=unionid,
                state=f.get("State") or None,
                add_way=contacts.add_way(detail, staff),
            )
            # the same id as a sync's for this add, so the lake keeps one
            added["event_id"] = added_event_id(ext, staff, f.get("CreateTime", ""))
            events.append(added)
            _greet(db, brand, app, ext, staff, row.dedup_key)
            name = (detail or {}).get("name")
            if name:
                events.append(
                    catalogue_event(
                        "customer_upserted",
                        row.dedup_key,
                        at,
                        ids,
                        nickname=str(name)[:100],
                        owner_wecom_userid=staff,
                    )
                )
        elif change == "edit_external_contact":
            contacts.refresh(db, brand, app, ext)
        elif change in ("del_external_contact", "del_follow_user"):
            by_customer = change == "del_follow_user"
            transferred = f.get("Source") == "DELETE_BY_TRANSFER"
            contacts.mark_deleted(db, brand.id, ext, staff, by_customer, transferred)
            if not transferred:
                kind = "customer" if by_customer else "staff"
                events.append(
                    catalogue_event(
                        f"wecom_contact_deleted_by_{kind}",
                        row.dedup_key,
                        at,
                        ids,
                        staff_userid=staff,
                        external_userid=ext,
                    )
                )
        elif change == "transfer_fail":
            contacts.transfer_failed(db, brand.id, ext, staff, f.get("FailReason", ""))
    elif event == "change_external_chat":
        events.extend(contacts.chat_changed(db, brand, app, f, row.dedup_key, at))
    elif event == "change_external_tag":
        contacts.sync_corp_tags(db, brand, client_of(app))
    for raw in events:
        ingest_actions.accept_event(db, SYSTEM, brand, raw)


def _greet(db: Session, brand: Any, app: Any, ext: str, staff: str, key: str) -> None:
    """The brand's plain welcome text, when no enabled SOP greets new friends: an outbox row
    for the WeCom 1:1 adapter, which uses the fresh welcome code."""
    from siyu.sop.models import Outbox, Sop

    text = settings_of(app).welcome_text
    if not text:
        return
    for sop in db.scalars(select(Sop).where(Sop.brand_id == brand.id, Sop.status == "enabled")):
        if (sop.audience or {}).get("event") == "wecom_contact_added":
            return
    now = utcnow()
    db.add(
        Outbox(
            brand_id=brand.id,
            idem_key=f"wecom-welcome-{key[:40]}",
            channel="wecom_1to1",
            customer_id=None,
            payload={
                "content": {"text": text},
                "external_userid": ext,
                "staff_userid": staff,
                "kind": "transactional",
            },
            status="pending",
            attempts=0,
            available_at=now,
        )
    )


def process_callbacks(db: Session, limit: int = 200) -> int:
    """The ``wecom.callbacks`` job: handle queued callbacks; returns how many were taken.

    Each callback is handled in a savepoint: one that fails (the WeCom API down, a malformed
    field) is marked for a retry or, after 5 attempts, ``failed`` with its reason — the others
    go on."""
    with atomic(db):
        rows = _claim(db, limit)
        for row in rows:
            row.attempts += 1
            try:
                with db.begin_nested():
                    handle(db, row)
                row.status = "done"
                row.error = None
            except Exception as exc:  # one bad callback must not stop the queue
                log.warning("wecom callback %s failed: %s", row.id, exc)
                row.error = f"{type(exc).__name__}: {exc}"[:1000]
                row.status = "failed" if row.attempts >= 5 else "queued"
            row.processed_at = utcnow()
    return len([r for r in rows if r.status != "queued"])
