"""Channel endpoints: per-brand channel settings (secrets write-only) and the outbox — rows
with filters (dead letters: ``status=failed``), state counts, and retries. All need
``channels.manage``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from siyu.api.deps import CurrentActor, Db
from siyu.channels import actions, queries
from siyu.channels.schemas import (
    ChannelSettingsOut,
    OutboxRowOut,
    OutboxSummaryOut,
    RetryIn,
    RetryOut,
)
from siyu.org.queries import access_brand

router = APIRouter(tags=["channels"])

PERMISSION = "channels.manage"
SETTINGS_EXAMPLE = {
    "webhook": {"url": "https://crm.example.com/siyu", "secret": "…"},
    "sms": {
        "endpoint": "https://sms.example.com",
        "key_id": "acct-1",
        "secret": "…",
        "sign_name": "A咖啡",
        "templates": {"birthday": {"template_id": "SMS_001", "variables": ["name"]}},
    },
    "email": {"from_address": "hello@brand.example", "smtp_host": None},
}


@router.get("/brands/{brand}/channel-settings", response_model=list[ChannelSettingsOut])
def get_settings(brand: str, db: Db, actor: CurrentActor) -> list[ChannelSettingsOut]:
    """The brand's settings of each configurable channel (webhook, sms, email). Secrets are
    never returned: ``secret_set`` and a masked ``secret_hint`` only."""
    b = access_brand(db, actor, brand, PERMISSION)
    return queries.settings(db, actor, b)


@router.put("/brands/{brand}/channel-settings/{channel}", response_model=ChannelSettingsOut)
def put_settings(
    brand: str,
    channel: Literal["webhook", "sms", "email"],
    db: Db,
    actor: CurrentActor,
    body: Annotated[
        dict[str, Any],
        Body(openapi_examples={k: {"value": v} for k, v in SETTINGS_EXAMPLE.items()}),
    ],
) -> ChannelSettingsOut:
    """Replace the brand's settings of one channel. Fields per channel — webhook: ``url``,
    ``secret``; sms: ``endpoint``, ``key_id``, ``secret``, ``sign_name``, ``templates``
    (code → ``template_id``, ``variables``, optional ``sign_name``); email: ``from_address``,
    optional ``smtp_host``, ``smtp_port``, ``smtp_user``, ``secret`` (the SMTP password),
    ``smtp_starttls``. All: ``enabled``. An empty ``secret`` keeps the stored one,
    ``clear_secret`` removes it. The secret is stored encrypted and never shown again."""
    b = access_brand(db, actor, brand, PERMISSION)
    actions.save_settings(db, actor, b, channel, body)
    return next(s for s in queries.settings(db, actor, b) if s.channel == channel)


@router.get("/brands/{brand}/outbox", response_model=list[OutboxRowOut])
def list_outbox(
    brand: str,
    db: Db,
    actor: CurrentActor,
    status: Annotated[Literal["pending", "sending", "sent", "failed"] | None, Query()] = None,
    channel: Annotated[str | None, Query(max_length=24)] = None,
    sop: Annotated[str | None, Query(max_length=64, description="SOP key or id")] = None,
    reason: Annotated[str | None, Query(max_length=40, description="a reason code")] = None,
    since: Annotated[datetime | None, Query(description="last outcome at or after")] = None,
    until: Annotated[datetime | None, Query(description="last outcome before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxRowOut]:
    """Outbox rows, latest outcome first. ``status=failed`` is the dead-letter list: each
    with its reason code, error text and attempts."""
    b = access_brand(db, actor, brand, PERMISSION)
    return queries.outbox(
        db,
        actor,
        b,
        status=status,
        channel=channel,
        sop=sop,
        reason=reason,
        since=since,
        until=until,
        limit=limit,
    )


@router.get("/brands/{brand}/outbox-summary", response_model=OutboxSummaryOut)
def outbox_summary(brand: str, db: Db, actor: CurrentActor) -> OutboxSummaryOut:
    """Rows per channel and state (pending / sending / sent / failed), and dead letters per
    reason code."""
    b = access_brand(db, actor, brand, PERMISSION)
    return queries.summary(db, actor, b)


@router.get("/brands/{brand}/outbox/{outbox}", response_model=OutboxRowOut)
def show_outbox(brand: str, outbox: str, db: Db, actor: CurrentActor) -> OutboxRowOut:
    b = access_brand(db, actor, brand, PERMISSION)
    return queries.show(db, actor, b, outbox)


@router.post("/brands/{brand}/outbox/{outbox}:retry", response_model=OutboxRowOut)
def retry_one(brand: str, outbox: str, db: Db, actor: CurrentActor) -> OutboxRowOut:
    """Re-queue one dead letter: ``pending``, due now, attempts back to 0 (audited). A row
    that is not ``failed`` is 409 ``channels.not_dead_letter``."""
    b = access_brand(db, actor, brand, PERMISSION)
    actions.retry(db, actor, b, [outbox])
    return queries.show(db, actor, b, outbox)


@router.post("/brands/{brand}/outbox:retry", response_model=RetryOut)
def retry_many(brand: str, body: RetryIn, db: Db, actor: CurrentActor) -> RetryOut:
    """Re-queue up to 500 dead letters at once; all or nothing."""
    b = access_brand(db, actor, brand, PERMISSION)
    ids = actions.retry(db, actor, b, body.ids)
    return RetryOut(retried=len(ids), ids=ids)
