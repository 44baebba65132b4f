"""Every write to the organisation. Each action checks permission, owns its transaction and
writes an audit entry in the same transaction.

    unit = create_unit(db, actor, brand, UnitIn(code="SH001", name="静安店", parent="EAST"))
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core.audit import record, snapshot
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Forbidden, Invalid, NotFound
from siyu.core.ids import new_id
from siyu.core.security import hash_password, new_token, token_hash
from siyu.core.tenancy import Actor
from siyu.org import queries
from siyu.org.models import Agency, ApiKey, Brand, Membership, OrgUnit, Staff
from siyu.org.permissions import (
    ROLE_PERMISSIONS,
    authorize,
    grant_for,
    permissions_on,
    unit_filter,
)
from siyu.org.schemas import (
    AgencyIn,
    ApiKeyIn,
    BrandIn,
    MembershipIn,
    StaffIn,
    StaffPatch,
    UnitIn,
    UnitPatch,
)

SCOPE_WIDTH = {"own": 0, "unit": 1, "brand": 2, "agency": 3}
DEFAULT_SCOPE = {
    "admin": "brand",
    "hq_operator": "brand",
    "analyst": "brand",
    "content_operator": "brand",
    "community_operator": "brand",
    "agency_manager": "agency",
    "regional_manager": "unit",
    "store_manager": "unit",
    "guide": "own",
}


# ---------------------------------------------------------------- agencies and brands


def create_agency(db: Session, actor: Actor, data: AgencyIn) -> Agency:
    if not actor.superadmin:
        raise Forbidden("auth.permission_denied", permission="agencies.create")
    with atomic(db):
        if queries.find_agency(db, data.slug):
            raise Conflict("org.slug_taken", slug=data.slug)
        agency = Agency(id=new_id(), slug=data.slug, name=data.name)
        db.add(agency)
        db.flush()
        record(
            db,
            actor,
            "agency.create",
            "agency",
            agency.id,
            agency_id=agency.id,
            after=snapshot(agency),
        )
    return agency


def create_brand(db: Session, actor: Actor, data: BrandIn) -> Brand:
    with atomic(db):
        agency = None
        if data.agency:
            agency = queries.find_agency(db, data.agency)
            visible = actor.superadmin or (
                agency is not None
                and any(
                    g.agency_id == agency.id
                    and "brands.manage" in ROLE_PERMISSIONS.get(g.role, frozenset())
                    for g in actor.grants
                )
            )
            if agency is None or not visible:
                raise NotFound("org.agency_not_found", agency=data.agency)
        elif not actor.superadmin:
            raise Forbidden("auth.permission_denied", permission="brands.manage")
        if queries.find_brand(db, data.slug):
            raise Conflict("org.slug_taken", slug=data.slug)
        brand = Brand(
            id=new_id(),
            slug=data.slug,
            name=data.name,
            agency_id=agency.id if agency else None,
            timezone=data.timezone,
        )
        db.add(brand)
        db.flush()
        record(
            db,
            actor,
            "brand.create",
            "brand",
            brand.id,
            brand=brand,
            after=snapshot(brand),
        )
    return brand


# ---------------------------------------------------------------- org units


def _unit_in_scope(actor: Actor, brand: Brand, unit: OrgUnit | None) -> bool:
    flt = unit_filter(actor, queries.brand_ref(brand))
    if unit is None:
        return flt.all
    return flt.admits(unit.id, unit.path)


def _parent(db: Session, actor: Actor, brand: Brand, ref: str | None) -> OrgUnit | None:
    if ref is None or ref == "":
        if not _unit_in_scope(actor, brand, None):
            raise Forbidden("org.out_of_scope")
        return None
    parent = queries.resolve_unit(db, brand, ref)
    if parent is None or not _unit_in_scope(actor, brand, parent):
        raise Invalid("org.parent_not_found", parent=ref)
    return parent


def create_unit(db: Session, actor: Actor, brand: Brand, data: UnitIn) -> OrgUnit:
    authorize(actor, "org.write", queries.brand_ref(brand))
    with atomic(db):
        parent = _parent(db, actor, brand, data.parent)
        if queries.resolve_unit(db, brand, data.code):
            raise Conflict("org.unit_code_taken", code=data.code)
        unit_id = new_id()
        unit = OrgUnit(
            id=unit_id,
            brand_id=brand.id,
            parent_id=parent.id if parent else None,
            code=data.code,
            name=data.name,
            kind=data.kind,
            city=data.city,
            address=data.address,
            active=True,
            path=(parent.path if parent else "/") + unit_id + "/",
            depth=(parent.depth + 1) if parent else 0,
        )
        db.add(unit)
        db.flush()
        record(
            db,
            actor,
            "unit.create",
            "org_unit",
            unit.id,
            brand=brand,
            after=snapshot(unit),
        )
    return unit


def update_unit(db: Session, actor: Actor, brand: Brand, ref: str, data: UnitPatch) -> OrgUnit:
    authorize(actor, "org.write", queries.brand_ref(brand))
    with atomic(db):
        unit = queries.get_unit(db, actor, brand, ref)
        before = snapshot(unit)
        changes = data.model_dump(exclude_unset=True)
        if "parent" in changes:
            new_parent = _parent(db, actor, brand, changes.pop("parent"))
            if new_parent is not None and new_parent.path.startswith(unit.path):
                raise Invalid("org.unit_cycle", unit=unit.code)
            old_path = unit.path
            new_path = (new_parent.path if new_parent else "/") + unit.id + "/"
            depth_delta = ((new_parent.depth + 1) if new_parent else 0) - unit.depth
            if new_path != old_path:
                for sub in db.scalars(
                    select(OrgUnit).where(
                        OrgUnit.brand_id == brand.id,
                        OrgUnit.path.startswith(old_path, autoescape=True),
                    )
                ):
                    sub.path = new_path + sub.path[len(old_path) :]
                    sub.depth += depth_delta
                unit.parent_id = new_parent.id if new_parent else None
        for key, value in changes.items():
            setattr(unit, key, value)
        db.flush()
        record(
            db,
            actor,
            "unit.update",
            "org_unit",
            unit.id,
            brand=brand,
            before=before,
            after=snapshot(unit),
        )
    return unit


# ---------------------------------------------------------------- staff and memberships


def _check_grant(
    db: Session, actor: Actor, brand: Brand, role: str, scope: str | None, unit_ref: str | None
) -> tuple[str, OrgUnit | None]:
    """Validate a role/scope/unit assignment and refuse privilege escalation.

    The actor may grant only a role whose permissions it holds itself, a scope no wider than
    its own, and a unit inside its own data scope.
    """
    scope = scope or DEFAULT_SCOPE[role]
    unit = None
    if unit_ref:
        unit = queries.resolve_unit(db, brand, unit_ref)
        if unit is None or not _unit_in_scope(actor, brand, unit):
            raise Invalid("org.unit_not_found", unit=unit_ref)
    if scope in ("unit", "own") and unit is None:
        raise Invalid("org.scope_needs_unit", scope=scope)
    if scope == "agency" and not brand.agency_id:
        raise Invalid("org.agency_scope_without_agency")
    held = permissions_on(actor, queries.brand_ref(brand))
    if not ROLE_PERMISSIONS[role] <= held:
        raise Forbidden("org.cannot_grant_role", role=role)
    if not actor.superadmin:
        mine = grant_for(actor, queries.brand_ref(brand))
        my_width = SCOPE_WIDTH[mine.scope] if mine else (2 if actor.kind == "api_key" else -1)
        if SCOPE_WIDTH[scope] > my_width:
            raise Forbidden("org.cannot_grant_scope", scope=scope)
    if unit is None and not _unit_in_scope(actor, brand, None):
        raise Forbidden("org.out_of_scope")
    return scope, unit


def _membership(
    brand: Brand, staff: Staff, role: str, scope: str, unit: OrgUnit | None, wecom: str | None
) -> Membership:
    agency_wide = scope == "agency"
    return Membership(
        id=new_id(),
        staff_id=staff.id,
        brand_id=None if agency_wide else brand.id,
        agency_id=brand.agency_id if agency_wide else None,
        role=role,
        scope=scope,
        unit_id=unit.id if unit else None,
        wecom_userid=wecom or None,
        active=True,
    )


def _flush_wecom(db: Session, wecom_userid: str | None) -> None:
    """Flush in a savepoint; a WeCom userid already used in the brand becomes a 409."""
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError as exc:
        raise Conflict("org.wecom_userid_taken", wecom_userid=wecom_userid or "") from exc


def create_staff(db: Session, actor: Actor, brand: Brand, data: StaffIn) -> Staff:
    authorize(actor, "staff.write", queries.brand_ref(brand))
    with atomic(db):
        scope, unit = _check_grant(db, actor, brand, data.role, data.scope, data.unit)
        if db.scalar(select(Staff.id).where(Staff.username == data.username)):
            raise Conflict("org.username_taken", username=data.username)
        staff = Staff(
            id=new_id(),
            agency_id=brand.agency_id,
            home_brand_id=None if brand.agency_id else brand.id,
            name=data.name,
            username=data.username,
            email=data.email,
            employee_no=data.employee_no,
            guide_kind=data.guide_kind,
            category=data.category,
            password_hash=hash_password(data.password) if data.password else None,
            active=True,
            failed_logins=0,
        )
        db.add(staff)
        db.flush()
        member = _membership(brand, staff, data.role, scope, unit, data.wecom_userid)
        db.add(member)
        _flush_wecom(db, data.wecom_userid)
        record(
            db,
            actor,
            "staff.create",
            "staff",
            staff.id,
            brand=brand,
            after={**snapshot(staff), "membership": snapshot(member)},
        )
    return staff


def add_membership(db: Session, actor: Actor, brand: Brand, data: MembershipIn) -> Membership:
    """Let a staff member of the same agency (e.g. a shared guide) serve this brand too."""
    authorize(actor, "staff.write", queries.brand_ref(brand))
    with atomic(db):
        staff = db.scalar(select(Staff).where(Staff.username == data.username.lower()))
        same_tenant = staff is not None and (
            actor.superadmin
            or (brand.agency_id is not None and staff.agency_id == brand.agency_id)
            or staff.home_brand_id == brand.id
        )
        if staff is None or not same_tenant:
            raise NotFound("org.staff_not_found", staff=data.username)
        existing = db.scalar(
            select(Membership).where(
                Membership.staff_id == staff.id, Membership.brand_id == brand.id
            )
        )
        if existing is not None:
            raise Conflict("org.already_member", staff=data.username)
        scope, unit = _check_grant(db, actor, brand, data.role, data.scope, data.unit)
        member = _membership(brand, staff, data.role, scope, unit, data.wecom_userid)
        db.add(member)
        _flush_wecom(db, data.wecom_userid)
        record(
            db,
            actor,
            "membership.create",
            "membership",
            member.id,
            brand=brand,
            after=snapshot(member),
        )
    return member


def update_staff(db: Session, actor: Actor, brand: Brand, ref: str, data: StaffPatch) -> Staff:
    authorize(actor, "staff.write", queries.brand_ref(brand))
    with atomic(db):
        row = queries.staff_row(db, actor, brand, ref)
        staff, member = row.staff, row.membership
        if staff.id == actor.staff_id and (data.role or data.scope or data.active is False):
            raise Forbidden("org.cannot_change_self")
        # Changing someone's grant needs the right to grant what they hold now, too.
        _check_grant(
            db, actor, brand, member.role, member.scope, member.unit_id if member.unit_id else None
        )
        before = {**snapshot(staff), "membership": snapshot(member)}
        changes = data.model_dump(exclude_unset=True)
        if {"role", "scope", "unit"} & changes.keys():
            role = changes.get("role") or member.role
            scope, unit = _check_grant(
                db,
                actor,
                brand,
                role,
                changes.get("scope") or (member.scope if "role" not in changes else None),
                changes.get("unit", member.unit_id),
            )
            member.role, member.scope = role, scope
            member.unit_id = unit.id if unit else None
        if "wecom_userid" in changes:
            member.wecom_userid = changes["wecom_userid"] or None
        for key in ("name", "email"):
            if key in changes:
                setattr(staff, key, changes[key])
        if "active" in changes:
            member.active = bool(changes["active"])
        _flush_wecom(db, member.wecom_userid)
        record(
            db,
            actor,
            "staff.update",
            "staff",
            staff.id,
            brand=brand,
            before=before,
            after={**snapshot(staff), "membership": snapshot(member)},
        )
    return staff


def create_admin(db: Session, actor: Actor, username: str, name: str, password: str) -> Staff:
    """A platform administrator (sees every agency and brand). CLI and demo only."""
    if not actor.superadmin:
        raise Forbidden("auth.permission_denied", permission="admins.create")
    if len(password) < 8:
        raise Invalid("auth.password_too_short")
    with atomic(db):
        if db.scalar(select(Staff.id).where(Staff.username == username.lower())):
            raise Conflict("org.username_taken", username=username)
        staff = Staff(
            id=new_id(),
            name=name,
            username=username.lower(),
            password_hash=hash_password(password),
            superadmin=True,
            active=True,
            failed_logins=0,
            guide_kind="brand",
        )
        db.add(staff)
        db.flush()
        record(db, actor, "admin.create", "staff", staff.id, after=snapshot(staff))
    return staff


def set_password(db: Session, actor: Actor, username: str, password: str) -> Staff:
    if len(password) < 8:
        raise Invalid("auth.password_too_short")
    with atomic(db):
        staff = db.scalar(select(Staff).where(Staff.username == username.lower()))
        if staff is None:
            raise NotFound("org.staff_not_found", staff=username)
        if not (actor.superadmin or actor.staff_id == staff.id):
            # Brand admins may reset passwords of people they can manage in a brand they share.
            brands = queries.accessible_brands(db, actor)
            allowed = False
            for brand in brands:
                try:
                    authorize(actor, "staff.write", queries.brand_ref(brand))
                    queries.staff_row(db, actor, brand, staff.id)
                    allowed = True
                    break
                except (NotFound, Forbidden):
                    continue
            if not allowed:
                raise NotFound("org.staff_not_found", staff=username)
        staff.password_hash = hash_password(password)
        staff.failed_logins = 0
        staff.locked_until = None
        record(
            db,
            actor,
            "staff.set_password",
            "staff",
            staff.id,
            agency_id=staff.agency_id,
            brand_id=staff.home_brand_id,
        )
    return staff


# ---------------------------------------------------------------- API keys


def create_api_key(db: Session, actor: Actor, brand: Brand, data: ApiKeyIn) -> tuple[ApiKey, str]:
    """Create a key; returns it with the secret, which is never stored or shown again."""
    authorize(actor, "apikeys.manage", queries.brand_ref(brand))
    secret = "sk_" + new_token(30)
    with atomic(db):
        key = ApiKey(
            id=new_id(),
            brand_id=brand.id,
            name=data.name,
            prefix=secret[:10],
            key_hash=token_hash(secret),
            scopes=list(data.scopes),
            created_by=actor.id,
            expires_at=data.expires_at,
        )
        db.add(key)
        db.flush()
        record(
            db,
            actor,
            "api_key.create",
            "api_key",
            key.id,
            brand=brand,
            after=snapshot(key),
        )
    return key, secret


def revoke_api_key(db: Session, actor: Actor, brand: Brand, key_id: str) -> ApiKey:
    with atomic(db):
        key = queries.get_api_key(db, actor, brand, key_id)
        if key.revoked_at is None:
            before = snapshot(key)
            key.revoked_at = utcnow()
            record(
                db,
                actor,
                "api_key.revoke",
                "api_key",
                key.id,
                brand=brand,
                before=before,
                after=snapshot(key),
            )
    return key


def touch_api_key(db: Session, key_id: str, at: datetime) -> None:
    """Bookkeeping, not a business write: not audited."""
    with atomic(db):
        db.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
