"""The outbox dispatcher (job ``channels.outbox`` of ``siyu worker``).

Each pass:

1. **Claims** up to ``limit`` rows that are ``pending`` and due (``available_at <= now``), or
   ``sending`` with an expired claim, for channels that have an adapter. On PostgreSQL the
   rows are read ``FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint rows; SQLite
   runs one worker. In the same transaction each row becomes ``sending``, ``attempts`` + 1,
   and ``available_at`` is set to the claim's expiry (claim time + ``lease``): while a row is
   ``sending``, ``available_at`` is its lease deadline, and the claim time is
   ``available_at - lease``.
2. **Sends** each row through its adapter (outside any transaction).
3. **Records** each outcome in its own transaction, fenced on the claim (``status =
   'sending'`` and the same lease deadline), so a worker whose claim expired and was taken
   over never overwrites the newer claim's result:
   ``sent`` → ``sent_at``; ``transient`` → back to ``pending`` with exponential back-off and
   jitter, or ``failed`` once ``max_attempts`` is reached; ``permanent`` → ``failed`` with the
   reason in ``error``.

A worker killed between claim and record leaves its rows ``sending``; once the lease has
expired the next pass reclaims them (the kill counts as an attempt, so a row that kills its
worker every time ends ``failed`` instead of looping). Delivery is therefore **at-least-once**:
a row whose provider accepted it just before the kill is sent again. Adapters pass the row's
idempotency key to the provider (webhook header, SMS ``out_id``, e-mail ``Message-ID``) so the
receiver can drop the duplicate. The lease must be longer than an adapter's time-out.

Adapters come from ``siyu.channels.config``: per brand from its channel settings, with the
process settings as the fallback (e-mail). A row of a channel the dispatcher knows but the
brand has not configured fails ``not_configured``; rows of channels without any adapter
factory (``wecom_moments``, ``mini_subscribe``, …) are left ``pending``. The WeCom channels
(``wecom_1to1``, ``wecom_mass``, ``wecom_group``) use :mod:`siyu.channels.wecom`; a brand
without a WeCom app gets a permanent ``wecom.not_configured``.

Before sending, e-mail and SMS rows get their recipient from the PII vault
(``siyu.channels.recipients``), in memory only. Each row is prepared, sent and recorded on its
own: whatever one row does (a payload that is not a message, an adapter raising, a vault
value that cannot be decrypted, a database error while recording) never stops the others.

A row of an SOP touch whose SOP has been switched off (``disabled``) since it was planned is
not sent: the claim fails it at once with ``sop_disabled`` (switching an SOP off stops what it
had queued, not just what it would plan next).

Claims are tagged with the worker (``claimed_by`` = host:pid) and fenced on it as well.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from siyu.channels import recipients
from siyu.channels.base import Channel, Message, Outcome
from siyu.channels.config import BrandAdapters, StaticAdapters
from siyu.core.clock import utcnow
from siyu.core.errors import SiyuError
from siyu.core.settings import get_settings
from siyu.sop.models import Outbox, Sop, Touch

log = logging.getLogger("siyu.channels.dispatcher")


def worker_id() -> str:
    """This process as a claim owner: ``host:pid`` (at most 64 characters)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    lease: timedelta = timedelta(minutes=5)

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        settings = get_settings()
        return cls(
            max_attempts=settings.outbox_max_attempts,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )

    def backoff(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential back-off with "equal jitter": half the step fixed, half random, so
        retries of a provider outage spread out instead of arriving together."""
        step = min(self.cap, self.base * (1 << max(attempts - 1, 0)))
        r = float((rng or random).random())
        return step / 2 + step / 2 * r


class AdapterSource(Protocol):
    def channels(self) -> list[str]: ...

    def prepare(self, brand_ids: set[str]) -> None: ...

    def get(self, brand_id: str, channel: str) -> Channel | None: ...


def default_adapters(db: Session) -> BrandAdapters:
    """The adapters of this process: per-brand settings over the global ones."""
    return BrandAdapters(db)


@dataclass(frozen=True)
class Claim:
    row_id: str
    deadline: datetime  # the lease deadline: the fencing token for recording the outcome
    attempts: int
    message: Message
    worker: str | None = None
    poison: str | None = None  # why the row cannot be a message at all


def _message(row: Outbox) -> tuple[Message, str | None]:
    payload: Any = row.payload
    poison = None
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        poison = f"bad_payload: payload is a {type(payload).__name__}, not an object"
        payload = {}
    elif "content" in payload and not isinstance(payload["content"], dict):
        poison = "bad_payload: content is not an object"
    message = Message(
        brand_id=row.brand_id,
        idem_key=row.idem_key,
        channel=row.channel,
        customer_id=row.customer_id,
        payload=dict(payload),
        attempt=row.attempts,
    )
    return message, poison


def claim(
    db: Session,
    channels: list[str],
    limit: int,
    now: datetime,
    lease: timedelta,
    worker: str | None = None,
    max_attempts: int | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` due rows (pending, or sending with an expired lease); commits.

    A row reclaimed with ``max_attempts`` already spent (its workers died or lost it every
    time) is failed here (``worker_lost``) instead of being tried again."""
    query = (
        select(Outbox)
        .where(
            Outbox.channel.in_(channels),
            or_(Outbox.status == "pending", Outbox.status == "sending"),
            Outbox.available_at <= now,
        )
        .order_by(Outbox.available_at)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    deadline = now + lease
    claimed: list[Claim] = []
    rows = list(db.scalars(query))
    off = _switched_off(db, [r.touch_id for r in rows if r.touch_id])
    for row in rows:
        if row.touch_id in off:
            row.status, row.available_at, row.reason = "failed", now, "sop_disabled"
            row.error = f"sop_disabled: SOP {off[row.touch_id]} was switched off before sending"
            continue
        if row.status == "sending":
            log.warning("reclaiming outbox row %s from %s (claim expired)", row.id, row.claimed_by)
            if max_attempts is not None and (row.attempts or 0) >= max_attempts:
                row.status, row.available_at, row.reason = "failed", now, "worker_lost"
                row.error = f"max attempts ({row.attempts}): claim expired (worker lost)"
                continue
        row.status = "sending"
        row.attempts = (row.attempts or 0) + 1
        row.available_at = deadline
        row.claimed_by = worker
        message, poison = _message(row)
        claimed.append(Claim(row.id, deadline, row.attempts, message, worker, poison))
    db.commit()
    return claimed


def _switched_off(db: Session, touch_ids: list[str]) -> dict[str, str]:
    """Touch id → SOP key, for the touches among ``touch_ids`` whose SOP is disabled."""
    out: dict[str, str] = {}
    for start in range(0, len(touch_ids), 500):
        for touch_id, key in db.execute(
            select(Touch.id, Sop.key)
            .join(Sop, Sop.id == Touch.sop_id)
            .where(Touch.id.in_(touch_ids[start : start + 500]), Sop.status == "disabled")
        ):
            out[str(touch_id)] = str(key)
    return out


def _send(adapter: Channel, message: Message) -> Outcome:
    try:
        return adapter.send(message)
    except Exception as exc:  # an adapter bug must not kill the worker; retried
        log.exception("adapter %s failed on %s", adapter.name, message.idem_key)
        return Outcome.transient(
            f"adapter error: {type(exc).__name__}: {exc}", code="adapter_error"
        )


def render(db: Session, message: Message) -> Message | Outcome:
    """The row's content with its templates rendered for its customer (SOP steps carry
    templates: ``{{ nickname }}``, ``{{ guide_name }}`` …); an unusable one is final."""
    content = message.payload.get("content")
    if not isinstance(content, dict) or not any(
        "{" in str(content.get(k) or "") for k in ("text", "title", "desc")
    ):
        return message
    from siyu.content import queries as content_queries
    from siyu.org import queries as org_queries

    brand = org_queries.find_brand(db, message.brand_id)
    if brand is None:
        return Outcome.permanent("bad_payload: unknown brand", code="bad_payload")
    try:
        out = content_queries.render_content(db, brand, content, message.customer_id)
    except SiyuError as exc:
        return Outcome.permanent(
            f"content_unusable: {exc.code}: {exc.message('en')}", code="content_unusable"
        )
    return replace(message, payload={**message.payload, "content": out})


def prepare(db: Session, c: Claim) -> Message | Outcome:
    """The message to send, its recipient resolved from the vault; or the outcome that
    makes sending pointless."""
    if c.poison:
        return Outcome.permanent(c.poison, code="bad_payload")
    message = c.message
    rendered = render(db, message)
    if isinstance(rendered, Outcome):
        return rendered
    message = rendered
    id_type = recipients.ADDRESS_TYPES.get(message.channel)
    if id_type is None:
        return message
    if message.customer_id is None:
        if message.to:
            return message
        return Outcome.permanent("no_recipient: the row names no customer", code="no_recipient")
    customer = recipients.current_customer(db, message.brand_id, message.customer_id)
    if customer is None:
        return Outcome.permanent(
            f"no_recipient: customer {message.customer_id} not found", code="no_recipient"
        )
    if message.payload.get("kind") == "marketing" and recipients.opted_out(
        db, message.brand_id, customer
    ):
        return Outcome.permanent("opted_out: marketing consent refused", code="opted_out")
    if message.to:
        return message
    try:
        to = recipients.address(db, message.brand_id, customer, id_type)
    except (SiyuError, ValueError) as exc:  # a vault value we cannot decrypt: retried
        why = exc.code if isinstance(exc, SiyuError) else type(exc).__name__
        return Outcome.transient(f"vault: {why}", code="adapter_error")
    if not to:
        return Outcome.permanent(
            f"no_recipient: customer {customer} has no {id_type} in the vault",
            code="no_recipient",
        )
    return replace(message, payload={**message.payload, "to": to})


def record(
    db: Session,
    row_id: str,
    lease_deadline: datetime,
    attempts: int,
    outcome: Outcome,
    policy: RetryPolicy,
    rng: random.Random | None = None,
    worker: str | None = None,
) -> str:
    """Store one outcome, fenced on the claim; returns the row's new status ("" when the
    claim had been taken over and nothing was written)."""
    now = utcnow()
    values: dict[str, object]
    if outcome.status == "sent":
        values = {
            "status": "sent",
            "sent_at": now,
            "available_at": now,
            "error": None,
            "reason": None,
        }
    elif outcome.status == "transient" and attempts < policy.max_attempts:
        delay = policy.backoff(attempts, rng)
        if outcome.retry_after:
            delay = max(delay, timedelta(seconds=outcome.retry_after))
        values = {
            "status": "pending",
            "available_at": now + delay,
            "error": outcome.reason,
            "reason": outcome.code or "provider_unavailable",
        }
    else:
        reason = outcome.reason or "failed"
        if outcome.status == "transient":
            reason = f"max attempts ({attempts}): {reason}"
        values = {
            "status": "failed",
            "available_at": now,
            "error": reason[:1000],
            "reason": outcome.code or "rejected",
        }
    fence = [
        Outbox.id == row_id,
        Outbox.status == "sending",
        Outbox.available_at == lease_deadline,
    ]
    if worker is not None:
        fence.append(Outbox.claimed_by == worker)
    if db.get_bind().dialect.name == "postgresql":
        # An outcome lost in a database crash (not a worker crash: the commit has reached the
        # server) only means the row is claimed again after its lease and sent once more —
        # what at-least-once allows — so the per-row commit need not wait for the WAL flush
        # (SQLite's synchronous=NORMAL is the same trade).
        db.execute(text("SET LOCAL synchronous_commit TO OFF"))
    result = db.execute(
        update(Outbox).where(*fence).values(**values).execution_options(synchronize_session=False)
    )
    db.commit()
    if getattr(result, "rowcount", 1) == 0:
        log.warning("outbox row %s: claim taken over, outcome %s dropped", row_id, outcome)
        return ""
    return str(values["status"])


def dispatch(
    db: Session,
    limit: int,
    *,
    adapters: Mapping[str, Channel] | AdapterSource | None = None,
    policy: RetryPolicy | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
    worker: str | None = None,
) -> int:
    """One dispatcher pass; returns the number of rows claimed (and attempted)."""
    source: AdapterSource
    if adapters is None:
        source = default_adapters(db)
    elif isinstance(adapters, Mapping):
        source = StaticAdapters(adapters)
    else:
        source = adapters
    policy = policy or RetryPolicy.from_settings()
    names = source.channels()
    if not names:
        return 0
    worker = worker or worker_id()
    claimed = claim(db, names, limit, now or utcnow(), policy.lease, worker, policy.max_attempts)
    try:
        source.prepare({c.message.brand_id for c in claimed})
    except Exception:  # each row's adapter is looked up (and fails) on its own below
        log.exception("reading channel settings")
        db.rollback()
    for c in claimed:
        try:
            outcome = _deliver(db, source, c)
            record(db, c.row_id, c.deadline, c.attempts, outcome, policy, rng, worker)
        except Exception as exc:  # a database error on one row must not stop the others
            log.exception("outbox row %s: could not be delivered or recorded", c.row_id)
            db.rollback()
            failed = Outcome.transient(f"internal: {type(exc).__name__}", code="adapter_error")
            try:  # when even this fails the row stays claimed and is retaken after the lease
                record(db, c.row_id, c.deadline, c.attempts, failed, policy, rng, worker)
            except Exception:
                log.exception("outbox row %s: could not record the failure", c.row_id)
                db.rollback()
    return len(claimed)


def _deliver(db: Session, source: AdapterSource, c: Claim) -> Outcome:
    try:
        adapter = source.get(c.message.brand_id, c.message.channel)
    except Exception as exc:  # settings that cannot be read (a secret we cannot decrypt)
        log.exception("channel settings of %s/%s", c.message.brand_id, c.message.channel)
        return Outcome.transient(f"settings: {type(exc).__name__}", code="not_configured")
    if adapter is None:
        return Outcome.permanent(
            f"not_configured: no {c.message.channel} settings for this brand",
            code="not_configured",
        )
    prepared = prepare(db, c)
    db.rollback()  # end the read transaction before the network call
    if isinstance(prepared, Outcome):
        return prepared
    return _send(adapter, prepared)


def dispatch_outbox(db: Session, limit: int) -> int:
    """The ``channels.outbox`` job handler: passes of ``outbox_batch`` rows (each its own
    claim, so a worker never holds more than one batch) up to ``limit`` rows."""
    chunk = get_settings().outbox_batch
    total = 0
    while total < limit:
        step = min(chunk, limit - total)
        handled = dispatch(db, step)
        total += handled
        if handled < step:
            break
    return total
