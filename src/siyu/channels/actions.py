"""Every write of the channels domain, each checking ``channels.manage``, in one transaction,
audited:

- ``save_settings``: a brand's settings for one channel (secret encrypted, write-only: the
  audit entry records that a secret was set, never its value);
- ``retry``: dead letters (``failed`` rows) back to ``pending`` with a fresh attempt count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels import errors, queries
from siyu.channels.models import CONFIGURABLE, ChannelSetting
from siyu.channels.schemas import SETTINGS_MODELS
from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, FieldError, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.core.validation import parse
from siyu.customers import vault
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize
from siyu.sop.models import Outbox

if TYPE_CHECKING:
    from siyu.org.models import Brand

PERMISSION = "channels.manage"
NEEDS_SECRET = frozenset({"webhook", "sms"})


def _authorize(actor: Actor, brand: Brand) -> None:
    authorize(actor, PERMISSION, org_queries.brand_ref(brand))


def hint(secret: str) -> str:
    """A secret as shown after saving: its last 4 characters, the rest masked."""
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


def _audit_view(row: ChannelSetting) -> dict[str, Any]:
    return {
        "channel": row.channel,
        "enabled": row.enabled,
        "config": row.config,
        "secret_set": row.secret_enc is not None,
        "secret_hint": row.secret_hint,
    }


def save_settings(
    db: Session, actor: Actor, brand: Brand, channel: str, data: Any
) -> ChannelSetting:
    """Create or replace the brand's settings of ``channel`` (``webhook``, ``sms``,
    ``email``). ``data`` is validated by the channel's model; an empty ``secret`` keeps the
    stored one, ``clear_secret`` removes it."""
    _authorize(actor, brand)
    if channel not in CONFIGURABLE:
        raise NotFound(errors.UNKNOWN_CHANNEL, channel=channel[:40])
    body = parse(SETTINGS_MODELS[channel], data)
    config = body.model_dump(exclude={"enabled", "secret", "clear_secret"}, mode="json")
    with atomic(db):
        row = db.scalar(
            select(ChannelSetting).where(
                ChannelSetting.brand_id == brand.id, ChannelSetting.channel == channel
            )
        )
        before = _audit_view(row) if row is not None else None
        if row is None:
            row = ChannelSetting(brand_id=brand.id, channel=channel)
            db.add(row)
        row.enabled = body.enabled
        row.config = config
        if body.secret:
            row.secret_enc = vault.encrypt(body.secret)
            row.secret_hint = hint(body.secret)
        elif body.clear_secret:
            row.secret_enc, row.secret_hint = None, None
        if channel in NEEDS_SECRET and row.secret_enc is None:
            raise Invalid(
                errors.SECRET_REQUIRED,
                channel=channel,
                errors=[FieldError("invalid.missing", "secret", reason="required")],
            )
        row.updated_at = utcnow()
        row.updated_by = actor.label
        db.flush()
        record(
            db,
            actor,
            "channels.settings.save",
            "channel_setting",
            row.id,
            brand=brand,
            before=before,
            after=_audit_view(row),
        )
    return row


def retry(db: Session, actor: Actor, brand: Brand, ids: list[str]) -> list[str]:
    """Re-queue dead letters: each ``failed`` row of the brand back to ``pending``, due now,
    with ``attempts`` 0 and its last error kept in the audit entry. An id that is not the
    brand's (or outside the actor's data scope) is ``NotFound``; a row that is not ``failed`` is
    ``Conflict`` (nothing changes then)."""
    _authorize(actor, brand)
    wanted = list(dict.fromkeys(ids))
    with atomic(db):
        rows = {
            r.id: r
            for r in db.scalars(
                queries.scoped(db, actor, brand, select(Outbox))
                .where(Outbox.id.in_(wanted))
                .with_for_update()
            )
        }
        missing = [i for i in wanted if i not in rows]
        if missing:
            raise NotFound(errors.OUTBOX_NOT_FOUND, id=missing[0][:40])
        alive = [i for i in wanted if rows[i].status != "failed"]
        if alive:
            raise Conflict(errors.NOT_DEAD, id=alive[0], status=rows[alive[0]].status)
        now = utcnow()
        for i in wanted:
            row = rows[i]
            before = {"status": row.status, "attempts": row.attempts, "reason": row.reason}
            before["error"] = row.error
            row.status, row.attempts, row.available_at = "pending", 0, now
            row.reason, row.error, row.claimed_by = None, None, None
            record(
                db,
                actor,
                "outbox.retry",
                "outbox",
                row.id,
                brand=brand,
                before=before,
                after={"status": "pending", "attempts": 0, "idem_key": row.idem_key},
            )
    return wanted
