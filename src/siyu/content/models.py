"""Tables of the content domain: the brand's content settings (allowed redirect domains, UTM
defaults), folders, materials and their versions (a brand library, or an agency library its
brands can read), tracking links and their clicks, KOC/UGC notes and the reward ledger.

A material never changes in place: an edit writes a new :class:`MaterialVersion` and moves
``Material.version``; touches and links record the version they sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column

MATERIAL_KINDS = ("text", "image", "link", "miniprogram", "file", "video", "poster")
LIBRARIES = ("brand", "agency")
MATERIAL_STATUSES = ("active", "archived")
KOC_STATUSES = ("submitted", "approved", "rejected")
KOC_PLATFORMS = ("xiaohongshu", "douyin", "weibo", "wechat_channels", "dianping", "other")


class ContentSettings(Base):
    """A brand's content settings: the domains tracking links may redirect to, UTM defaults
    appended for the mall."""

    __tablename__ = "content_settings"

    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)
    allowed_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    utm: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(String(200))


class ContentFolder(Base):
    """A folder of a brand library (``brand_id``) or an agency library (``agency_id``)."""

    __tablename__ = "content_folders"
    __table_args__ = (
        Index("ix_content_folders_brand", "brand_id"),
        Index("ix_content_folders_agency", "agency_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("content_folders.id"))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_column()


class Material(Base):
    """One material (text, image, link card, mini-program card, file, video, poster).

    ``library=brand``: owned by ``brand_id``. ``library=agency``: owned by ``agency_id`` and
    readable by every brand of the agency (``brand_id`` is the brand it was created from).
    """

    __tablename__ = "content_materials"
    __table_args__ = (
        Index("ix_content_materials_brand", "brand_id", "status", "kind"),
        Index("ix_content_materials_agency", "agency_id", "library"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    library: Mapped[str] = mapped_column(String(8), default="brand")
    folder_id: Mapped[str | None] = mapped_column(ForeignKey("content_folders.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(12), default="active")
    valid_from: Mapped[datetime | None] = mapped_column()
    valid_until: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()


class MaterialVersion(Base):
    """An immutable version of a material: its body (text template, attachments, link card,
    mini-program card, media), the template variables it uses and their fallbacks."""

    __tablename__ = "content_material_versions"
    __table_args__ = (UniqueConstraint("material_id", "version"),)

    id: Mapped[str] = id_column()
    material_id: Mapped[str] = mapped_column(ForeignKey("content_materials.id"))
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    fallbacks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class TrackingLink(Base):
    """A short link (``/t/{code}``) to an allowed target, tied to what it was sent with:
    a touch (and its SOP, customer, variant), a material version, a KOC note or a campaign.
    A link made per touch may carry the customer in signed parameters instead."""

    __tablename__ = "content_links"
    __table_args__ = (
        UniqueConstraint("code"),
        Index("ix_content_links_material", "brand_id", "material_id"),
        Index("ix_content_links_touch", "brand_id", "touch_id"),
        Index("ix_content_links_koc", "brand_id", "koc_note_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    code: Mapped[str] = mapped_column(String(16))
    target_url: Mapped[str] = mapped_column(String(2000))
    material_id: Mapped[str | None] = mapped_column(ForeignKey("content_materials.id"))
    version: Mapped[int | None] = mapped_column(Integer)
    touch_id: Mapped[str | None] = mapped_column(String(26))
    sop_id: Mapped[str | None] = mapped_column(String(26))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    staff_id: Mapped[str | None] = mapped_column(String(26))
    koc_note_id: Mapped[str | None] = mapped_column(String(26))
    channel: Mapped[str | None] = mapped_column(String(40))
    variant: Mapped[str | None] = mapped_column(String(16))
    campaign: Mapped[str | None] = mapped_column(String(80))
    utm: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sent_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class LinkClick(Base):
    """One request to a tracking link. Bot, preview, HEAD and too-early requests are kept
    with ``bot=True`` and a ``reason`` but never counted or sent to the lake."""

    __tablename__ = "content_link_clicks"
    __table_args__ = (
        Index("ix_content_link_clicks_link", "brand_id", "link_id", "at"),
        Index("ix_content_link_clicks_material", "brand_id", "material_id", "at"),
        Index("ix_content_link_clicks_customer", "brand_id", "customer_id", "at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    link_id: Mapped[str] = mapped_column(ForeignKey("content_links.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    touch_id: Mapped[str | None] = mapped_column(String(26))
    material_id: Mapped[str | None] = mapped_column(String(26))
    version: Mapped[int | None] = mapped_column(Integer)
    koc_note_id: Mapped[str | None] = mapped_column(String(26))
    channel: Mapped[str | None] = mapped_column(String(40))
    variant: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column()
    bot: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(24))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip_hash: Mapped[str | None] = mapped_column(String(64))


class KocNote(Base):
    """A UGC/KOC note (e.g. a Xiaohongshu post) submitted by a customer or a staff member,
    reviewed (approved / rejected with a reason), rewarded on approval, and attributed
    through its tracking link or channel code."""

    __tablename__ = "content_koc_notes"
    __table_args__ = (
        Index("ix_content_koc_notes_status", "brand_id", "status", "created_at"),
        Index("ix_content_koc_notes_customer", "brand_id", "customer_id"),
        Index("ix_content_koc_notes_channel", "brand_id", "channel_code"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    platform: Mapped[str] = mapped_column(String(24))
    url: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(String(2000))
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default="submitted")
    reject_reason: Mapped[str | None] = mapped_column(String(400))
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None] = mapped_column()
    reward_fen: Mapped[int] = mapped_column(Integer, default=0)
    reward_points: Mapped[int] = mapped_column(Integer, default=0)
    link_id: Mapped[str | None] = mapped_column(ForeignKey("content_links.id"))
    channel_code: Mapped[str | None] = mapped_column(String(64))
    channel_state: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    submitted_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()


class RewardLedger(Base):
    """Append-only rewards (cash in fen, or points) to a customer or a staff member, one row
    per intended reward (``idem_key`` unique per brand, e.g. ``koc:{note_id}:fen``)."""

    __tablename__ = "content_reward_ledger"
    __table_args__ = (
        UniqueConstraint("brand_id", "idem_key"),
        Index("ix_content_reward_ledger_customer", "brand_id", "customer_id"),
        Index("ix_content_reward_ledger_staff", "brand_id", "staff_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    idem_key: Mapped[str] = mapped_column(String(120))
    koc_note_id: Mapped[str | None] = mapped_column(ForeignKey("content_koc_notes.id"))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    unit: Mapped[str] = mapped_column(String(8))  # fen | points
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="granted")  # granted | reversed
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
