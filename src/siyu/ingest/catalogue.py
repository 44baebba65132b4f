"""The event catalogue: standard, versioned event schemas and the common envelope.

Every event is an :class:`Envelope` (``event_id`` — the client's idempotency key —,
``event_type``, ``schema_version``, tz-aware ``occurred_at``, ``identifiers``, ``source``,
``properties``) whose ``properties`` follow the schema registered for
``(event_type, schema_version)``. A new field means a new version; old versions stay valid.
Brands add their own event types (``ingest.models.CustomEventType``); they are looked up
after the standard ones and can never shadow them.

    spec = lookup("page_viewed", 1)
    props = spec.model.model_validate({"path": "/pages/index"})
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from siyu.customers.schemas import ID_TYPES, IdentifierIn

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
CHANNELS = ("mini_mall", "tmall", "jd", "douyin", "pos", "other")
Channel = Literal["mini_mall", "tmall", "jd", "douyin", "pos", "other"]


class _Props(BaseModel):
    # Unknown properties are refused: a new field is a new schema version, not a surprise.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Envelope(BaseModel):
    """What every event carries, whatever its type."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128, description="Idempotency key")
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN)
    schema_version: int = Field(default=1, ge=1, le=999)
    occurred_at: AwareDatetime = Field(description="When it happened; a time zone is required")
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=20)
    source: str | None = Field(default=None, min_length=1, max_length=80)
    properties: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- property schemas (v1)


class CustomerUpserted(_Props):
    """A CRM/member record. Name, nickname and birthday go to the PII vault, not the lake."""

    name: str | None = Field(default=None, max_length=100)
    nickname: str | None = Field(default=None, max_length=100)
    gender: Literal["male", "female", "unknown"] | None = None
    birthday: date | None = None
    city: str | None = Field(default=None, max_length=100)
    level: str | None = Field(default=None, max_length=40, description="member tier")
    owner_wecom_userid: str | None = Field(default=None, max_length=64)
    unit_code: str | None = Field(default=None, max_length=64)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class WecomContactAdded(_Props):
    staff_userid: str = Field(min_length=1, max_length=64)
    external_userid: str = Field(min_length=1, max_length=64)
    unionid: str | None = Field(default=None, max_length=64)
    state: str | None = Field(default=None, max_length=64, description="channel code (渠道活码)")
    add_way: int | None = Field(default=None, ge=0, le=1000)


class WecomContactDeleted(_Props):
    staff_userid: str = Field(min_length=1, max_length=64)
    external_userid: str = Field(min_length=1, max_length=64)


class GroupJoined(_Props):
    chat_id: str = Field(min_length=1, max_length=64)
    join_scene: int | None = Field(default=None, ge=0, le=100)
    staff_userid: str | None = Field(default=None, max_length=64)


class GroupLeft(_Props):
    chat_id: str = Field(min_length=1, max_length=64)
    quit_scene: int | None = Field(default=None, ge=0, le=100)


class Message(_Props):
    staff_userid: str = Field(min_length=1, max_length=64)
    chat_type: Literal["single", "group"] = "single"
    chat_id: str | None = Field(default=None, max_length=64)
    msg_type: Literal["text", "image", "link", "miniprogram", "file", "voice", "video", "other"]
    content_id: str | None = Field(default=None, max_length=64)


class PageViewed(_Props):
    path: str = Field(min_length=1, max_length=500, description="mini-program page path")
    referrer: str | None = Field(default=None, max_length=500)
    title: str | None = Field(default=None, max_length=200)
    scene: int | None = Field(default=None, ge=0, le=100000, description="WeChat scene value")
    duration_ms: int | None = Field(default=None, ge=0, le=86_400_000)


Scalar = str | int | float | bool | None


class TrackingEvent(_Props):
    name: str = Field(min_length=1, max_length=80)
    props: dict[str, Scalar] = Field(default_factory=dict, max_length=50)


class OrderItem(_Props):
    sku: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    qty: int = Field(default=1, ge=1, le=100_000)
    unit_price_fen: int = Field(ge=0, le=10**12)
    amount_fen: int = Field(ge=0, le=10**13)


class OrderPaid(_Props):
    order_id: str = Field(min_length=1, max_length=64)
    channel: Channel
    paid_fen: int = Field(ge=0, le=10**13, description="amount actually paid, in fen")
    total_fen: int | None = Field(default=None, ge=0, le=10**13)
    discount_fen: int | None = Field(default=None, ge=0, le=10**13)
    store_code: str | None = Field(default=None, max_length=64)
    coupon_codes: list[str] = Field(default_factory=list, max_length=20)
    items: list[OrderItem] = Field(default_factory=list, max_length=500)


class OrderRefunded(_Props):
    order_id: str = Field(min_length=1, max_length=64)
    refund_id: str | None = Field(default=None, max_length=64)
    channel: Channel
    refund_fen: int = Field(ge=0, le=10**13)
    store_code: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=200)
    items: list[OrderItem] = Field(default_factory=list, max_length=500)


class CouponIssued(_Props):
    coupon_code: str = Field(min_length=1, max_length=64)
    campaign: str | None = Field(default=None, max_length=80)
    value_fen: int | None = Field(default=None, ge=0, le=10**10)
    expires_at: AwareDatetime | None = None


class CouponRedeemed(_Props):
    coupon_code: str = Field(min_length=1, max_length=64)
    order_id: str | None = Field(default=None, max_length=64)
    value_fen: int | None = Field(default=None, ge=0, le=10**10)
    store_code: str | None = Field(default=None, max_length=64)


class CheckedIn(_Props):
    place: Literal["store", "group", "mini_program", "event", "other"] = "mini_program"
    store_code: str | None = Field(default=None, max_length=64)
    campaign: str | None = Field(default=None, max_length=80)
    streak_days: int | None = Field(default=None, ge=0, le=10000)


class SurveyAnswered(_Props):
    survey_id: str = Field(min_length=1, max_length=64)
    csat: int = Field(ge=1, le=5, description="satisfaction score 1-5")
    comment: str | None = Field(default=None, max_length=1000)
    store_code: str | None = Field(default=None, max_length=64)


class Referral(_Props):
    """Both people are named by identifiers; the lake keeps only their identity keys."""

    referrer: list[IdentifierIn] = Field(min_length=1, max_length=10)
    referee: list[IdentifierIn] = Field(min_length=1, max_length=10)
    campaign: str | None = Field(default=None, max_length=80)


class ContentClicked(_Props):
    content_id: str = Field(min_length=1, max_length=64)
    url: str | None = Field(default=None, max_length=1000)
    channel: str | None = Field(default=None, max_length=40)
    staff_userid: str | None = Field(default=None, max_length=64)


class LinkClicked(_Props):
    """A person's click on a tracking link (``siyu.content``; bots and previews excluded)."""

    code: str = Field(min_length=1, max_length=16)
    link_id: str = Field(min_length=1, max_length=26)
    customer_id: str | None = Field(default=None, max_length=26)
    touch_id: str | None = Field(default=None, max_length=26)
    sop_id: str | None = Field(default=None, max_length=26)
    content_id: str | None = Field(default=None, max_length=26)
    version: int | None = Field(default=None, ge=1)
    variant: str | None = Field(default=None, max_length=16)
    channel: str | None = Field(default=None, max_length=40)
    koc_note_id: str | None = Field(default=None, max_length=26)
    url: str | None = Field(default=None, max_length=1000)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    version: int
    model: type[BaseModel]
    description: str
    # Must the event name someone? (An anonymous POS sale is still a sale.)
    needs_identity: bool = True
    # Properties that are personal data: sent to the PII vault, never written to the lake.
    pii: frozenset[str] = frozenset()
    # Properties holding lists of identifiers: stored in the lake as identity keys.
    identity_lists: frozenset[str] = frozenset()
    custom: bool = False


def _spec(
    event_type: str, model: type[BaseModel], description: str, **kw: Any
) -> tuple[tuple[str, int], EventSpec]:
    version = kw.pop("version", 1)
    return (event_type, version), EventSpec(event_type, version, model, description, **kw)


CATALOGUE: dict[tuple[str, int], EventSpec] = dict(
    [
        _spec(
            "customer_upserted",
            CustomerUpserted,
            "CRM or member record created or changed (客户资料)",
            pii=frozenset({"name", "nickname", "birthday"}),
        ),
        _spec("wecom_contact_added", WecomContactAdded, "Customer added a staff on WeCom (加好友)"),
        _spec(
            "wecom_contact_deleted_by_staff",
            WecomContactDeleted,
            "Staff deleted the customer (员工删除客户)",
        ),
        _spec(
            "wecom_contact_deleted_by_customer",
            WecomContactDeleted,
            "Customer deleted the staff (客户删除员工)",
        ),
        _spec("group_joined", GroupJoined, "Customer joined a WeCom group (入群)"),
        _spec("group_left", GroupLeft, "Customer left a WeCom group (退群)"),
        _spec("message_sent", Message, "Staff sent the customer a message"),
        _spec("message_received", Message, "Customer sent staff a message"),
        _spec("page_viewed", PageViewed, "Mini-program page view (页面浏览)"),
        _spec("tracking_event", TrackingEvent, "Custom tracking point with props (埋点)"),
        _spec("order_paid", OrderPaid, "Order paid (支付)", needs_identity=False),
        _spec("order_refunded", OrderRefunded, "Order refunded (退款)", needs_identity=False),
        _spec("coupon_issued", CouponIssued, "Coupon issued (发券)"),
        _spec("coupon_redeemed", CouponRedeemed, "Coupon redeemed (核销)"),
        _spec("checked_in", CheckedIn, "Check-in (签到)"),
        _spec("survey_answered", SurveyAnswered, "Survey answer with CSAT 1-5 (满意度)"),
        _spec(
            "referral",
            Referral,
            "One customer referred another (老带新)",
            identity_lists=frozenset({"referrer", "referee"}),
        ),
        _spec("content_clicked", ContentClicked, "Content or tracking link clicked"),
        _spec(
            "link_clicked",
            LinkClicked,
            "Tracking link clicked (短链点击: customer, touch, content, variant)",
            needs_identity=False,
        ),
    ]
)
STANDARD_TYPES = frozenset(t for t, _ in CATALOGUE)
ORDER_TYPES = frozenset({"order_paid", "order_refunded"})


def lookup(event_type: str, version: int) -> EventSpec | None:
    return CATALOGUE.get((event_type, version))


def latest_version(event_type: str) -> int | None:
    versions = [v for t, v in CATALOGUE if t == event_type]
    return max(versions) if versions else None


def describe_fields(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The fields of a property schema for people (CLI catalogue, docs)."""
    out = []
    for name, info in model.model_fields.items():
        out.append(
            {
                "name": name,
                "type": _type_name(info.annotation),
                "required": info.is_required(),
                "description": info.description or "",
            }
        )
    return out


def _type_name(annotation: Any) -> str:
    import typing

    if typing.get_origin(annotation) is Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if args and type(None) in args and len(args) == 2:
        return _type_name(next(a for a in args if a is not type(None)))
    text = getattr(annotation, "__name__", None) if not args else None
    text = text or str(annotation)
    for module in ("typing.", "siyu.customers.schemas.", "siyu.ingest.catalogue."):
        text = text.replace(module, "")
    return text


def catalogue_rows() -> list[dict[str, Any]]:
    """Every standard event type and version with its fields."""
    return [
        {
            "event_type": spec.event_type,
            "version": spec.version,
            "description": spec.description,
            "needs_identity": spec.needs_identity,
            "fields": describe_fields(spec.model),
        }
        for spec in sorted(CATALOGUE.values(), key=lambda s: (s.event_type, s.version))
    ]


IDENTIFIER_TYPES = ID_TYPES
