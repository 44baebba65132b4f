"""The demo brands' tags and segments: the standard rule pack (in the brand's library, next to
the built-in RFM, lifecycle, value-model and organisation tags), a manual tag, a few segments
an operations team would start with, and a first computation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from siyu.core.tenancy import SYSTEM
from siyu.tags import actions, lang, segments
from siyu.tags.models import TagRun
from siyu.tags.schemas import RunIn, SegmentIn, TagIn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

SEGMENTS = (
    ("vip_active", "高价值活跃会员", "tag_rfm_important_value and not tag_lifecycle_churned"),
    ("win_back", "待唤回老客", "tag_lifecycle_silent or tag_lifecycle_dormant"),
    ("new_no_repeat", "新客未复购", "tag_lifecycle_new and not tag_repeat_buyer"),
    ("store_fans", "门店常客", "tag_store_visitor and tag_repeat_buyer"),
)


def setup(db: Session, brand: Brand) -> TagRun:
    """Create the demo tags and segments (idempotent) and compute them once."""
    from sqlalchemy import select

    from siyu.tags.models import Segment, Tag

    have = set(db.scalars(select(Tag.key).where(Tag.brand_id == brand.id)))
    for key, (name, rule) in lang.STANDARD_PACK.items():
        if key not in have:
            actions.create_tag(
                db, SYSTEM, brand, TagIn(key=key, name=name, group="rules", rule=rule)
            )
    if "vip_manual" not in have:
        actions.create_tag(
            db,
            SYSTEM,
            brand,
            TagIn(key="vip_manual", name="导购重点客户", group="manual", kind="manual"),
        )
    run = actions.compute(db, SYSTEM, brand, RunIn(mode="full"))
    made = set(db.scalars(select(Segment.key).where(Segment.brand_id == brand.id)))
    for key, name, definition in SEGMENTS:
        if key not in made:
            segments.create(db, SYSTEM, brand, SegmentIn(key=key, name=name, definition=definition))
            segments.snapshot(db, SYSTEM, brand, key)
    return run


def summary(run: TagRun) -> dict[str, Any]:
    failed = {k: v["error"] for k, v in (run.tags or {}).items() if v.get("error")}
    return {"status": run.status, "changes": run.changes, "ms": run.duration_ms, "failed": failed}
