"""Who is acting: the tenancy context every action and query receives.

An :class:`Actor` is a signed-in staff member, an API key or the system itself. It carries
its grants (role and data scope per brand or per agency), resolved once per request by
``siyu.org``; the permission check in ``siyu.org.permissions`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ActorKind = Literal["staff", "api_key", "system"]
Scope = Literal["own", "unit", "brand", "agency"]


@dataclass(frozen=True)
class Grant:
    """A role with a data scope on one brand, or on every brand of one agency."""

    role: str
    scope: Scope
    brand_id: str | None = None
    agency_id: str | None = None
    unit_id: str | None = None
    unit_path: str | None = None


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    label: str
    grants: tuple[Grant, ...] = ()
    superadmin: bool = False
    # For API keys: the brand they belong to and their scopes ("org:read", "org:write", …).
    api_brand_id: str | None = None
    api_scopes: frozenset[str] = field(default_factory=frozenset)
    staff_id: str | None = None


SYSTEM = Actor(kind="system", id="system", label="system", superadmin=True)
