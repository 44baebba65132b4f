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

WeCom rows (``wecom_1to1``, ``wecom_mass``, ``wecom_group``) go through
:mod:`siyu.channels.wecom`; a brand without a WeCom app gets a permanent failure. Channels
without an adapter (``email`` without SMTP settings, ``wecom_moments``, …) are left ``pending``
and untouched.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.channels.base import Channel, Message, Outcome
from siyu.channels.console import ConsoleChannel
from siyu.channels.email import EmailChannel, SmtpConfig
from siyu.channels.wecom import wecom_adapters
from siyu.core.clock import utcnow
from siyu.core.db import session_factory
from siyu.core.settings import get_settings
from siyu.sop.models import Outbox

log = logging.getLogger("siyu.channels.dispatcher")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    lease: timedelta = timedelta(minutes=5)

    def backoff(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential back-off with "equal jitter": half the step fixed, half random, so
        retries of a provider outage spread out instead of arriving together."""
        step = min(self.cap, self.base * (1 << max(attempts - 1, 0)))
        r = float((rng or random).random())
        return step / 2 + step / 2 * r


def default_adapters(engine: Engine | None = None) -> dict[str, Channel]:
    """The adapters configured for this process: console always; e-mail when SMTP is set.
    Webhook and SMS need per-brand settings (endpoints, templates) and are registered by
    whoever holds them (``dispatch(..., adapters=...)``)."""
    adapters: dict[str, Channel] = {"console": ConsoleChannel()}
    smtp = SmtpConfig.from_settings(get_settings())
    if smtp is not None:
        adapters["email"] = EmailChannel(smtp)
    adapters.update(wecom_adapters(session_factory(engine)))
    return adapters


@dataclass(frozen=True)
class Claim:
    row_id: str
    deadline: datetime  # the lease deadline: the fencing token for recording the outcome
    attempts: int
    message: Message


def claim(
    db: Session,
    channels: list[str],
    limit: int,
    now: datetime,
    lease: timedelta,
) -> list[Claim]:
    """Claim up to ``limit`` due rows (pending, or sending with an expired lease); commits."""
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
    for row in db.scalars(query):
        if row.status == "sending":
            log.warning("reclaiming outbox row %s (claim expired)", row.id)
        row.status = "sending"
        row.attempts = (row.attempts or 0) + 1
        row.available_at = deadline
        message = Message(
            brand_id=row.brand_id,
            idem_key=row.idem_key,
            channel=row.channel,
            customer_id=row.customer_id,
            payload=dict(row.payload or {}),
            attempt=row.attempts,
        )
        claimed.append(Claim(row.id, deadline, row.attempts, message))
    db.commit()
    return claimed


def _send(adapter: Channel, message: Message) -> Outcome:
    try:
        return adapter.send(message)
    except Exception as exc:  # an adapter bug must not kill the worker; retried
        log.exception("adapter %s failed on %s", adapter.name, message.idem_key)
        return Outcome.transient(f"adapter error: {type(exc).__name__}: {exc}")


def record(
    db: Session,
    row_id: str,
    lease_deadline: datetime,
    attempts: int,
    outcome: Outcome,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> str:
    """Store one outcome, fenced on the claim; returns the row's new status ("" when the
    claim had been taken over and nothing was written)."""
    now = utcnow()
    values: dict[str, object]
    if outcome.status == "sent":
        values = {"status": "sent", "sent_at": now, "available_at": now, "error": None}
    elif outcome.status == "transient" and attempts < policy.max_attempts:
        delay = policy.backoff(attempts, rng)
        if outcome.retry_after:
            delay = max(delay, timedelta(seconds=outcome.retry_after))
        values = {"status": "pending", "available_at": now + delay, "error": outcome.reason}
    else:
        reason = outcome.reason or "failed"
        if outcome.status == "transient":
            reason = f"max attempts ({attempts}): {reason}"
        values = {"status": "failed", "available_at": now, "error": reason[:1000]}
    result = db.execute(
        update(Outbox)
        .where(
            Outbox.id == row_id,
            Outbox.status == "sending",
            Outbox.available_at == lease_deadline,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
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
    adapters: Mapping[str, Channel] | None = None,
    policy: RetryPolicy | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> int:
    """One dispatcher pass; returns the number of rows claimed (and attempted)."""
    adapters = default_adapters(db.get_bind().engine) if adapters is None else adapters
    policy = policy or RetryPolicy()
    if not adapters:
        return 0
    claimed = claim(db, sorted(adapters), limit, now or utcnow(), policy.lease)
    for c in claimed:
        outcome = _send(adapters[c.message.channel], c.message)
        record(db, c.row_id, c.deadline, c.attempts, outcome, policy, rng)
    return len(claimed)


def dispatch_outbox(db: Session, limit: int) -> int:
    """The ``channels.outbox`` job handler (default adapters)."""
    return dispatch(db, limit)
