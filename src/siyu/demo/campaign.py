"""The demo brands' measured campaign: a coupon SOP (好友促活券) that ran three weeks ago on the
segment ``quiet_friends`` (WeCom friends without an order in the last 30 days) with a 30%
holdout, so "what did this SOP add?" has a real
answer on the demo (``metrics.attribution.sop_effect``: treated vs holdout, difference with a
confidence interval).

The customers' behaviour is a simple model driven by what actually reached them: a customer
whose touch was delivered redeems the coupon and buys within two weeks with probability
``BUY_TOUCHED``; everyone else — the holdout, and treated customers whose touch never went
out — buys at the baseline ``BUY_BASELINE``. The brand's ordinary orders (from the generator)
fall on both arms alike. :func:`run` with ``switched_off=True`` builds the same campaign
switched off before the worker delivered it (the dispatcher fails rows of a disabled SOP with
``sop_disabled``): nothing reaches anyone, and the measured effect is indistinguishable from
zero — the check that the holdout comparison does not invent an effect.

Deterministic per brand and SOP key (seeded); idempotent.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.tenancy import SYSTEM
from siyu.ingest import actions as ingest
from siyu.sop import actions as sop_actions
from siyu.sop import engine
from siyu.sop.models import Enrolment, Outbox, Sop, Touch
from siyu.sop.schemas import SopIn
from siyu.tags.compute import local_day

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

KEY = "activation_coupon"
SEGMENT = "quiet_friends"
SEGMENT_NAME = "30天未下单好友"
SEGMENT_RULE = "exists(wecom_contact_added, last 365d) and not exists(order_paid, last 30d)"
HOLDOUT_PCT = 30
DAYS_AGO = 21
WINDOW_DAYS = 14  # the coupon's validity: the window the effect is measured over
BUY_TOUCHED = 0.22
BUY_BASELINE = 0.04
PRICES = (2_900, 3_200, 3_800, 5_800, 8_900)


def _sop(db: Session, brand: Brand, key: str, name: str) -> Sop:
    from siyu.tags import segments
    from siyu.tags.models import Segment
    from siyu.tags.schemas import SegmentIn

    have = db.scalar(select(Segment.id).where(Segment.brand_id == brand.id, Segment.key == SEGMENT))
    if have is None:
        segments.create(
            db, SYSTEM, brand, SegmentIn(key=SEGMENT, name=SEGMENT_NAME, definition=SEGMENT_RULE)
        )
    body = SopIn.model_validate(
        {
            "key": key,
            "name": name,
            "description": (
                f"给30天没下单的好友发一张两周内有效的满减券；{HOLDOUT_PCT}% 随机对照组不发送，"
                "用于衡量这张券带来的增量。"
            ),
            "priority": 30,
            "holdout_pct": HOLDOUT_PCT,
            "audience": {"kind": "segment", "segment": SEGMENT},
            "goal_event": None,
            "steps": [
                {
                    "type": "touch",
                    "channel": "wecom_1to1",
                    "sender": "owner_guide",
                    "content": {
                        "text": "{{ nickname }}，好久不见！送您一张满30减10元券，"
                        "两周内到店或小程序下单可用~"
                    },
                    "valid_hours": 48,
                }
            ],
        }
    )
    return sop_actions.create_sop(db, SYSTEM, brand, body)


def run(
    db: Session,
    brand: Brand,
    key: str = KEY,
    name: str = "好友促活券（含对照组）",
    *,
    switched_off: bool = False,
) -> dict[str, Any]:
    """Create and run the campaign ``DAYS_AGO`` days ago (idempotent: an existing SOP
    ``key`` is left as it is); counts of what exists."""
    existing = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == key))
    if existing is None:
        _sop(db, brand, key, name)
        sop = sop_actions.enable_sop(db, SYSTEM, brand, key)
        day = local_day(utcnow(), brand.timezone) - timedelta(days=DAYS_AGO)
        start, _end = engine.day_bounds(day, brand.timezone)
        with atomic(db):  # the campaign started three weeks ago, for that day's audience
            sop.enabled_at = start - timedelta(hours=1)
            sop.enrolled_until = None
        engine.run_day(db, SYSTEM, brand, day)
        if switched_off:
            sop_actions.disable_sop(db, SYSTEM, brand, key)
        else:
            with atomic(db):  # the worker delivered them (the demo has no WeCom to send to)
                db.execute(
                    update(Outbox)
                    .where(
                        Outbox.brand_id == brand.id,
                        Outbox.status == "pending",
                        _of(sop),
                    )
                    .values(status="sent", sent_at=Outbox.available_at, attempts=1)
                )
        _outcomes(db, brand, sop)
    return summary(db, brand, key)


def _of(sop: Sop) -> Any:
    """Outbox rows of the SOP's touches."""
    return Outbox.touch_id.in_(select(Touch.id).where(Touch.sop_id == sop.id))


def setup(db: Session, brand: Brand) -> dict[str, Any]:
    """The demo's campaign (idempotent)."""
    return run(db, brand)


def _outcomes(db: Session, brand: Brand, sop: Sop) -> int:
    from siyu.demo.content import _identifier

    rng = random.Random(f"campaign:{brand.slug}:{sop.key}")  # noqa: S311 (demo data)
    enrolments = list(
        db.execute(
            select(Enrolment.id, Enrolment.customer_id, Enrolment.entered_at)
            .where(Enrolment.sop_id == sop.id)
            .order_by(Enrolment.customer_id)
        )
    )
    delivered = set(
        db.scalars(
            select(Outbox.customer_id).where(
                Outbox.brand_id == brand.id,
                Outbox.status == "sent",
                _of(sop),
            )
        )
    )
    ids = _identifier(db, brand.id, [e[1] for e in enrolments])
    now = utcnow()
    events: list[dict[str, Any]] = []
    for enrolment_id, customer_id, entered_at in enrolments:
        touched = customer_id in delivered
        buys = rng.random() < (BUY_TOUCHED if touched else BUY_BASELINE)
        ident = ids.get(customer_id)
        if not buys or ident is None:
            continue
        at = entered_at.replace(tzinfo=now.tzinfo) + timedelta(
            minutes=rng.randint(30, (WINDOW_DAYS - 1) * 24 * 60)
        )
        if at >= now:
            continue
        fen = rng.choice(PRICES)
        props: dict[str, Any] = {"order_id": f"AC-{enrolment_id[-12:]}", "paid_fen": fen}
        props["channel"] = rng.choice(("mini_mall", "pos"))
        if touched:
            props["coupon_codes"] = [f"AC10-{enrolment_id[-8:]}"]
            props["discount_fen"] = 1_000
            events.append(
                {
                    "event_id": f"demo-campaign-coupon-{enrolment_id}",
                    "event_type": "coupon_redeemed",
                    "occurred_at": at.isoformat(),
                    "identifiers": [ident],
                    "source": "demo",
                    "properties": {
                        "coupon_code": f"AC10-{enrolment_id[-8:]}",
                        "order_id": props["order_id"],
                        "value_fen": 1_000,
                    },
                }
            )
        events.append(
            {
                "event_id": f"demo-campaign-order-{enrolment_id}",
                "event_type": "order_paid",
                "occurred_at": at.isoformat(),
                "identifiers": [ident],
                "source": "demo",
                "properties": props,
            }
        )
    stored = 0
    for start in range(0, len(events), 500):
        out = ingest.ingest_batch(db, SYSTEM, brand, events[start : start + 500], source="demo")
        refused = [r for r in out.results if r.status == "rejected"]
        if refused:  # our own generator's events: a refusal is a bug here, not bad input
            raise RuntimeError(f"demo campaign events refused: {refused[:3]}")
        stored += out.accepted
    while ingest.flush_inbox(db):
        pass
    return stored


def summary(db: Session, brand: Brand, key: str = KEY) -> dict[str, Any]:
    sop = db.scalar(select(Sop).where(Sop.brand_id == brand.id, Sop.key == key))
    if sop is None:
        return {"sop": None, "enrolled": 0, "holdout": 0, "delivered": 0}
    rows = list(db.execute(select(Enrolment.holdout).where(Enrolment.sop_id == sop.id)))
    sent = db.scalar(
        select(func.count(Outbox.id)).where(
            Outbox.status == "sent",
            _of(sop),
        )
    )
    return {
        "sop": sop.key,
        "status": sop.status,
        "enrolled": len(rows),
        "holdout": sum(1 for (h,) in rows if h),
        "delivered": int(sent or 0),
    }
