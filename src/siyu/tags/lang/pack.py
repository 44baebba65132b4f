"""The standard pack: 20 rule tags a coffee or beauty brand starts with, and a catalogue of
the standard event types they use (a mirror of ``siyu.ingest.catalogue`` for callers without
a brand registry: the benchmark, tests; a brand's own catalogue comes from its registry).

Money is in fen (``¥`` literals are converted: ``¥1000`` = 100000 fen).
"""

from __future__ import annotations

from siyu.tags.lang.catalogue import EventCatalogue

CHANNELS = ("mini_mall", "tmall", "jd", "douyin", "pos", "other")

STANDARD_CATALOGUE = EventCatalogue.build(
    {
        "order_paid": {
            "order_id": "str",
            "channel": ("str", CHANNELS),
            "paid_fen": "fen",
            "total_fen": "fen",
            "discount_fen": "fen",
            "store_code": "str",
            "coupon_codes": "str_list",
            "items": "complex",
        },
        "order_refunded": {
            "order_id": "str",
            "refund_id": "str",
            "channel": ("str", CHANNELS),
            "refund_fen": "fen",
            "store_code": "str",
            "reason": "str",
            "items": "complex",
        },
        "page_viewed": {
            "path": "str",
            "referrer": "str",
            "title": "str",
            "scene": "int",
            "duration_ms": "int",
        },
        "coupon_issued": {
            "coupon_code": "str",
            "campaign": "str",
            "value_fen": "fen",
            "expires_at": "datetime",
        },
        "coupon_redeemed": {
            "coupon_code": "str",
            "order_id": "str",
            "value_fen": "fen",
            "store_code": "str",
        },
        "checked_in": {
            "place": ("str", ("store", "group", "mini_program", "event", "other")),
            "store_code": "str",
            "campaign": "str",
            "streak_days": "int",
        },
        "survey_answered": {
            "survey_id": "str",
            "csat": "int",
            "comment": "str",
            "store_code": "str",
        },
        "group_joined": {"chat_id": "str", "join_scene": "int", "staff_userid": "str"},
        "group_left": {"chat_id": "str", "quit_scene": "int"},
        "message_received": {
            "staff_userid": "str",
            "chat_type": ("str", ("single", "group")),
            "chat_id": "str",
            "msg_type": (
                "str",
                ("text", "image", "link", "miniprogram", "file", "voice", "video", "other"),
            ),
            "content_id": "str",
        },
        "wecom_contact_added": {
            "staff_userid": "str",
            "external_userid": "str",
            "unionid": "str",
            "state": "str",
            "add_way": "int",
        },
        "wecom_contact_deleted_by_customer": {"staff_userid": "str", "external_userid": "str"},
        "content_clicked": {
            "content_id": "str",
            "url": "str",
            "channel": "str",
            "staff_userid": "str",
        },
    }
)

# key → (name, rule)
STANDARD_PACK: dict[str, tuple[str, str]] = {
    "repeat_buyer": ("复购客户", "count(order_paid, last 365d) >= 2"),
    "high_spend_90d": ("近90天高消费", "sum(order_paid.paid_fen, last 90d) >= ¥1000"),
    "vip_spender": (
        "年度VIP",
        "sum(order_paid.paid_fen, last 365d) >= ¥3000 and count(order_paid, last 365d) >= 4",
    ),
    "big_basket": ("大单客户", "max(order_paid.paid_fen, last 365d) >= ¥500"),
    "high_aov": (
        "高客单价",
        "sum(order_paid.paid_fen, last 365d) / count(order_paid, last 365d) >= ¥300",
    ),
    "new_buyer": ("新客 (首单30天内)", "days_since(first order_paid) <= 30"),
    "at_risk": ("流失预警", "days_since(last order_paid) between 91 and 180"),
    "lapsed_buyer": (
        "沉睡老客",
        "count(order_paid) >= 2 and not exists(order_paid, last 180d)",
    ),
    "omnichannel": (
        "全渠道客户",
        'exists(order_paid, channel = "pos", last 365d) and exists(order_paid, '
        'channel in ("mini_mall", "tmall", "jd", "douyin"), last 365d)',
    ),
    "multi_store": (
        "多门店客户",
        'count_distinct(order_paid.store_code, channel = "pos", last 365d) >= 2',
    ),
    "mini_mall_loyal": (
        "小程序商城忠实客户",
        'last_value(order_paid.channel, last 365d) = "mini_mall" '
        'and count(order_paid, channel = "mini_mall", last 365d) >= 2',
    ),
    "refund_prone": ("高退款", "count(order_refunded, last 180d) >= 2"),
    "coupon_lover": ("爱用券", "count(coupon_redeemed, last 180d) >= 3"),
    "coupon_hoarder": (
        "囤券不用",
        "count(coupon_issued, last 90d) >= 3 and not exists(coupon_redeemed, last 90d)",
    ),
    "lapsed_mini_browser": (
        "沉默小程序访客",
        "exists(page_viewed, last 180d) and not exists(page_viewed, last 30d) "
        "and not exists(order_paid, last 180d)",
    ),
    "engaged_browser": (
        "深度浏览",
        "sum(page_viewed.duration_ms, last 30d) >= 600000 or count(page_viewed, last 7d) >= 10",
    ),
    "store_visitor": (
        "到店客户",
        'exists(checked_in, place = "store", last 90d) or exists(order_paid, '
        'channel = "pos", last 90d)',
    ),
    "csat_detractor": (
        "满意度贬损者",
        "avg(survey_answered.csat, last 180d) <= 2 or min(survey_answered.csat, last 30d) = 1",
    ),
    "group_active": (
        "社群活跃",
        'exists(group_joined) and count(message_received, chat_type = "group", last 30d) >= 3',
    ),
    "this_month_not_last": (
        "本月新激活",
        "exists(order_paid, this month) and not exists(order_paid, last month)",
    ),
}


def pack_rules() -> dict[str, str]:
    """The pack as key → rule text."""
    return {key: rule for key, (_, rule) in STANDARD_PACK.items()}
