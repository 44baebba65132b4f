"""The one permission check every action and query uses.

A permission is a string such as ``org.write``. Roles map to permission sets; API keys carry
the same strings as scopes. :func:`authorize` answers two questions for a brand:

1. Can the actor see this brand at all? If not: ``NotFound`` — another tenant's resources
   are indistinguishable from resources that do not exist.
2. May it do this here? If not: ``Forbidden`` with code ``auth.permission_denied`` (or
   ``auth.missing_scope`` for an API key).

Data scope (own / unit subtree / brand / agency) is answered by :func:`unit_filter` and
:func:`can_see_unit`.
"""

from __future__ import annotations

from dataclasses import dataclass

from siyu.core.errors import Forbidden, NotFound
from siyu.core.tenancy import Actor, Grant

PERMISSIONS = (
    "org.read",
    "org.write",
    "staff.write",
    "apikeys.manage",
    "audit.read",
    "brands.manage",
    "customers.read",
    "customers.write",
    "customers.reveal",
    "customers.merge",
    "events.write",
    "tags.write",
    "segments.export",
    "sop.write",
    "wecom.manage",
    "channels.manage",
    "content.write",
    "content.submit",
    "metrics.read",
    "metrics.write",
)

_ALL = frozenset(PERMISSIONS)
_READ = frozenset({"org.read", "customers.read", "metrics.read"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": _ALL,
    "agency_manager": _ALL,
    "hq_operator": _ALL - {"brands.manage", "apikeys.manage"},
    "regional_manager": _READ | {"org.write", "staff.write", "customers.write"},
    "store_manager": _READ | {"staff.write", "customers.write"},
    "guide": _READ | {"customers.write"},
    "community_operator": _READ
    | {"customers.write", "sop.write", "channels.manage", "content.submit"},
    "content_operator": _READ | {"content.write", "content.submit"},
    "analyst": _READ | {"audit.read", "tags.write"},
}

# Scopes an API key may be given (a key never manages brands or other keys).
API_SCOPES = tuple(p for p in PERMISSIONS if p not in {"brands.manage", "apikeys.manage"})


@dataclass(frozen=True)
class BrandRef:
    """The two facts about a brand the check needs (kept ORM-free)."""

    id: str
    agency_id: str | None


def grant_for(actor: Actor, brand: BrandRef) -> Grant | None:
    """The actor's grant on this brand: a brand grant wins over an agency grant."""
    agency_grant = None
    for grant in actor.grants:
        if grant.brand_id == brand.id:
            return grant
        if grant.agency_id is not None and grant.agency_id == brand.agency_id:
            agency_grant = grant
    return agency_grant


def can_see_brand(actor: Actor, brand: BrandRef) -> bool:
    if actor.superadmin:
        return True
    if actor.kind == "api_key":
        return actor.api_brand_id == brand.id
    return grant_for(actor, brand) is not None


def authorize(actor: Actor, permission: str, brand: BrandRef) -> Grant | None:
    """Raise unless ``actor`` may do ``permission`` on ``brand``; return the grant used."""
    if permission not in _ALL:
        raise ValueError(f"unknown permission {permission!r}")
    if not can_see_brand(actor, brand):
        raise NotFound("org.brand_not_found")
    if actor.superadmin:
        return None
    if actor.kind == "api_key":
        if permission not in actor.api_scopes:
            raise Forbidden("auth.missing_scope", scope=permission)
        return None
    grant = grant_for(actor, brand)
    assert grant is not None  # can_see_brand said so
    if permission not in ROLE_PERMISSIONS.get(grant.role, frozenset()):
        raise Forbidden("auth.permission_denied", permission=permission)
    return grant


def permissions_on(actor: Actor, brand: BrandRef) -> frozenset[str]:
    """Everything the actor may do on the brand (for showing or hiding console controls)."""
    if not can_see_brand(actor, brand):
        return frozenset()
    if actor.superadmin:
        return _ALL
    if actor.kind == "api_key":
        return frozenset(actor.api_scopes)
    grant = grant_for(actor, brand)
    return ROLE_PERMISSIONS.get(grant.role, frozenset()) if grant else frozenset()


@dataclass(frozen=True)
class UnitFilter:
    """Which org units the actor sees in a brand: all, a subtree (path prefix), or one unit."""

    all: bool = False
    path_prefix: str | None = None
    unit_id: str | None = None

    def admits(self, unit_id: str | None, unit_path: str | None) -> bool:
        if self.all:
            return True
        if unit_id is None or unit_path is None:
            return False
        if self.path_prefix is not None:
            return unit_path.startswith(self.path_prefix)
        return unit_id == self.unit_id


NOTHING = UnitFilter()


def unit_filter(actor: Actor, brand: BrandRef) -> UnitFilter:
    if actor.superadmin or actor.kind == "api_key":
        return UnitFilter(all=True) if can_see_brand(actor, brand) else NOTHING
    grant = grant_for(actor, brand)
    if grant is None:
        return NOTHING
    if grant.scope in ("brand", "agency"):
        return UnitFilter(all=True)
    if grant.scope == "unit" and grant.unit_path:
        return UnitFilter(path_prefix=grant.unit_path)
    if grant.unit_id:
        return UnitFilter(unit_id=grant.unit_id)
    return NOTHING


def can_see_unit(actor: Actor, brand: BrandRef, unit_id: str | None, path: str | None) -> bool:
    return unit_filter(actor, brand).admits(unit_id, path)
