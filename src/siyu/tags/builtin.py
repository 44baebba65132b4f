"""The tag library every brand starts with: RFM scores and segments, lifecycle stage, value
model tags and organisation tags. Names are zh-CN (the console's default); keys are stable
English identifiers used by rules, segments, SOPs and the API.

Brand settings live in the group's ``description``-free ``spec`` on each tag and in
:data:`DEFAULT_SETTINGS`; a brand changes them through ``actions.update_settings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from siyu.tags.value_rfm import SEGMENTS


@dataclass(frozen=True)
class BuiltinTag:
    key: str
    name: str
    spec: dict[str, Any]
    description: str | None = None


@dataclass(frozen=True)
class BuiltinGroup:
    key: str
    name: str
    kind: str
    exclusive: bool
    description: str
    tags: tuple[BuiltinTag, ...] = field(default_factory=tuple)


LIFECYCLE = (
    ("new", "新客", "first purchase (or first seen, without purchase) in the last `new_days`"),
    ("active", "活跃", "last purchase within `active_days`"),
    ("won_back", "回流", "last purchase within `active_days` after a gap of `won_back_gap_days`"),
    ("silent", "沉默", "last purchase within `silent_days`"),
    ("dormant", "休眠", "last purchase within `churn_days`"),
    ("churned", "流失", "last purchase longer ago than `churn_days`"),
    ("prospect", "潜客", "never purchased, first seen before `new_days`"),
)

# Brand-set parameters (days, fen); every one can be changed per brand.
DEFAULT_SETTINGS: dict[str, Any] = {
    "rfm": {
        "window_days": 365,
        "high_from": 3,
        # four ascending cut points each: recency in days (lower is better), frequency in
        # purchase days, monetary in fen. None: derived from the brand's data in a full run
        # (quintile boundaries) and kept until the next full run.
        "recency": [30, 60, 90, 180],
        "frequency": [2, 3, 4, 6],
        "monetary": None,
    },
    "lifecycle": {
        "new_days": 30,
        "active_days": 90,
        "silent_days": 180,
        "churn_days": 365,
        "won_back_gap_days": 180,
    },
    "value": {"horizon_days": 365, "discount_rate": 0.0, "unit": "weeks", "penalizer": 0.001},
}


def _scores(dimension: str, title: str) -> BuiltinGroup:
    tags = tuple(
        BuiltinTag(f"rfm_{dimension}_{s}", f"{title}{s}分", {"measure": f"rfm_{dimension}"})
        for s in range(5, 0, -1)
    )
    return BuiltinGroup(
        f"rfm_{dimension}",
        f"RFM · {title}",
        "value",
        True,
        f"RFM {title} score 1–5 over the RFM window, with the brand's cut points",
        tags,
    )


GROUPS: tuple[BuiltinGroup, ...] = (
    BuiltinGroup(
        "rfm_segment",
        "RFM 客户分层",
        "value",
        True,
        "The eight classic RFM cells (high = score at least high_from)",
        tuple(BuiltinTag(f"rfm_{s.code}", s.zh, {"measure": "rfm_segment"}) for s in SEGMENTS),
    ),
    _scores("r", "最近消费"),
    _scores("f", "消费频次"),
    _scores("m", "消费金额"),
    BuiltinGroup(
        "lifecycle",
        "生命周期",
        "value",
        True,
        "Lifecycle stage from purchases and first seen (brand-set day thresholds)",
        tuple(
            BuiltinTag(f"lifecycle_{k}", n, {"measure": "lifecycle"}, d) for k, n, d in LIFECYCLE
        ),
    ),
    BuiltinGroup(
        "value_model",
        "价值预测",
        "model",
        False,
        "BG/NBD + Gamma-Gamma fitted on the brand's orders in the last full run",
        (
            BuiltinTag("p_alive", "存活概率", {"measure": "p_alive"}),
            BuiltinTag("expected_purchases", "预计购买次数(365天)", {"measure": "purchases"}),
            BuiltinTag("expected_spend", "预计客单价(分)", {"measure": "spend_fen"}),
            BuiltinTag("value_365", "365天价值(分)", {"measure": "value_fen"}),
        ),
    ),
    BuiltinGroup(
        "org",
        "组织标签",
        "org",
        False,
        "Who serves the customer and which store is theirs",
        (
            BuiltinTag("owner_guide", "专属导购", {"measure": "owner_guide"}),
            BuiltinTag(
                "home_store",
                "归属门店",
                {"measure": "home_store"},
                "most bought-at store (orders), then most visited (check-ins), then CRM store",
            ),
        ),
    ),
    BuiltinGroup("manual", "手动标签", "manual", False, "Tags staff set by hand"),
    BuiltinGroup("rules", "规则标签", "rule", False, "Rule tags written in the tag language"),
)
