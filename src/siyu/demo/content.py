"""The demo brands' content: a library (folders; text, link card, mini-program card, image,
poster, video and file materials; an expired one; an agency-shared greeting), the mall's
allowed domain, and an A/B test that really ran — an SOP touch with two variants sent by the
engine ten days ago, tracking-link clicks (with a link-preview crawler's request filtered
out), replies and attributed orders — so "A/B results on the demo" and "a tracking link
click from the demo" are real data, through the same actions as production.

Deterministic per brand (seeded); idempotent (a second build leaves the content as it is).
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import select, update

from siyu.content import actions
from siyu.content.models import LinkClick, Material
from siyu.content.schemas import (
    FolderIn,
    LinkIn,
    MaterialIn,
    SettingsIn,
    StepContentIn,
)
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.tenancy import SYSTEM
from siyu.customers.models import Identity
from siyu.ingest import actions as ingest
from siyu.sop import actions as sop_actions
from siyu.sop import engine
from siyu.sop.models import Outbox, Sop, Touch
from siyu.sop.schemas import SopIn
from siyu.tags.compute import local_day

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.org.models import Brand

MALL = "mall.siyu-demo.cn"
AB_SOP = "new_menu_ab"
AB_DAYS_AGO = 10
SEGMENTS = ("vip_active", "store_fans", "win_back")
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) MicroMessenger/8.0.49 NetType/WIFI"
PREVIEW_UA = "Mozilla/5.0 (compatible; WechatShareMeta/1.0)"
# click and order propensities per variant: B (the link card with an offer) wins
CLICK = {"A": 0.10, "B": 0.19}
BUY_AFTER_CLICK = 0.35
BUY_OTHERWISE = 0.02
REPLY = {"A": 0.12, "B": 0.09}


def _materials(brand: Brand, folders: dict[str, str]) -> list[MaterialIn]:
    now = utcnow()
    mall = f"https://{MALL}"
    items: list[dict[str, Any]] = [
        {
            "kind": "text",
            "name": "新品尝鲜 · 文字版",
            "folder_id": folders["新品上市"],
            "tags": ["新品", "A/B"],
            "body": {
                "text": "{{ nickname }}，本周新品上市啦，来{{ store }}尝尝？找{{ guide_name }}"
                "报暗号「尝鲜」有小惊喜。"
            },
            "fallbacks": {"nickname": "亲爱的", "store": "附近门店", "guide_name": "店员"},
        },
        {
            "kind": "link",
            "name": "新品尝鲜 · 链接卡片（第二杯半价）",
            "folder_id": folders["新品上市"],
            "tags": ["新品", "A/B", "优惠"],
            "body": {
                "text": "{{ nickname }}，新品第二杯半价，只到周日~",
                "title": "{{ brand }}新品 · 第二杯半价",
                "desc": "{{ member_tier|default('会员') }}专享，点开直接下单",
                "url": f"{mall}/new?from=wecom",
                "pic_url": f"{mall}/img/new.jpg",
            },
            "fallbacks": {"nickname": "亲爱的"},
        },
        {
            "kind": "miniprogram",
            "name": "会员日小程序卡",
            "folder_id": folders["会员活动"],
            "tags": ["会员日"],
            "body": {
                "title": "每月8号会员日",
                "appid": "wx1234567890abcdef",
                "page": "pages/member/index.html",
                "pic_url": f"{mall}/img/member.jpg",
            },
        },
        {
            "kind": "image",
            "name": "门店新品海报图",
            "folder_id": folders["新品上市"],
            "body": {"url": f"{mall}/img/poster.jpg", "size_bytes": 420_000},
        },
        {
            "kind": "poster",
            "name": "老带新邀请海报",
            "folder_id": folders["会员活动"],
            "tags": ["裂变"],
            "body": {
                "background_url": f"{mall}/img/invite.jpg",
                "qr": True,
                "text": "{{ nickname }}邀你一起喝咖啡",
            },
        },
        {
            "kind": "video",
            "name": "咖啡师手冲教学视频",
            "folder_id": folders["内容种草"],
            "body": {"url": f"{mall}/v/pourover.mp4", "size_bytes": 8_200_000},
        },
        {
            "kind": "file",
            "name": "会员权益说明 PDF",
            "folder_id": folders["会员活动"],
            "body": {
                "url": f"{mall}/f/benefits.pdf",
                "filename": "会员权益.pdf",
                "size_bytes": 350_000,
            },
        },
        {
            "kind": "text",
            "name": "唤醒券话术",
            "folder_id": folders["唤醒"],
            "tags": ["唤醒", "券"],
            "body": {
                "text": "{{ nickname }}，好久不见~ 送你一张回归券"
                "{% if coupon %}（{{ coupon.name }}，{{ coupon.expires }}前有效）{% endif %}，"
                "回来看看我们吧。"
            },
            "fallbacks": {"nickname": "老朋友"},
        },
        {
            "kind": "text",
            "name": "国庆活动话术（已过期）",
            "folder_id": folders["会员活动"],
            "tags": ["节日"],
            "body": {"text": "国庆7天乐，全场饮品8折！"},
            "valid_from": now - timedelta(days=70),
            "valid_until": now - timedelta(days=55),
        },
    ]
    return [MaterialIn.model_validate(i) for i in items]


def _identifier(db: Session, brand_id: str, customer_ids: list[str]) -> dict[str, dict[str, str]]:
    """A plain (non-PII) identifier per customer, to name them in demo events."""
    out: dict[str, dict[str, str]] = {}
    for start in range(0, len(customer_ids), 500):
        rows = db.execute(
            select(Identity.customer_id, Identity.id_type, Identity.value).where(
                Identity.brand_id == brand_id,
                Identity.customer_id.in_(customer_ids[start : start + 500]),
                Identity.id_type.in_(("external_userid", "member_no", "mini_openid", "unionid")),
                Identity.value.is_not(None),
            )
        )
        for cid, typ, value in rows:
            if cid and value and cid not in out:
                out[cid] = {"type": typ, "value": value}
    return out


def _ab_sop(db: Session, brand: Brand, a: str, b: str) -> Sop | None:
    from siyu.tags.models import Segment

    have = set(db.scalars(select(Segment.key).where(Segment.brand_id == brand.id)))
    segment = next((s for s in SEGMENTS if s in have), None)
    if segment is None:
        return None
    body = SopIn.model_validate(
        {
            "key": AB_SOP,
            "name": "新品尝鲜 A/B（文字 vs 链接卡片）",
            "description": "同一人群两种素材各半，比较点击、回复与下单。",
            "priority": 40,
            "audience": {"kind": "segment", "segment": segment},
            "goal_event": None,
            "steps": [
                {
                    "type": "touch",
                    "channel": "wecom_1to1",
                    "sender": "owner_guide",
                    "content": {"text": "新品上市"},
                    "valid_hours": 48,
                },
            ],
        }
    )
    sop_actions.create_sop(db, SYSTEM, brand, body)
    actions.set_step_content(
        db,
        SYSTEM,
        brand,
        AB_SOP,
        StepContentIn.model_validate(
            {
                "step": 0,
                "variants": [
                    {"name": "A", "weight": 50, "material_id": a},
                    {"name": "B", "weight": 50, "material_id": b},
                ],
            }
        ),
    )
    sop = sop_actions.enable_sop(db, SYSTEM, brand, AB_SOP)
    day = local_day(utcnow(), brand.timezone) - timedelta(days=AB_DAYS_AGO)
    start, _end = engine.day_bounds(day, brand.timezone)
    with atomic(db):  # the campaign started ten days ago
        sop.enabled_at = start - timedelta(hours=1)
        sop.enrolled_until = None
    engine.run_day(db, SYSTEM, brand, day)
    with atomic(db):  # the worker delivered them (the demo has no WeCom to send to)
        db.execute(
            update(Outbox)
            .where(
                Outbox.brand_id == brand.id,
                Outbox.touch_id.in_(select(Touch.id).where(Touch.sop_id == sop.id)),
            )
            .values(status="sent", sent_at=Outbox.available_at, attempts=1)
        )
    return sop


def _outcomes(db: Session, brand: Brand, sop: Sop, links: dict[str, Any]) -> dict[str, int]:
    rng = random.Random(f"content:{brand.slug}")  # noqa: S311 (demo data, not secrets)
    touches = list(
        db.scalars(
            select(Touch)
            .where(Touch.sop_id == sop.id, Touch.status == "sent")
            .order_by(Touch.customer_id)
        )
    )
    ids = _identifier(db, brand.id, [t.customer_id for t in touches])
    events: list[dict[str, Any]] = []
    clicks = orders = replies = 0
    now = utcnow()
    for t in touches:
        variant = str(t.content.get("variant") or "A")
        sent: datetime = t.send_at or now
        link = links[variant]
        url = actions.signed_url(link, t.customer_id, t.id)
        params = dict(parse_qsl(urlsplit(url).query))
        if rng.random() < 0.05:  # the WeChat share preview fetches the link at once
            actions.record_click(
                db,
                link.code,
                user_agent=PREVIEW_UA,
                params=params,
                now=sent + timedelta(milliseconds=400),
            )
        clicked_at = None
        if rng.random() < CLICK[variant]:
            clicked_at = sent + timedelta(minutes=rng.randint(2, 36 * 60))
            if clicked_at < now:
                actions.record_click(db, link.code, user_agent=UA, params=params, now=clicked_at)
                clicks += 1
        ident = ids.get(t.customer_id)
        if ident is None:
            continue
        if rng.random() < REPLY[variant]:
            at = sent + timedelta(minutes=rng.randint(1, 24 * 60))
            replies += 1
            events.append(
                {
                    "event_id": f"demo-content-reply-{t.id}",
                    "event_type": "message_received",
                    "occurred_at": at.isoformat(),
                    "identifiers": [ident],
                    "source": "demo",
                    "properties": {"staff_userid": "demo", "msg_type": "text"},
                }
            )
        buys = rng.random() < (BUY_AFTER_CLICK if clicked_at else BUY_OTHERWISE)
        if buys:
            base = clicked_at or sent
            at = base + timedelta(minutes=rng.randint(5, 72 * 60))
            if at < now:
                orders += 1
                events.append(
                    {
                        "event_id": f"demo-content-order-{t.id}",
                        "event_type": "order_paid",
                        "occurred_at": at.isoformat(),
                        "identifiers": [ident],
                        "source": "demo",
                        "properties": {
                            "order_id": f"AB-{t.id[-10:]}",
                            "channel": "mini_mall",
                            "paid_fen": rng.choice((2_900, 3_200, 5_800, 8_900, 12_800, 15_900)),
                        },
                    }
                )
    if events:
        ingest.ingest_batch(db, SYSTEM, brand, events)
    while ingest.flush_inbox(db):  # the clicks' link_clicked events, into the lake
        pass
    return {"sent": len(touches), "clicks": clicks, "replies": replies, "orders": orders}


def setup(db: Session, brand: Brand) -> dict[str, Any]:
    """Build the brand's content and the A/B campaign (idempotent); counts of what exists."""
    started = time.perf_counter()
    existing = db.scalar(select(Material.id).where(Material.brand_id == brand.id).limit(1))
    if existing is None:
        actions.set_settings(
            db, SYSTEM, brand, SettingsIn(allowed_domains=[MALL], utm={"utm_source": "siyu_demo"})
        )
        folders = {
            name: actions.create_folder(db, SYSTEM, brand, FolderIn(name=name)).id
            for name in ("新品上市", "会员活动", "唤醒", "内容种草")
        }
        made = [actions.create_material(db, SYSTEM, brand, m) for m in _materials(brand, folders)]
        if brand.agency_id is not None:
            shared = db.scalar(
                select(Material.id).where(
                    Material.agency_id == brand.agency_id, Material.library == "agency"
                )
            )
            if shared is None:
                actions.create_material(
                    db,
                    SYSTEM,
                    brand,
                    MaterialIn(
                        kind="text",
                        name="节日问候（代理商共享）",
                        library="agency",
                        tags=["节日", "共享"],
                        body={"text": "{{ nickname }}，节日快乐！{{ brand }}祝您生活愉快~"},
                        fallbacks={"nickname": "您"},
                    ),
                )
        a, b = made[0], made[1]
        sop = _ab_sop(db, brand, a.id, b.id)
        if sop is not None:
            links = {
                name: actions.create_link(
                    db,
                    SYSTEM,
                    brand,
                    LinkIn(
                        target_url=f"https://{MALL}/new",
                        material_id=m.id,
                        variant=name,
                        channel="wecom_1to1",
                        campaign=AB_SOP,
                    ),
                    sop_id=sop.id,
                )
                for name, m in (("A", a), ("B", b))
            }
            _outcomes(db, brand, sop, links)
    materials = len(list(db.scalars(select(Material.id).where(Material.brand_id == brand.id))))
    counted = len(
        list(
            db.scalars(
                select(LinkClick.id).where(LinkClick.brand_id == brand.id, LinkClick.bot.is_(False))
            )
        )
    )
    sent = len(
        list(
            db.scalars(
                select(Touch.id)
                .join(Sop, Sop.id == Touch.sop_id)
                .where(Sop.brand_id == brand.id, Sop.key == AB_SOP, Touch.status == "sent")
            )
        )
    )
    ms = round((time.perf_counter() - started) * 1000)
    return {"materials": materials, "ab_sent": sent, "clicks": counted, "ms": ms}
