"""The demo brands' SOPs: the welcome journey (real-time on WeCom adds), post-purchase care
(3 days after an order) and a win-back of the silent and dormant customers already there
(the ``win_back`` segment), enabled, with today's plan made — so the console shows decisions
with their reasons (and, in quiet hours, touches deferred to the morning)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from siyu.core.clock import utcnow
from siyu.core.tenancy import SYSTEM
from siyu.sop import actions, engine
from siyu.sop.models import Sop, SopRun
from siyu.tags.compute import local_day

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

WINBACK: dict[str, Any] = {
    "key": "winback_now",
    "name": "沉睡客唤回（存量）",
    "audience": {"kind": "segment", "segment": "win_back"},
}


def setup(db: Session, brand: Brand) -> SopRun:
    """Create and enable the demo SOPs (idempotent), then plan today."""
    have = set(db.scalars(select(Sop.key).where(Sop.brand_id == brand.id)))
    for template, overrides in (
        ("welcome_journey", {}),
        ("post_purchase_care", {}),
        ("dormant_winback", WINBACK),
    ):
        key = overrides.get("key", template)
        if key not in have:
            actions.create_from_template(db, SYSTEM, brand, template, **overrides)
            actions.enable_sop(db, SYSTEM, brand, key)
    return engine.run_day(db, SYSTEM, brand, local_day(utcnow(), brand.timezone))


def summary(run: SopRun) -> dict[str, Any]:
    counts = run.counts or {}
    return {
        "status": run.status,
        "enrolled": counts.get("enrolled", 0),
        "candidates": counts.get("candidates", 0),
        "by_status": counts.get("status", {}),
    }
