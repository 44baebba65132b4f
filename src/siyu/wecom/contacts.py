"""The mirror of WeCom contacts and groups, kept from callbacks and syncs, and the link from a
contact to its Siyu customer (through OneID's external_userid identity)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.clock import utcnow
from siyu.customers import vault
from siyu.customers.models import Identity
from siyu.customers.oneid import identities_by_key
from siyu.wecom.models import WecomApp, WecomContact, WecomGroup, WecomTransfer

if TYPE_CHECKING:
    from siyu.org.models import Brand
    from siyu.wecom.client import WeComClient

log = logging.getLogger("siyu.wecom.contacts")


def catalogue_event(
    event_type: str, key: str, at: datetime, identifiers: list[dict[str, str]], **props: Any
) -> dict[str, Any]:
    """A catalogue event from a WeCom callback, for the ingest inbox (its id derived from
    ``key``: the callback's, plus the member for per-member group events)."""
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:32]
    return {
        "event_id": f"wecom-{digest}-{event_type}",
        "event_type": event_type,
        "occurred_at": at.isoformat(),
        "source": "wecom",
        "identifiers": identifiers,
        "properties": {k: v for k, v in props.items() if v is not None},
    }


def fetch_detail(app: WecomApp, external_userid: str) -> dict[str, Any] | None:
    """``externalcontact/get`` flattened: the contact's fields plus ``follow_user``; None when
    the API cannot answer now (the event is handled with what the callback carried)."""
    from siyu.wecom.apps import client_of

    try:
        body = client_of(app).get_external_contact(external_userid)
    except Exception as exc:  # the add must still be handled (and greeted) without details
        log.warning("externalcontact/get %s failed: %s", external_userid, exc)
        return None
    contact = dict(body.get("external_contact") or {})
    contact["follow_user"] = list(body.get("follow_user") or [])
    return contact


def _follow(detail: Mapping[str, Any] | None, staff: str) -> dict[str, Any]:
    for f in (detail or {}).get("follow_user") or []:
        if isinstance(f, dict) and f.get("userid") == staff:
            return f
    return {}


def add_way(detail: Mapping[str, Any] | None, staff: str) -> int | None:
    value = _follow(detail, staff).get("add_way")
    return int(value) if isinstance(value, int) else None


def _contact(db: Session, brand_id: str, ext: str, staff: str) -> WecomContact | None:
    return db.scalar(
        select(WecomContact).where(
            WecomContact.brand_id == brand_id,
            WecomContact.external_userid == ext,
            WecomContact.staff_userid == staff,
        )
    )


def upsert_added(
    db: Session,
    brand_id: str,
    ext: str,
    staff: str,
    *,
    state: str | None,
    welcome_code: str | None,
    welcome_expires_at: datetime | None,
    added_at: datetime,
    detail: Mapping[str, Any] | None,
) -> WecomContact:
    row = _contact(db, brand_id, ext, staff)
    if row is None:
        row = WecomContact(brand_id=brand_id, external_userid=ext, staff_userid=staff)
        db.add(row)
    follow = _follow(detail, staff)
    row.status = "active"
    row.state = state or follow.get("state") or row.state
    row.add_way = add_way(detail, staff) if detail else row.add_way
    row.remark = (follow.get("remark") or row.remark or None) and str(
        follow.get("remark") or row.remark
    )[:100]
    row.added_at = added_at
    if welcome_code:
        row.welcome_code = welcome_code
        row.welcome_expires_at = welcome_expires_at
        row.welcome_used_at = None
    row.updated_at = utcnow()
    db.flush()
    return row


def mark_deleted(
    db: Session, brand_id: str, ext: str, staff: str, by_customer: bool, transferred: bool
) -> None:
    row = _contact(db, brand_id, ext, staff)
    if row is None:
        return
    row.status = (
        "transferred"
        if transferred
        else ("deleted_by_customer" if by_customer else "deleted_by_staff")
    )
    row.updated_at = utcnow()


def transfer_failed(db: Session, brand_id: str, ext: str, takeover: str, reason: str) -> None:
    """``transfer_fail``: the customer refused, or the taker is at the limit."""
    for t in db.scalars(
        select(WecomTransfer).where(
            WecomTransfer.brand_id == brand_id,
            WecomTransfer.external_userid == ext,
            WecomTransfer.takeover_userid == takeover,
            WecomTransfer.status.in_(("requested", "waiting")),
        )
    ):
        t.status = "limit" if reason == "customer_limit_exceed" else "refused"
        t.detail = reason[:300] or None
        t.finished_at = utcnow()


def refresh(db: Session, brand: Brand, app: WecomApp, ext: str) -> None:
    """``edit_external_contact``: re-read remark, state and corporate tags of every follower."""
    from siyu.tags.wecom_tags import set_customer_corp_tags

    detail = fetch_detail(app, ext)
    if detail is None:
        return
    customer_id = customer_of(db, brand.id, ext)
    tag_ids: list[str] = []
    for f in detail.get("follow_user") or []:
        staff = str(f.get("userid") or "")
        row = _contact(db, brand.id, ext, staff)
        if row is not None:
            row.remark = str(f.get("remark") or "")[:100] or None
            row.updated_at = utcnow()
        tag_ids += [str(t["tag_id"]) for t in f.get("tags") or [] if t.get("type", 1) == 1]
    if customer_id is not None:
        from siyu.core.tenancy import SYSTEM

        set_customer_corp_tags(db, SYSTEM, brand, customer_id, sorted(set(tag_ids)))


def customer_of(db: Session, brand_id: str, ext: str) -> str | None:
    key = vault.identity_key(brand_id, "external_userid", ext).split(":", 1)
    rows = identities_by_key(db, brand_id, [(key[0], key[1])], (Identity.customer_id,))
    return str(rows[0][0]) if rows and rows[0][0] else None


def link_customers(
    db: Session, brand_id: str, limit: int = 5000, since: datetime | None = None
) -> int:
    """Fill ``customer_id`` of contacts OneID has resolved since (those updated after
    ``since`` only, when given); returns how many."""
    stmt = select(WecomContact).where(
        WecomContact.brand_id == brand_id, WecomContact.customer_id.is_(None)
    )
    if since is not None:
        stmt = stmt.where(WecomContact.updated_at >= since)
    rows = list(db.scalars(stmt.limit(limit)))
    if not rows:
        return 0
    keys = {r.id: vault.identity_key(brand_id, "external_userid", r.external_userid) for r in rows}
    pairs = [tuple(k.split(":", 1)) for k in keys.values()]
    owner = {
        f"{t}:{h}": cid
        for cid, t, h in identities_by_key(
            db,
            brand_id,
            [(p[0], p[1]) for p in pairs],
            (Identity.customer_id, Identity.id_type, Identity.value_hash),
        )
    }
    n = 0
    for r in rows:
        cid = owner.get(keys[r.id])
        if cid:
            r.customer_id = cid
            n += 1
    db.flush()
    return n


def contacts_of(db: Session, brand_id: str, customer_id: str) -> list[WecomContact]:
    """The customer's WeCom follow relations. A miss links the contacts added in the last
    hour first (a new friend's add is resolved by OneID after its callback was handled); older
    ones are linked by the sync, so a send never rescans the brand's backlog."""
    stmt = select(WecomContact).where(
        WecomContact.brand_id == brand_id, WecomContact.customer_id == customer_id
    )
    rows = list(db.scalars(stmt))
    recent = utcnow() - timedelta(hours=1)
    if not rows and link_customers(db, brand_id, since=recent):
        rows = list(db.scalars(stmt))
    return rows


def sync_corp_tags(db: Session, brand: Brand, client: WeComClient) -> dict[str, int]:
    from siyu.core.tenancy import SYSTEM
    from siyu.tags.wecom_tags import mirror_corp_tags

    groups = client.corp_tags()
    return mirror_corp_tags(db, SYSTEM, brand, {"errcode": 0, "tag_group": groups})


def upsert_group(db: Session, brand_id: str, chat: Mapping[str, Any]) -> WecomGroup:
    chat_id = str(chat.get("chat_id") or "")
    row = db.scalar(
        select(WecomGroup).where(WecomGroup.brand_id == brand_id, WecomGroup.chat_id == chat_id)
    )
    if row is None:
        row = WecomGroup(brand_id=brand_id, chat_id=chat_id)
        db.add(row)
    members = [m for m in chat.get("member_list") or [] if isinstance(m, dict)]
    row.name = str(chat.get("name") or "")[:200] or None
    row.owner_userid = str(chat.get("owner") or "")[:64] or None
    row.notice = str(chat.get("notice") or "")[:2000] or None
    row.members = [
        {
            "userid": str(m.get("userid") or ""),
            "type": m.get("type"),
            "join_time": m.get("join_time"),
            "join_scene": m.get("join_scene"),
        }
        for m in members
    ]
    row.member_count = len(members)
    row.status = "active"
    if isinstance(chat.get("create_time"), int):
        from datetime import UTC

        row.created_at_wecom = datetime.fromtimestamp(int(chat["create_time"]), UTC)
    row.updated_at = utcnow()
    db.flush()
    return row


def chat_changed(
    db: Session,
    brand: Brand,
    app: WecomApp,
    f: Mapping[str, str],
    key: str,
    at: datetime,
) -> list[dict[str, Any]]:
    """``change_external_chat``: refresh the group; members who joined or left become
    ``group_joined`` / ``group_left`` events (external members only: customers)."""
    from siyu.wecom.apps import client_of

    chat_id, change = f.get("ChatId", ""), f.get("ChangeType", "")
    if not chat_id:
        return []
    if change == "dismiss":
        row = db.scalar(
            select(WecomGroup).where(WecomGroup.brand_id == brand.id, WecomGroup.chat_id == chat_id)
        )
        if row is not None:
            row.status = "dismissed"
            row.updated_at = utcnow()
        return []
    before = {
        m["userid"]: m
        for m in (
            db.scalar(
                select(WecomGroup.members).where(
                    WecomGroup.brand_id == brand.id, WecomGroup.chat_id == chat_id
                )
            )
            or []
        )
    }
    chat = client_of(app).get_group_chat(chat_id)
    group = upsert_group(db, brand.id, chat)
    after = {m["userid"]: m for m in group.members}
    events: list[dict[str, Any]] = []
    for uid, m in after.items():
        if uid not in before and m.get("type") == 2:
            events.append(
                catalogue_event(
                    "group_joined",
                    f"{key}-{uid}",
                    at,
                    [{"type": "external_userid", "value": uid}],
                    chat_id=chat_id,
                    join_scene=m.get("join_scene"),
                    staff_userid=group.owner_userid,
                )
            )
    for uid, m in before.items():
        if uid not in after and m.get("type") == 2:
            events.append(
                catalogue_event(
                    "group_left",
                    f"{key}-{uid}",
                    at,
                    [{"type": "external_userid", "value": uid}],
                    chat_id=chat_id,
                    quit_scene=int(f["QuitScene"]) if f.get("QuitScene", "").isdigit() else None,
                )
            )
    return events
