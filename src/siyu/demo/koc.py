"""The demo brands' KOC notes: one approved Xiaohongshu note whose channel code is the
``xhs_note_*`` state the demo's customers already came through (so the note shows hundreds of
attributed customers, their orders and GMV), rewarded with points and given a tracking link
that real-looking phones opened; one Douyin note waiting for review; one rejected with its
reason. Through the same actions as production (``content.ugc``); idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from siyu.content import actions, ugc
from siyu.content.models import KocNote, TrackingLink
from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Customer
from siyu.demo.content import MALL, UA
from siyu.demo.generate import SHAPES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

NOTES: dict[str, list[dict[str, Any]]] = {
    "demo-coffee": [
        {
            "url": "https://www.xiaohongshu.com/explore/66a1c0de0000000001a2b3c4",
            "title": "打卡 | 这家店的燕麦拿铁真的绝了",
            "summary": "门店新品燕麦拿铁测评,附会员日优惠",
            "author": "咖啡续命的阿鱼",
            "decision": "approve",
            "target": "/koc/oat-latte",
        },
        {
            "url": "https://www.douyin.com/video/7390000000000000011",
            "title": "探店 vlog:周末的一杯手冲",
            "author": "周末探店王",
            "decision": None,
        },
        {
            "url": "https://weibo.com/7812345678/Oabc12345",
            "title": "转发抽奖",
            "author": "lucky_draw_bot",
            "decision": "reject",
            "reason": "转发抽奖帖,非真实体验内容",
        },
    ],
    "demo-beauty": [
        {
            "url": "https://www.xiaohongshu.com/explore/66a1c0de0000000001d4e5f6",
            "title": "28 天精华实测 | 敏感肌也能用",
            "summary": "空瓶记录与前后对比",
            "author": "小鹿爱护肤",
            "decision": "approve",
            "target": "/koc/serum",
        },
        {
            "url": "https://www.xiaohongshu.com/explore/66a1c0de0000000001a7b8c9",
            "title": "平价替代?真实使用感受",
            "author": "成分党小周",
            "decision": None,
        },
    ],
}
REWARD_POINTS = 500
CLICKS = 3


def _state(brand: Brand) -> str | None:
    """The brand's Xiaohongshu channel code in the generated data (``xhs_note_*``)."""
    for shape in SHAPES:
        if shape.slug == brand.slug:
            return next((s for s in shape.channels if s.startswith("xhs_note")), None)
    return None


def setup(db: Session, brand: Brand) -> dict[str, Any]:
    """Submit, review and reward the brand's notes once; what the approved one brought."""
    have = db.scalar(select(func.count()).select_from(KocNote).where(KocNote.brand_id == brand.id))
    if not have:
        author = db.scalar(
            select(Customer.id)
            .where(Customer.brand_id == brand.id, Customer.status == "active")
            .order_by(Customer.id)
            .limit(1)
        )
        allowed = MALL in (actions.brand_settings(db, brand.id).allowed_domains or [])
        for spec in NOTES.get(brand.slug, []):
            note = ugc.submit_note(
                db,
                SYSTEM,
                brand,
                ugc.KocNoteIn(
                    url=spec["url"],
                    title=spec["title"],
                    summary=spec.get("summary"),
                    author=spec["author"],
                    customer_id=author if spec["decision"] == "approve" else None,
                ),
                source="h5",
            )
            if spec["decision"] == "approve":
                decision = ugc.KocApproval(
                    reward_points=REWARD_POINTS if author else 0,
                    state=_state(brand),
                    target_url=f"https://{MALL}{spec['target']}" if allowed else None,
                )
                note = ugc.approve_note(db, SYSTEM, brand, note.id, decision)
                link = db.get(TrackingLink, note.link_id) if note.link_id else None
                if link is not None:
                    for _ in range(CLICKS):
                        actions.record_click(db, link.code, user_agent=UA)
            elif spec["decision"] == "reject":
                ugc.reject_note(db, SYSTEM, brand, note.id, spec["reason"])
    approved = list(
        db.scalars(
            select(KocNote).where(KocNote.brand_id == brand.id, KocNote.status == "approved")
        )
    )
    stats = ugc.attribution(db, SYSTEM, brand, approved, rows=False)
    return {
        "notes": db.scalar(
            select(func.count()).select_from(KocNote).where(KocNote.brand_id == brand.id)
        ),
        "customers": sum(s.customers for s in stats.values()),
        "orders": sum(s.orders for s in stats.values()),
        "gmv_fen": sum(s.gmv_fen for s in stats.values()),
    }
