"""Real-time triggers in ``siyu worker``: events that start an SOP (a WeCom add starts the
welcome journey) are picked up as soon as they are in the lake — flushed from the inbox by
the same worker round, or written by a batch — and handed to :func:`engine.on_event`, which
enrols, advances and plans at once and writes the outbox row in the same transaction.

Only fresh events trigger in real time (occurred within :data:`FRESH` of now): a back-filled
import of last year's contacts must not greet anyone today; those are left to the day's run.
Each pass remembers how far it has read (``received_at``) in a ``SopRun`` row of mode
``realtime``; ``on_event`` is idempotent (an open enrolment is not opened again, touches are
unique by key), so a pass that crashed half-way is simply repeated.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic
from siyu.customers.models import Identity
from siyu.customers.oneid import identities_by_key
from siyu.sop import engine
from siyu.sop.models import Sop, SopRun

FRESH = timedelta(hours=1)


def _triggers(db: Session) -> dict[str, list[Sop]]:
    """Brand id → enabled SOPs started by an event (without a cron, relative or birthday
    schedule: those enter on their own clock)."""
    out: dict[str, list[Sop]] = {}
    for sop in db.scalars(select(Sop).where(Sop.status == "enabled")):
        aud, sched = sop.audience or {}, sop.schedule or {}
        if aud.get("kind") != "event" or not aud.get("event"):
            continue
        if any(sched.get(k) for k in ("cron", "relative", "birthday")):
            continue
        out.setdefault(sop.brand_id, []).append(sop)
    return out


def _since(db: Session, brand_id: str, sops: list[Sop]) -> datetime:
    last = db.scalar(
        select(SopRun)
        .where(SopRun.brand_id == brand_id, SopRun.mode == "realtime")
        .order_by(SopRun.started_at.desc())
        .limit(1)
    )
    if last is not None and last.counts.get("received_until"):
        return as_utc(datetime.fromisoformat(last.counts["received_until"]))
    return min(as_utc(s.enabled_at or s.created_at) for s in sops)


def realtime_pass(db: Session, limit: int) -> int:
    """Hand every new, fresh trigger event to the engine; returns events handled. (Events of
    one ingest share one ``received_at``, so a pass never stops inside one; ``limit`` is the
    worker's batch size and only ends the round.)"""
    from siyu.analytics.engine import connect
    from siyu.org.models import Brand

    handled = 0
    for brand_id, sops in sorted(_triggers(db).items()):
        brand = db.get(Brand, brand_id)
        if brand is None:
            continue
        since = _since(db, brand_id, sops)
        types = sorted({str(s.audience["event"]) for s in sops})
        with connect() as eng:
            ev = eng.table("events", brand_id)
            fresh = utcnow() - FRESH
            got = eng.execute(
                ev.filter(
                    ev.event_type.isin(types), ev.received_at > since, ev.occurred_at >= fresh
                )
                .order_by([ev.received_at, ev.event_id])
                .select("identity_key", "event_type", "received_at")
            )
        if not got.num_rows:
            continue
        rows: list[dict[str, Any]] = got.to_pylist()
        pairs = {tuple(r["identity_key"].split(":", 1)) for r in rows if r["identity_key"]}
        owner = {
            f"{t}:{h}": cid
            for cid, t, h in identities_by_key(
                db,
                brand_id,
                [(p[0], p[1]) for p in pairs],
                (Identity.customer_id, Identity.id_type, Identity.value_hash),
            )
            if cid
        }
        for r in rows:
            cid = owner.get(r["identity_key"] or "")
            if cid is not None:
                engine.on_event(db, brand, cid, r["event_type"], as_utc(r["received_at"]))
        until = as_utc(rows[-1]["received_at"])
        now = utcnow()
        with atomic(db):
            db.add(
                SopRun(
                    brand_id=brand_id,
                    day=now.date(),
                    mode="realtime",
                    status="ok",
                    started_at=now,
                    finished_at=utcnow(),
                    counts={"received_until": until.isoformat(), "events": len(rows)},
                )
            )
        handled += len(rows)
    # one pass reads everything new: report less than a full batch so the round moves on
    return min(handled, limit - 1)
