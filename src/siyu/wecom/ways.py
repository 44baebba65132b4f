"""Channel codes (渠道活码): a ``contact_way`` per source with its own ``state``; the add event
brings the state back, which attributes the new friend (and their later orders) to the source,
and the code's cost gives the cost per acquired friend."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Invalid
from siyu.core.tenancy import Actor
from siyu.org import queries as org_queries
from siyu.org.models import Brand, Membership
from siyu.org.permissions import authorize
from siyu.wecom.apps import MANAGE, app_of, client_of
from siyu.wecom.models import WecomContact, WecomContactWay

STATE = re.compile(r"^[A-Za-z0-9_.-]{1,30}$")


class ContactWayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=30, description="remark, ≤30 chars")
    state: str = Field(min_length=1, max_length=30, description="≤30 chars, returned on add")
    source: str | None = Field(default=None, max_length=64)
    staff_userids: list[str] = Field(min_length=1, max_length=100)
    skip_verify: bool = True
    cost_fen: int = Field(default=0, ge=0, le=10**12)


class ContactWayOut(BaseModel):
    state: str
    name: str
    source: str | None
    staff_userids: list[str]
    config_id: str | None
    qr_code: str | None
    cost_fen: int
    friends: int
    cost_per_friend_fen: int | None


def create_way(db: Session, actor: Actor, brand: Brand, data: ContactWayIn) -> ContactWayOut:
    authorize(actor, MANAGE, org_queries.brand_ref(brand))
    if not STATE.match(data.state):
        raise Invalid("wecom.bad_state", field="state", reason="1–30 letters, digits, _ . -")
    known = set(
        db.scalars(
            select(Membership.wecom_userid).where(
                Membership.brand_id == brand.id, Membership.wecom_userid.in_(data.staff_userids)
            )
        )
    )
    unknown = sorted(set(data.staff_userids) - known)
    if unknown:
        raise Invalid("wecom.transfer_unknown_staff", field=f"staff_userids: {unknown[:5]}")
    if db.scalar(
        select(WecomContactWay.id).where(
            WecomContactWay.brand_id == brand.id, WecomContactWay.state == data.state
        )
    ):
        raise Conflict("wecom.state_taken", state=data.state)
    body = client_of(app_of(db, brand.id)).add_contact_way(
        type=1 if len(data.staff_userids) == 1 else 2,
        scene=2,
        remark=data.name,
        state=data.state,
        users=data.staff_userids,
        skip_verify=data.skip_verify,
    )
    try:
        with atomic(db):
            way = WecomContactWay(
                brand_id=brand.id,
                state=data.state,
                name=data.name,
                source=data.source,
                staff_userids=list(data.staff_userids),
                config_id=str(body.get("config_id") or "") or None,
                qr_code=str(body.get("qr_code") or "") or None,
                cost_fen=data.cost_fen,
            )
            db.add(way)
            record(
                db,
                actor,
                "wecom.contact_way",
                "wecom_contact_way",
                data.state,
                brand=brand,
                after={"name": data.name, "config_id": way.config_id},
            )
    except IntegrityError:
        raise Conflict("wecom.state_taken", state=data.state) from None
    return _out(way, 0)


def _out(w: WecomContactWay, friends: int) -> ContactWayOut:
    return ContactWayOut(
        state=w.state,
        name=w.name,
        source=w.source,
        staff_userids=list(w.staff_userids or []),
        config_id=w.config_id,
        qr_code=w.qr_code,
        cost_fen=w.cost_fen,
        friends=friends,
        cost_per_friend_fen=(w.cost_fen // friends) if friends else None,
    )


def friends_by_state(db: Session, brand_id: str) -> dict[str, int]:
    """State → distinct WeCom customers who added through it (the mirrored contacts)."""
    return {
        str(state): int(n)
        for state, n in db.execute(
            select(WecomContact.state, func.count(func.distinct(WecomContact.external_userid)))
            .where(WecomContact.brand_id == brand_id, WecomContact.state.is_not(None))
            .group_by(WecomContact.state)
        )
    }


def costs_per_friend(db: Session, brand_id: str) -> dict[str, tuple[int, str]]:
    """State → (cost per acquired friend in fen, the code's name) for the brand's channel
    codes that carry a cost and have brought at least one friend."""
    friends = friends_by_state(db, brand_id)
    out: dict[str, tuple[int, str]] = {}
    for w in db.scalars(
        select(WecomContactWay).where(
            WecomContactWay.brand_id == brand_id, WecomContactWay.cost_fen > 0
        )
    ):
        n = friends.get(w.state, 0)
        if n:
            out[w.state] = (w.cost_fen // n, w.name)
    return out


def list_ways(db: Session, brand: Brand) -> list[ContactWayOut]:
    friends = friends_by_state(db, brand.id)
    return [
        _out(w, int(friends.get(w.state, 0)))
        for w in db.scalars(
            select(WecomContactWay)
            .where(WecomContactWay.brand_id == brand.id)
            .order_by(WecomContactWay.state)
        )
    ]
