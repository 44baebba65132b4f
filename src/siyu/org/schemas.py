"""Inputs and outputs of the organisation domain (shared by API, console, CLI, import)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from siyu.org.permissions import API_SCOPES

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,79}$")

Role = Literal[
    "admin",
    "hq_operator",
    "regional_manager",
    "store_manager",
    "guide",
    "community_operator",
    "content_operator",
    "analyst",
    "agency_manager",
]
Scope = Literal["own", "unit", "brand", "agency"]
UnitKind = Literal["hq", "region", "city", "store", "other"]
GuideKind = Literal["general", "category", "brand"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _slug(value: str) -> str:
    value = value.lower()
    if not SLUG.match(value):
        raise ValueError("3–40 lowercase letters, digits or '-', not starting or ending with '-'")
    return value


class AgencyIn(_In):
    slug: str
    name: str = Field(min_length=1, max_length=200)

    _v = field_validator("slug")(_slug)


class BrandIn(_In):
    slug: str
    name: str = Field(min_length=1, max_length=200)
    agency: str | None = None
    timezone: str = "Asia/Shanghai"

    _v = field_validator("slug")(_slug)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class UnitIn(_In):
    code: str
    name: str = Field(min_length=1, max_length=200)
    kind: UnitKind = "store"
    parent: str | None = Field(default=None, description="Parent unit id or code")
    city: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=400)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE.match(value):
            raise ValueError("1–64 letters, digits, '_', '.', '-'")
        return value


class UnitPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: UnitKind | None = None
    parent: str | None = None
    city: str | None = None
    address: str | None = None
    active: bool | None = None


class UnitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    kind: str
    parent_id: str | None
    depth: int
    city: str | None
    address: str | None
    active: bool


class UnitNode(UnitOut):
    children: list[UnitNode] = []


class StaffIn(_In):
    name: str = Field(min_length=1, max_length=100)
    username: str
    role: Role
    scope: Scope | None = None
    unit: str | None = Field(default=None, description="Org unit id or code")
    email: str | None = Field(default=None, max_length=200)
    employee_no: str | None = Field(default=None, max_length=64)
    wecom_userid: str | None = Field(default=None, max_length=64)
    guide_kind: GuideKind = "brand"
    category: str | None = Field(default=None, max_length=100)
    password: str | None = Field(default=None, min_length=8, max_length=200)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not USERNAME.match(value):
            raise ValueError("2–80 letters, digits, '_', '.', '@', '-'")
        return value.lower()


class MembershipIn(_In):
    """Give an existing staff member (e.g. a shared guide) a role on another brand."""

    username: str
    role: Role
    scope: Scope | None = None
    unit: str | None = None
    wecom_userid: str | None = Field(default=None, max_length=64)


class StaffPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role | None = None
    scope: Scope | None = None
    unit: str | None = None
    wecom_userid: str | None = None
    email: str | None = None
    active: bool | None = None


class StaffOut(BaseModel):
    id: str
    name: str
    username: str
    email: str | None
    employee_no: str | None
    guide_kind: str
    category: str | None
    active: bool
    role: str
    scope: str
    unit_id: str | None
    unit_name: str | None
    wecom_userid: str | None
    brands: list[str] = Field(default_factory=list, description="Slugs of brands served")


class BrandOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    slug: str
    name: str
    agency_id: str | None
    timezone: str


class AgencyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    slug: str
    name: str


class ApiKeyIn(_In):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1)
    expires_at: datetime | None = None

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s not in API_SCOPES]
        if bad:
            raise ValueError(
                f"unknown scope(s): {', '.join(bad)}; allowed: {', '.join(API_SCOPES)}"
            )
        return sorted(set(value))


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown once; only its hash is stored.")


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    actor_kind: str
    actor_label: str
    action: str
    entity_type: str
    entity_id: str | None
    before: dict[str, object] | None
    after: dict[str, object] | None
