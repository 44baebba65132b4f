"""Inheritance (在职继承 / 离职继承): moving a staff member's customers and groups to another.

WeCom's rules (WECOM.md), enforced here before calling so an operator sees a clear refusal:

- at most 100 customers per call (larger selections are split);
- a customer can be transferred at most twice (``AppSettings.transfer_max``), then is protected
  for 90 days (``transfer_protect_days``);
- on-job transfers (``transfer_customer``) wait for the customer (who may refuse, or the taker
  may be at the limit — a ``transfer_fail`` callback); a resigned member's customers
  (``resigned/transfer_customer``) move after 24 hours;
- ``transfer_result`` reports 1 done, 2 waiting, 3 refused, 4 taker at limit, 5 no record; job
  ``wecom.transfers`` polls the open ones and moves the follow relation on success;
- groups: ``groupchat/transfer``, at most 300 per member per day.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic
from siyu.core.errors import Invalid
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.org import queries as org_queries
from siyu.org.models import Membership
from siyu.org.permissions import authorize
from siyu.wecom.apps import MANAGE, app_of, client_of, settings_of
from siyu.wecom.models import WecomContact, WecomGroup, WecomTransfer

if TYPE_CHECKING:
    from siyu.org.models import Brand

log = logging.getLogger("siyu.wecom.inherit")

PER_CALL = 100
GROUPS_PER_DAY = 300
RESULT_STATUS = {1: "done", 2: "waiting", 3: "refused", 4: "limit", 5: "failed"}


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    mode: Literal["on_job", "resigned"]
    handover_userid: str = Field(min_length=1, max_length=64)
    takeover_userid: str = Field(min_length=1, max_length=64)
    external_userids: list[str] | None = Field(
        default=None, max_length=10_000, description="None: every active customer"
    )
    message: str | None = Field(default=None, max_length=200, description="on-job only")


class TransferOut(BaseModel):
    batch_id: str
    requested: int
    skipped: dict[str, int]
    failed: dict[str, int]


class GroupTransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    chat_ids: list[str] = Field(min_length=1, max_length=GROUPS_PER_DAY)
    new_owner: str = Field(min_length=1, max_length=64)


def _member(db: Session, brand_id: str, userid: str) -> Membership | None:
    return db.scalar(
        select(Membership).where(Membership.brand_id == brand_id, Membership.wecom_userid == userid)
    )


def transfer_customers(db: Session, actor: Actor, brand: Brand, data: TransferIn) -> TransferOut:
    authorize(actor, MANAGE, org_queries.brand_ref(brand))
    if data.handover_userid == data.takeover_userid:
        raise Invalid("wecom.transfer_same", field="takeover_userid")
    taker = _member(db, brand.id, data.takeover_userid)
    if taker is None or not taker.active:
        raise Invalid("wecom.transfer_unknown_staff", field="takeover_userid")
    if _member(db, brand.id, data.handover_userid) is None:
        raise Invalid("wecom.transfer_unknown_staff", field="handover_userid")
    app = app_of(db, brand.id)
    settings = settings_of(app)
    stmt = select(WecomContact).where(
        WecomContact.brand_id == brand.id,
        WecomContact.staff_userid == data.handover_userid,
        WecomContact.status == "active",
    )
    if data.external_userids is not None:
        stmt = stmt.where(WecomContact.external_userid.in_(sorted(set(data.external_userids))))
    rows = list(db.scalars(stmt))
    skipped: dict[str, int] = defaultdict(int)
    if data.external_userids is not None:
        missing = len(set(data.external_userids)) - len(rows)
        if missing:
            skipped["not_a_customer_of_handover"] = missing
    open_ = set(
        db.scalars(
            select(WecomTransfer.external_userid).where(
                WecomTransfer.brand_id == brand.id,
                WecomTransfer.status.in_(("requested", "waiting")),
            )
        )
    )
    now = utcnow()
    protect = timedelta(days=settings.transfer_protect_days)
    todo: list[WecomContact] = []
    for r in rows:
        if r.external_userid in open_:
            skipped["already_in_transfer"] += 1
        elif (
            r.transfers >= settings.transfer_max
            and r.last_transfer_at is not None
            and as_utc(r.last_transfer_at) > now - protect
        ):
            skipped["protected"] += 1
        else:
            todo.append(r)
    batch = new_id()
    client = client_of(app)
    failed: dict[str, int] = defaultdict(int)
    requested = 0
    for i in range(0, len(todo), PER_CALL):
        part = todo[i : i + PER_CALL]
        ids = [r.external_userid for r in part]
        if data.mode == "on_job":
            got = client.transfer_customer(
                data.handover_userid,
                data.takeover_userid,
                ids,
                transfer_success_msg=data.message,
            )
        else:
            got = client.resigned_transfer_customer(data.handover_userid, data.takeover_userid, ids)
        codes = {str(c.get("external_userid")): int(c.get("errcode", 0)) for c in got}
        with atomic(db):
            for r in part:
                code = codes.get(r.external_userid, 0)
                db.add(
                    WecomTransfer(
                        brand_id=brand.id,
                        batch_id=batch,
                        mode=data.mode,
                        handover_userid=data.handover_userid,
                        takeover_userid=data.takeover_userid,
                        external_userid=r.external_userid,
                        customer_id=r.customer_id,
                        status="waiting" if code == 0 else "failed",
                        errcode=code or None,
                        requested_by=actor.label,
                    )
                )
                if code == 0:
                    requested += 1
                else:
                    failed[str(code)] += 1
    with atomic(db):
        record(
            db,
            actor,
            "wecom.transfer",
            "wecom_transfer",
            batch,
            brand=brand,
            after={
                "mode": data.mode,
                "handover": data.handover_userid,
                "takeover": data.takeover_userid,
                "requested": requested,
                "skipped": dict(skipped),
                "failed": dict(failed),
            },
        )
    return TransferOut(
        batch_id=batch, requested=requested, skipped=dict(skipped), failed=dict(failed)
    )


def poll_transfers(db: Session, limit: int = 100) -> int:
    """Job ``wecom.transfers``: ask WeCom about open transfers; returns how many settled."""
    settled = 0
    with atomic(db):
        pairs = list(
            db.execute(
                select(
                    WecomTransfer.brand_id,
                    WecomTransfer.handover_userid,
                    WecomTransfer.takeover_userid,
                    WecomTransfer.mode,
                )
                .where(WecomTransfer.status == "waiting")
                .group_by(
                    WecomTransfer.brand_id,
                    WecomTransfer.handover_userid,
                    WecomTransfer.takeover_userid,
                    WecomTransfer.mode,
                )
                .limit(limit)
            )
        )
        for brand_id, handover, takeover, mode in pairs:
            try:
                app = app_of(db, brand_id)
                results = client_of(app).transfer_result(
                    handover, takeover, resigned=mode == "resigned"
                )
            except Exception as exc:
                log.warning("transfer_result %s→%s: %s", handover, takeover, exc)
                continue
            status = {str(r.get("external_userid")): int(r.get("status", 2)) for r in results}
            for t in db.scalars(
                select(WecomTransfer).where(
                    WecomTransfer.brand_id == brand_id,
                    WecomTransfer.handover_userid == handover,
                    WecomTransfer.takeover_userid == takeover,
                    WecomTransfer.status == "waiting",
                )
            ):
                new = RESULT_STATUS.get(status.get(t.external_userid, 2), "waiting")
                if new == "waiting":
                    continue
                t.status = new
                t.finished_at = utcnow()
                settled += 1
                if new == "done":
                    _moved(db, t)
    return settled


def _moved(db: Session, t: WecomTransfer) -> None:
    old = db.scalar(
        select(WecomContact).where(
            WecomContact.brand_id == t.brand_id,
            WecomContact.external_userid == t.external_userid,
            WecomContact.staff_userid == t.handover_userid,
        )
    )
    row = db.scalar(
        select(WecomContact).where(
            WecomContact.brand_id == t.brand_id,
            WecomContact.external_userid == t.external_userid,
            WecomContact.staff_userid == t.takeover_userid,
        )
    )
    if row is None:
        row = WecomContact(
            brand_id=t.brand_id,
            external_userid=t.external_userid,
            staff_userid=t.takeover_userid,
            customer_id=t.customer_id,
            state=old.state if old else None,
            added_at=utcnow(),
        )
        db.add(row)
    row.status = "active"
    row.transfers = (old.transfers if old else 0) + 1
    row.last_transfer_at = utcnow()
    row.updated_at = utcnow()
    if old is not None:
        old.status = "transferred"
        old.updated_at = utcnow()


def transfer_groups(
    db: Session, actor: Actor, brand: Brand, data: GroupTransferIn
) -> dict[str, Any]:
    """Hand groups to a new owner (≤300 per member per day, counted over the last 24 h)."""
    authorize(actor, MANAGE, org_queries.brand_ref(brand))
    taker = _member(db, brand.id, data.new_owner)
    if taker is None or not taker.active:
        raise Invalid("wecom.transfer_unknown_staff", field="new_owner")
    app = app_of(db, brand.id)
    since = utcnow() - timedelta(days=1)
    done_today = db.scalar(
        select(func.count())
        .select_from(WecomTransfer)
        .where(
            WecomTransfer.brand_id == brand.id,
            WecomTransfer.mode == "group",
            WecomTransfer.takeover_userid == data.new_owner,
            WecomTransfer.created_at >= since,
        )
    )
    if int(done_today or 0) + len(data.chat_ids) > GROUPS_PER_DAY:
        raise Invalid("wecom.group_transfer_limit", limit=GROUPS_PER_DAY, used=int(done_today or 0))
    failures = client_of(app).transfer_group_chats(data.chat_ids, data.new_owner)
    failed = {str(f.get("chat_id")): int(f.get("errcode", 0)) for f in failures}
    with atomic(db):
        for chat_id in data.chat_ids:
            code = failed.get(chat_id, 0)
            g = db.scalar(
                select(WecomGroup).where(
                    WecomGroup.brand_id == brand.id, WecomGroup.chat_id == chat_id
                )
            )
            db.add(
                WecomTransfer(
                    brand_id=brand.id,
                    batch_id=new_id(),
                    mode="group",
                    handover_userid=(g.owner_userid if g else None) or "",
                    takeover_userid=data.new_owner,
                    external_userid=chat_id,
                    status="done" if code == 0 else "failed",
                    errcode=code or None,
                    requested_by=actor.label,
                    finished_at=utcnow(),
                )
            )
            if code == 0 and g is not None:
                g.owner_userid = data.new_owner
        record(
            db,
            actor,
            "wecom.group_transfer",
            "wecom_group",
            None,
            brand=brand,
            after={"new_owner": data.new_owner, "groups": len(data.chat_ids), "failed": failed},
        )
    return {"transferred": len(data.chat_ids) - len(failed), "failed": failed}
