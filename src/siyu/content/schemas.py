"""Content inputs and outputs (pydantic).

A material's ``body`` depends on its kind (platform limits are checked by
``siyu.content.materials.validate_body``, not here, so every problem is reported at once):

- ``text``: ``{"text": "{{ nickname }}，新品到店…", "attachments": [...]}``
- ``image``: ``{"url": "https://…/a.jpg", "size_bytes": 120000, "text": "caption"}``
- ``link``: ``{"title": "…", "desc": "…", "url": "https://mall…", "pic_url": "…"}``
- ``miniprogram``: ``{"title": "…", "appid": "wx…", "page": "pages/index.html", "pic_url": "…"}``
- ``file``: ``{"url": "…", "filename": "…", "size_bytes": …}``
- ``video``: ``{"url": "…", "size_bytes": …, "cover_url": "…"}``
- ``poster``: ``{"background_url": "…", "text": "…", "qr": true}``

Any kind may carry ``text`` (sent with it) and ``attachments`` (up to 9 bodies, each with its
own ``kind``). ``text``, link ``title`` and ``desc`` are templates (``siyu.content.templating``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from siyu.content.models import KOC_PLATFORMS, MATERIAL_KINDS

Kind = Literal["text", "image", "link", "miniprogram", "file", "video", "poster"]
assert set(MATERIAL_KINDS) == set(Kind.__args__)  # type: ignore[attr-defined]
Platform = Literal["xiaohongshu", "douyin", "weibo", "wechat_channels", "dianping", "other"]
assert set(KOC_PLATFORMS) == set(Platform.__args__)  # type: ignore[attr-defined]
Metric = Literal["reply", "click", "order", "gmv"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MaterialIn(_In):
    kind: Kind
    name: str = Field(min_length=1, max_length=200)
    body: dict[str, Any] = Field(default_factory=dict)
    fallbacks: dict[str, str] = Field(default_factory=dict, description="per variable")
    tags: list[str] = Field(default_factory=list, max_length=20)
    folder_id: str | None = None
    library: Literal["brand", "agency"] = "brand"
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class MaterialPatch(_In):
    """An edit; a changed body or fallbacks makes a new version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    body: dict[str, Any] | None = None
    fallbacks: dict[str, str] | None = None
    tags: list[str] | None = Field(default=None, max_length=20)
    folder_id: str | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    status: Literal["active", "archived"] | None = None
    note: str | None = Field(default=None, max_length=200)


class FolderIn(_In):
    name: str = Field(min_length=1, max_length=100)
    parent_id: str | None = None
    library: Literal["brand", "agency"] = "brand"


class SettingsIn(_In):
    allowed_domains: list[str] = Field(default_factory=list, max_length=50)
    utm: dict[str, str] = Field(default_factory=dict)


class PreviewIn(_In):
    """Render a template (``text``, or a stored material) for a real customer."""

    text: str | None = Field(default=None, max_length=20_000)
    material_id: str | None = None
    customer_id: str | None = None
    fallbacks: dict[str, str] = Field(default_factory=dict)
    values: dict[str, Any] = Field(default_factory=dict, description="overrides, e.g. coupon")


class LinkIn(_In):
    target_url: str = Field(min_length=1, max_length=2000)
    material_id: str | None = None
    touch_id: str | None = None
    customer_id: str | None = None
    koc_note_id: str | None = None
    channel: str | None = Field(default=None, max_length=40)
    variant: str | None = Field(default=None, max_length=16)
    campaign: str | None = Field(default=None, max_length=80)
    utm: dict[str, str] = Field(default_factory=dict)
    expires_at: AwareDatetime | None = None


class VariantIn(_In):
    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,16}$")
    weight: int = Field(ge=1, le=100)
    material_id: str


class StepContentIn(_In):
    """Put materials on a touch step of an SOP: one, or A/B/n variants with weights."""

    step: int = Field(ge=0)
    material_id: str | None = None
    variants: list[VariantIn] = Field(default_factory=list, max_length=5)


class ImportResult(BaseModel):
    created: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list)


# ---------------------------------------------------------------- outputs


class VersionOut(BaseModel):
    version: int
    body: dict[str, Any]
    variables: list[str]
    fallbacks: dict[str, Any]
    note: str | None
    created_by: str | None
    created_at: datetime


class MaterialOut(BaseModel):
    id: str
    kind: str
    name: str
    library: str
    folder_id: str | None
    tags: list[str]
    version: int
    status: str
    valid_from: datetime | None
    valid_until: datetime | None
    valid_now: bool
    body: dict[str, Any]
    variables: list[str]
    fallbacks: dict[str, Any]
    owner_brand: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime | None


class FolderOut(BaseModel):
    id: str
    name: str
    parent_id: str | None
    library: str


class SettingsOut(BaseModel):
    allowed_domains: list[str]
    utm: dict[str, Any]


class PreviewOut(BaseModel):
    text: str
    bytes: int
    limit: int
    customer_id: str | None
    values: dict[str, Any]


class LinkOut(BaseModel):
    id: str
    code: str
    short_url: str
    target_url: str
    material_id: str | None
    version: int | None
    touch_id: str | None
    customer_id: str | None
    koc_note_id: str | None
    channel: str | None
    variant: str | None
    campaign: str | None
    created_at: datetime
    clicks: int = 0


class ClickOut(BaseModel):
    id: str
    link_id: str
    customer_id: str | None
    touch_id: str | None
    material_id: str | None
    variant: str | None
    channel: str | None
    at: datetime
    bot: bool
    reason: str | None


class VariantRow(BaseModel):
    variant: str
    control: bool
    customers: int
    successes: int
    rate: float
    gmv_fen: int
    gmv_per_customer_fen: float
    lift: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    z: float | None = None
    t: float | None = None
    p_value: float | None = None
    significant: bool = False


class VariantResults(BaseModel):
    sop: str
    step: int
    metric: str
    window_days: int
    confidence: float
    test: str
    rows: list[VariantRow]


class PerformanceRow(BaseModel):
    material_id: str
    name: str
    kind: str
    sends: int = 0
    delivered: int = 0
    replies: int = 0
    clicks: int = 0
    orders: int = 0
    gmv_fen: int = 0
    click_rate: float = 0.0
    order_rate: float = 0.0


class PerformanceOut(BaseModel):
    window_days: int
    segment: str | None
    rows: list[PerformanceRow]
    best: list[str] = Field(default_factory=list)
    worst: list[str] = Field(default_factory=list)
