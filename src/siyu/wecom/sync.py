"""Full sync of a brand's WeCom: staff, corporate tags (both ways), contacts and groups.

Callbacks keep the mirror current between syncs; a sync (first connection, then periodically
with ``siyu wecom sync`` or the console) repairs whatever callbacks missed:

1. **staff** — ``user/list``: WeCom members are matched to brand memberships by WeCom userid;
   members nobody maps are listed in the result for an admin to map;
2. **corporate tags, WeCom → Siyu** — ``get_corp_tag_list`` mirrored into the ``wecom`` tag
   groups (:mod:`siyu.tags.wecom_tags`);
3. **corporate tags, Siyu → WeCom** — tags of the ``wecom`` groups given or removed in Siyu
   by a person since the last sync are pushed with ``mark_tag`` to every follow relation;
4. **contacts** — ``batch/get_by_user`` (100 members a call, cursor): follow relations are
   upserted; a relation new to Siyu becomes a ``wecom_contact_added`` event (same event id as
   the callback's, so the lake keeps one) through the inbox → OneID; relations gone from WeCom
   are marked deleted; each customer's corporate tags are set from WeCom;
5. **groups** — ``groupchat/list`` + ``groupchat/get``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import as_utc, utcnow
from siyu.core.tenancy import SYSTEM, Actor
from siyu.ingest import actions as ingest_actions
from siyu.org import queries as org_queries
from siyu.org.models import Membership
from siyu.org.permissions import authorize
from siyu.tags.models import Tag, TagChange
from siyu.wecom import contacts
from siyu.wecom.apps import MANAGE, app_of, client_of
from siyu.wecom.models import WecomContact

if TYPE_CHECKING:
    from siyu.org.models import Brand
    from siyu.wecom.client import WeComClient

log = logging.getLogger("siyu.wecom.sync")


def added_event_id(ext: str, staff: str, created: int | str) -> str:
    """One id for one add, whether the callback or a sync saw it first."""
    digest = hashlib.sha1(f"{ext}\x1f{staff}\x1f{created}".encode(), usedforsecurity=False)
    return "wecom-add-" + digest.hexdigest()[:32]


def _push_tags(db: Session, brand: Brand, client: WeComClient, since: datetime | None) -> int:
    """Corporate tags a person set or removed in Siyu since ``since`` → ``mark_tag``."""
    stmt = (
        select(TagChange.customer_id, TagChange.change, Tag.external_id)
        .join(Tag, Tag.id == TagChange.tag_id)
        .where(
            TagChange.brand_id == brand.id,
            Tag.external_id.is_not(None),
            TagChange.actor_label.is_not(None),
            TagChange.actor_label != SYSTEM.label,
        )
        .order_by(TagChange.at)
    )
    if since is not None:
        stmt = stmt.where(TagChange.at > since)
    wanted: dict[str, dict[str, str]] = defaultdict(dict)
    for cid, change, ext_tag in db.execute(stmt):
        wanted[cid][str(ext_tag)] = change  # the last change wins
    pushed = 0
    for cid, changes in wanted.items():
        add = sorted(t for t, c in changes.items() if c == "entered")
        remove = sorted(t for t, c in changes.items() if c == "exited")
        for c in contacts.contacts_of(db, brand.id, cid):
            if c.status != "active":
                continue
            client.mark_tag(c.staff_userid, c.external_userid, add=add, remove=remove)
            pushed += 1
    return pushed


def sync_brand(db: Session, actor: Actor, brand: Brand) -> dict[str, Any]:
    """Run a full sync; returns its counts (also kept on the app, and audited)."""
    from siyu.tags.wecom_tags import set_customer_corp_tags

    authorize(actor, MANAGE, org_queries.brand_ref(brand))
    app = app_of(db, brand.id)
    client = client_of(app)
    started = utcnow()
    counts: dict[str, Any] = {}

    # 1. staff
    users = list(client.list_users())
    userids = sorted({str(u.get("userid")) for u in users if u.get("userid")})
    mapped = set(
        db.scalars(
            select(Membership.wecom_userid).where(
                Membership.brand_id == brand.id, Membership.wecom_userid.in_(userids)
            )
        )
    )
    counts["staff"] = len(userids)
    counts["staff_unmapped"] = sorted(set(userids) - mapped)[:200]

    # 2 + 3. corporate tags: push Siyu's changes first, then mirror WeCom's list
    counts["tags_pushed"] = _push_tags(db, brand, client, app.last_sync_at)
    counts["tags"] = contacts.sync_corp_tags(db, brand, client)
    db.commit()

    # 4. contacts
    known = {
        (c.external_userid, c.staff_userid): c
        for c in db.scalars(select(WecomContact).where(WecomContact.brand_id == brand.id))
    }
    seen: set[tuple[str, str]] = set()
    tags_of: dict[str, set[str]] = defaultdict(set)
    new = 0
    for item in client.iter_external_contacts_by_user(userids):
        ext_contact = item.get("external_contact") or {}
        follow = item.get("follow_info") or {}
        ext = str(ext_contact.get("external_userid") or "")
        staff = str(follow.get("userid") or "")
        if not ext or not staff:
            continue
        seen.add((ext, staff))
        tags_of[ext].update(str(t) for t in follow.get("tag_id") or [])
        created = int(follow.get("createtime") or 0)
        row = known.get((ext, staff))
        if row is None:
            row = WecomContact(brand_id=brand.id, external_userid=ext, staff_userid=staff)
            db.add(row)
            known[(ext, staff)] = row
            new += 1
            at = datetime.fromtimestamp(created, UTC) if created else started
            ids = [{"type": "external_userid", "value": ext}]
            if ext_contact.get("unionid"):
                ids.append({"type": "unionid", "value": str(ext_contact["unionid"])})
            props = {
                "staff_userid": staff,
                "external_userid": ext,
                "unionid": ext_contact.get("unionid") or None,
                "state": (follow.get("state") or None),
                "add_way": follow.get("add_way")
                if isinstance(follow.get("add_way"), int)
                else None,
            }
            ingest_actions.accept_event(
                db,
                SYSTEM,
                brand,
                {
                    "event_id": added_event_id(ext, staff, created),
                    "event_type": "wecom_contact_added",
                    "occurred_at": at.isoformat(),
                    "source": "wecom-sync",
                    "identifiers": ids,
                    "properties": {k: v for k, v in props.items() if v is not None},
                },
            )
        row.status = "active"
        row.state = str(follow.get("state") or "")[:64] or row.state
        row.remark = str(follow.get("remark") or "")[:100] or None
        row.add_way = follow.get("add_way") if isinstance(follow.get("add_way"), int) else None
        if created:
            row.added_at = datetime.fromtimestamp(created, UTC)
        row.updated_at = utcnow()
    gone = 0
    for key, row in known.items():
        if key not in seen and row.status == "active" and row.staff_userid in userids:
            row.status = "deleted_by_customer"
            gone += 1
    counts["contacts"] = len(seen)
    counts["contacts_new"] = new
    counts["contacts_gone"] = gone
    db.commit()

    # customers' corporate tags, for contacts OneID has already resolved
    contacts.link_customers(db, brand.id, limit=1_000_000)
    tagged = 0
    by_customer: dict[str, set[str]] = defaultdict(set)
    for c in db.scalars(
        select(WecomContact).where(
            WecomContact.brand_id == brand.id, WecomContact.customer_id.is_not(None)
        )
    ):
        if c.external_userid in tags_of and c.customer_id:
            by_customer[c.customer_id] |= tags_of[c.external_userid]
    for cid, tag_ids in by_customer.items():
        set_customer_corp_tags(db, SYSTEM, brand, cid, sorted(tag_ids))
        tagged += 1
    counts["customers_tagged"] = tagged

    # 5. groups
    groups = 0
    for chat in client.iter_group_chats():
        chat_id = str(chat.get("chat_id") or "")
        if chat_id:
            contacts.upsert_group(db, brand.id, client.get_group_chat(chat_id))
            groups += 1
    counts["groups"] = groups

    app = app_of(db, brand.id)
    app.last_sync_at = started
    app.last_sync = {
        **counts,
        "started_at": started.isoformat(),
        "seconds": round((utcnow() - as_utc(started)).total_seconds(), 2),
    }
    record(db, actor, "wecom.sync", "wecom_app", brand.id, brand=brand, after=app.last_sync)
    db.commit()
    return dict(app.last_sync)


SYNC_EVERY = timedelta(hours=24)


def periodic_sync(db: Session, limit: int = 1) -> int:
    """Job ``wecom.sync`` (background lane): a full sync of apps never synced or synced more
    than a day ago, one brand per call; a brand whose sync fails is tried again next day (the
    failure is kept on the app for the console)."""
    from siyu.org import queries as org_queries
    from siyu.wecom.models import WecomApp

    due = utcnow() - SYNC_EVERY
    app = db.scalar(
        select(WecomApp)
        .where(
            WecomApp.enabled.is_(True),
            (WecomApp.last_sync_at.is_(None)) | (WecomApp.last_sync_at < due),
        )
        .order_by(WecomApp.last_sync_at.is_not(None), WecomApp.last_sync_at)
        .limit(1)
    )
    if app is None:
        return 0
    brand = org_queries.find_brand(db, app.brand_id)
    if brand is None:
        return 0
    try:
        sync_brand(db, SYSTEM, brand)
    except Exception as exc:  # WeCom down, bad secret: recorded, tried again tomorrow
        db.rollback()
        log.warning("periodic sync of %s failed: %s", brand.slug, exc)
        app = app_of(db, brand.id)
        app.last_sync_at = utcnow()
        app.last_sync = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        db.commit()
    return 0  # one brand a round: the other lanes' work goes first
