"""Tables of the organisation: agency → brands → org-unit tree → staff, with memberships."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column

ROLES = (
    "admin",
    "hq_operator",
    "regional_manager",
    "store_manager",
    "guide",
    "community_operator",
    "content_operator",
    "analyst",
    "agency_manager",
)
SCOPES = ("own", "unit", "brand", "agency")
UNIT_KINDS = ("hq", "region", "city", "store", "other")
GUIDE_KINDS = ("general", "category", "brand")


class Agency(Base):
    __tablename__ = "agencies"

    id: Mapped[str] = id_column()
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class Brand(Base):
    __tablename__ = "brands"

    id: Mapped[str] = id_column()
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = created_column()


class OrgUnit(Base):
    """A node of a brand's org tree (HQ, region, city, store, …), any depth.

    ``path`` is the chain of ids from the root, ``/a/b/c/``, so a subtree is one prefix match.
    """

    __tablename__ = "org_units"
    __table_args__ = (
        UniqueConstraint("brand_id", "code"),
        Index("ix_org_units_brand_path", "brand_id", "path"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("org_units.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    city: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(400))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()


class Staff(Base):
    """A person who signs in or serves customers. Belongs to an agency or to one brand."""

    __tablename__ = "staff"

    id: Mapped[str] = id_column()
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    home_brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str | None] = mapped_column(String(200))
    employee_no: Mapped[str | None] = mapped_column(String(64))
    guide_kind: Mapped[str] = mapped_column(String(16), default="brand")
    category: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    superadmin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_column()


class Membership(Base):
    """A staff member's role and data scope on one brand (or on all brands of an agency)."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("staff_id", "brand_id"),
        UniqueConstraint("brand_id", "wecom_userid"),
    )

    id: Mapped[str] = id_column()
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), index=True)
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"), index=True)
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    wecom_userid: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()


class ApiKey(Base):
    """A brand's API key. Only a SHA-256 of the secret is stored; it is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class WebSession(Base):
    """A console sign-in. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = id_column()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), index=True)
    brand_id: Mapped[str | None] = mapped_column(ForeignKey("brands.id"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
