"""The KPI catalogue: every KPI's key, family, unit and the parameters of its formula.

The formulas themselves are SQL over per-customer features (``siyu.metrics.kpis``); what each
one means — numerator, denominator, window, edge cases — is written down in
``docs/metrics.md``, and this module is the list those docs and the API describe.

Units: ``count`` (customers or items), ``ratio`` (0–1), ``fen`` (money, integer fen),
``score`` (CSAT 1–5), ``minutes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["diversion", "service", "results", "more"]
Unit = Literal["count", "ratio", "fen", "score", "minutes"]
GroupBy = Literal["region", "store", "guide", "group", "channel_code", "sop"]
GROUP_BYS: tuple[str, ...] = ("region", "store", "guide", "group", "channel_code", "sop")
NONE_KEY = "(none)"  # the group of customers without a value (no store, no channel code …)
ALL_KEY = "all"  # the single group when nothing is grouped


@dataclass(frozen=True)
class KpiDef:
    key: str
    family: Family
    unit: Unit
    name_zh: str
    name_en: str
    # Does a higher value mean better? (Contracts draw their lines the same way round.)
    higher_is_better: bool = True
    # The KPI is a ratio/mean of two per-customer counts (drill-down can list both sides).
    has_denominator: bool = True
    # Not computable yet: the value is null and ``pending`` says why.
    pending: str | None = None


@dataclass(frozen=True)
class Params:
    """Windows the formulas use (days). Defaults are the documented ones."""

    retention_days: int = 30
    silent_days: int = 60
    response_within_hours: int = 24
    value_days: int = 365


KPIS: tuple[KpiDef, ...] = (
    KpiDef("diverted_customers", "diversion", "count", "引流客户数", "Customers diverted",
           has_denominator=False),
    KpiDef("diversion_rate", "diversion", "ratio", "引流率", "Diversion rate"),
    KpiDef("cost_per_diverted", "diversion", "fen", "引流单客成本", "Cost per diverted customer",
           higher_is_better=False),
    KpiDef("retention_rate", "service", "ratio", "好友留存率", "Retention rate"),
    KpiDef("satisfaction", "service", "score", "满意度", "Satisfaction (CSAT)"),
    KpiDef("churn_rate", "service", "ratio", "流失率", "Churn rate", higher_is_better=False),
    KpiDef("interaction_rate", "service", "ratio", "互动率", "Interaction rate"),
    KpiDef("gmv", "results", "fen", "私域客户全渠道 GMV", "GMV of private-domain customers",
           has_denominator=False),
    KpiDef("koc_content_published", "results", "count", "KOC 内容发布数",
           "KOC content published", has_denominator=False),
    KpiDef("koc_customers_brought", "results", "count", "KOC 内容带来客户数",
           "Customers brought by KOC content", has_denominator=False),
    KpiDef("referred_customers", "results", "count", "老带新客户数", "Referred new customers",
           has_denominator=False),
    KpiDef("repurchase_rate", "more", "ratio", "复购率", "Repurchase rate"),
    KpiDef("value_365", "more", "fen", "365 天客户价值", "365-day value"),
    KpiDef("active_members", "more", "count", "活跃会员数", "Active members",
           has_denominator=False),
    KpiDef("group_participation_rate", "more", "ratio", "社群参与率",
           "Group participation rate"),
    KpiDef("guide_response_minutes", "more", "minutes", "导购响应时长(分钟,中位数)",
           "Guide response time (median minutes)", higher_is_better=False),
)  # fmt: skip
BY_KEY: dict[str, KpiDef] = {k.key: k for k in KPIS}
KPI_KEYS: tuple[str, ...] = tuple(BY_KEY)

# Events that count as the customer doing something (silence, activity).
INTERACTION_TYPES: tuple[str, ...] = (
    "message_received",
    "order_paid",
    "page_viewed",
    "checked_in",
    "survey_answered",
    "content_clicked",
    "coupon_redeemed",
    "group_joined",
)
ADDED = "wecom_contact_added"
DELETED = ("wecom_contact_deleted_by_staff", "wecom_contact_deleted_by_customer")
