"""WeCom endpoints: the callback URL WeCom calls (signed, encrypted; no session), and the
brand's connector: app settings, sync, contact ways (channel codes), contacts, groups and
inheritance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from siyu.api.deps import CurrentActor, Db
from siyu.core.errors import NotFound, SiyuError
from siyu.org.queries import access_brand
from siyu.wecom import apps, callback, inherit, sync, ways
from siyu.wecom.crypto import CallbackError
from siyu.wecom.models import WecomContact, WecomGroup, WecomTransfer

callback_router = APIRouter(tags=["wecom"], include_in_schema=False)  # WeCom calls it
router = APIRouter(tags=["wecom"])

READ = "customers.read"
MAX_BODY = 64 * 1024


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _refused(exc: SiyuError) -> PlainTextResponse:
    if isinstance(exc, NotFound):
        return PlainTextResponse("unknown", status_code=404)
    status = 403 if exc.code in ("wecom.bad_signature", "wecom.stale_timestamp") else 400
    code = exc.wecom_code if isinstance(exc, CallbackError) else -40002
    return PlainTextResponse(f"error {code}", status_code=status)


@callback_router.get("/wecom/callback/{brand}", response_class=PlainTextResponse)
def callback_verify(brand: str, request: Request, db: Db) -> PlainTextResponse:
    """URL verification: answers the decrypted ``echostr`` (no quotes, no newline)."""
    try:
        text = callback.verify_url(db, brand, dict(request.query_params), _client(request))
    except SiyuError as exc:
        return _refused(exc)
    return PlainTextResponse(text)


@callback_router.post("/wecom/callback/{brand}", response_class=PlainTextResponse)
async def callback_receive(brand: str, request: Request, db: Db) -> PlainTextResponse:
    """An event: checked, decrypted, queued (handled by ``siyu worker``); answers ``success``
    at once, also for WeCom's retries of an event already queued."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return PlainTextResponse("too large", status_code=413)
    try:
        callback.receive(db, brand, dict(request.query_params), body, _client(request))
    except SiyuError as exc:
        return _refused(exc)
    return PlainTextResponse("success")


# ---------------------------------------------------------------- the connector


@router.get("/brands/{brand}/wecom/app", response_model=apps.AppOut)
def get_app(brand: str, db: Db, actor: CurrentActor) -> apps.AppOut:
    """The brand's WeCom app (secret masked; token and AES key never shown)."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return apps.out(apps.app_of(db, b.id))


@router.put("/brands/{brand}/wecom/app", response_model=apps.AppOut)
def put_app(brand: str, body: apps.AppIn, db: Db, actor: CurrentActor) -> apps.AppOut:
    """Create or replace the brand's WeCom app (secrets encrypted at rest)."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return apps.out(apps.configure(db, actor, b, body))


@router.post("/brands/{brand}/wecom:sync")
def run_sync(brand: str, db: Db, actor: CurrentActor) -> dict[str, Any]:
    """Full sync now: staff, corporate tags (both ways), contacts, groups."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return sync.sync_brand(db, actor, b)


@router.get("/brands/{brand}/wecom/contact-ways", response_model=list[ways.ContactWayOut])
def list_ways(brand: str, db: Db, actor: CurrentActor) -> list[ways.ContactWayOut]:
    """Channel codes with the friends each brought and the cost per friend."""
    b = access_brand(db, actor, brand, READ)
    return ways.list_ways(db, b)


@router.post(
    "/brands/{brand}/wecom/contact-ways", response_model=ways.ContactWayOut, status_code=201
)
def create_way(
    brand: str, body: ways.ContactWayIn, db: Db, actor: CurrentActor
) -> ways.ContactWayOut:
    """A channel QR code (渠道活码) whose ``state`` attributes new friends."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return ways.create_way(db, actor, b, body)


class ContactOut(BaseModel):
    external_userid: str
    staff_userid: str
    customer_id: str | None
    state: str | None
    status: str
    added_at: str | None


@router.get("/brands/{brand}/wecom/contacts", response_model=list[ContactOut])
def list_contacts(
    brand: str,
    db: Db,
    actor: CurrentActor,
    staff: Annotated[str | None, Query(max_length=64)] = None,
    customer: Annotated[str | None, Query(max_length=26)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ContactOut]:
    b = access_brand(db, actor, brand, READ)
    stmt = select(WecomContact).where(WecomContact.brand_id == b.id)
    if staff:
        stmt = stmt.where(WecomContact.staff_userid == staff)
    if customer:
        stmt = stmt.where(WecomContact.customer_id == customer)
    return [
        ContactOut(
            external_userid=c.external_userid,
            staff_userid=c.staff_userid,
            customer_id=c.customer_id,
            state=c.state,
            status=c.status,
            added_at=c.added_at.isoformat() if c.added_at else None,
        )
        for c in db.scalars(stmt.order_by(WecomContact.id).limit(limit))
    ]


class GroupOut(BaseModel):
    chat_id: str
    name: str | None
    owner_userid: str | None
    member_count: int
    status: str


@router.get("/brands/{brand}/wecom/groups", response_model=list[GroupOut])
def list_groups(brand: str, db: Db, actor: CurrentActor) -> list[GroupOut]:
    b = access_brand(db, actor, brand, READ)
    return [
        GroupOut(
            chat_id=g.chat_id,
            name=g.name,
            owner_userid=g.owner_userid,
            member_count=g.member_count,
            status=g.status,
        )
        for g in db.scalars(
            select(WecomGroup).where(WecomGroup.brand_id == b.id).order_by(WecomGroup.chat_id)
        )
    ]


@router.post("/brands/{brand}/wecom/transfers", response_model=inherit.TransferOut, status_code=201)
def transfer(
    brand: str, body: inherit.TransferIn, db: Db, actor: CurrentActor
) -> inherit.TransferOut:
    """Inheritance (在职 / 离职继承) of a member's customers, within WeCom's limits."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return inherit.transfer_customers(db, actor, b, body)


class TransferCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    counts: dict[str, int] = Field(default_factory=dict)


@router.get("/brands/{brand}/wecom/transfers", response_model=TransferCounts)
def transfer_counts(brand: str, db: Db, actor: CurrentActor) -> TransferCounts:
    """Transfers by status."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    rows = db.execute(
        select(WecomTransfer.status, func.count())
        .where(WecomTransfer.brand_id == b.id)
        .group_by(WecomTransfer.status)
    )
    return TransferCounts(counts={str(s): int(n) for s, n in rows})


@router.post("/brands/{brand}/wecom/group-transfers")
def transfer_groups(
    brand: str, body: inherit.GroupTransferIn, db: Db, actor: CurrentActor
) -> dict[str, Any]:
    """Hand groups to a new owner (≤300 per member per day)."""
    b = access_brand(db, actor, brand, apps.MANAGE)
    return inherit.transfer_groups(db, actor, b, body)
