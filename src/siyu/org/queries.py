"""Reads of the organisation, always through the caller's tenancy and data scope.

:func:`access_brand` is the funnel: every read or write of brand data starts with it, so a
new endpoint cannot forget the tenant check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from siyu.core.audit import AuditEntry
from siyu.core.errors import NotFound
from siyu.core.tenancy import Actor
from siyu.org.models import Agency, ApiKey, Brand, Membership, OrgUnit, Staff
from siyu.org.permissions import BrandRef, authorize, can_see_brand, unit_filter
from siyu.org.schemas import StaffOut, UnitNode, UnitOut


def brand_ref(brand: Brand) -> BrandRef:
    return BrandRef(id=brand.id, agency_id=brand.agency_id)


def find_brand(db: Session, ref: str) -> Brand | None:
    """A brand by slug or id, unchecked. Only for the funnel and for system tasks."""
    return db.scalar(select(Brand).where(or_(Brand.slug == ref.lower(), Brand.id == ref)))


def access_brand(db: Session, actor: Actor, ref: str, permission: str = "org.read") -> Brand:
    """The brand ``ref`` (slug or id) if the actor may do ``permission`` on it.

    Raises ``NotFound`` for a brand the actor cannot see, exactly as for one that does not
    exist, and ``Forbidden`` for a visible brand where the permission is missing.
    """
    brand = find_brand(db, ref)
    if brand is None:
        raise NotFound("org.brand_not_found")
    authorize(actor, permission, brand_ref(brand))
    return brand


def find_agency(db: Session, ref: str) -> Agency | None:
    return db.scalar(select(Agency).where(or_(Agency.slug == ref.lower(), Agency.id == ref)))


def accessible_brands(db: Session, actor: Actor) -> list[Brand]:
    brands = db.scalars(select(Brand).order_by(Brand.name)).all()
    return [b for b in brands if can_see_brand(actor, brand_ref(b))]


def list_agencies(db: Session, actor: Actor) -> list[Agency]:
    ids = {b.agency_id for b in accessible_brands(db, actor) if b.agency_id}
    ids |= {g.agency_id for g in actor.grants if g.agency_id}
    if actor.superadmin:
        return list(db.scalars(select(Agency).order_by(Agency.slug)))
    if not ids:
        return []
    return list(db.scalars(select(Agency).where(Agency.id.in_(ids)).order_by(Agency.slug)))


def list_units(db: Session, actor: Actor, brand: Brand) -> list[OrgUnit]:
    flt = unit_filter(actor, brand_ref(brand))
    stmt = select(OrgUnit).where(OrgUnit.brand_id == brand.id)
    if not flt.all:
        if flt.path_prefix:
            stmt = stmt.where(OrgUnit.path.startswith(flt.path_prefix, autoescape=True))
        elif flt.unit_id:
            stmt = stmt.where(OrgUnit.id == flt.unit_id)
        else:
            return []
    return list(db.scalars(stmt.order_by(OrgUnit.path)))


def resolve_unit(db: Session, brand: Brand, ref: str) -> OrgUnit | None:
    """A unit of this brand by id or code, unchecked for scope."""
    return db.scalar(
        select(OrgUnit).where(
            OrgUnit.brand_id == brand.id, or_(OrgUnit.id == ref, OrgUnit.code == ref)
        )
    )


def get_unit(db: Session, actor: Actor, brand: Brand, ref: str) -> OrgUnit:
    unit = resolve_unit(db, brand, ref)
    if unit is None or not unit_filter(actor, brand_ref(brand)).admits(unit.id, unit.path):
        raise NotFound("org.unit_not_found", unit=ref)
    return unit


def unit_tree(db: Session, actor: Actor, brand: Brand) -> list[UnitNode]:
    """Visible units as a forest: a subtree's root appears at top level for a scoped viewer."""
    units = list_units(db, actor, brand)
    nodes = {u.id: UnitNode.model_validate(UnitOut.model_validate(u).model_dump()) for u in units}
    roots: list[UnitNode] = []
    for unit in units:  # ordered by path, so parents come first
        node = nodes[unit.id]
        parent = nodes.get(unit.parent_id) if unit.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots


@dataclass
class StaffRow:
    staff: Staff
    membership: Membership
    unit: OrgUnit | None


def _staff_rows(db: Session, brand: Brand) -> list[StaffRow]:
    """Every staff member serving the brand: brand memberships and agency-wide ones."""
    cond = Membership.brand_id == brand.id
    if brand.agency_id:
        cond = or_(cond, Membership.agency_id == brand.agency_id)
    stmt = (
        select(Staff, Membership, OrgUnit)
        .join(Membership, Membership.staff_id == Staff.id)
        .outerjoin(OrgUnit, OrgUnit.id == Membership.unit_id)
        .where(cond)
        .order_by(Staff.name, Staff.id)
    )
    rows = [StaffRow(s, m, u) for s, m, u in db.execute(stmt).all()]
    # A brand membership wins over an agency-wide one for the same person.
    best: dict[str, StaffRow] = {}
    for row in rows:
        if row.staff.id not in best or row.membership.brand_id == brand.id:
            best[row.staff.id] = row
    return list(best.values())


def _visible(actor: Actor, brand: Brand, row: StaffRow) -> bool:
    flt = unit_filter(actor, brand_ref(brand))
    if flt.all:
        return True
    if actor.staff_id == row.staff.id:
        return True
    unit = row.unit
    return unit is not None and flt.admits(unit.id, unit.path)


def _brands_served(db: Session, staff_ids: list[str]) -> dict[str, list[str]]:
    if not staff_ids:
        return {}
    out: dict[str, list[str]] = {}
    stmt = (
        select(Membership.staff_id, Brand.slug)
        .join(Brand, Brand.id == Membership.brand_id)
        .where(Membership.staff_id.in_(staff_ids), Membership.active.is_(True))
        .order_by(Brand.slug)
    )
    for staff_id, slug in db.execute(stmt):
        out.setdefault(staff_id, []).append(slug)
    return out


def _staff_out(row: StaffRow, brands: list[str]) -> StaffOut:
    s, m = row.staff, row.membership
    return StaffOut(
        id=s.id,
        name=s.name,
        username=s.username,
        email=s.email,
        employee_no=s.employee_no,
        guide_kind=s.guide_kind,
        category=s.category,
        active=s.active and m.active,
        role=m.role,
        scope=m.scope,
        unit_id=m.unit_id,
        unit_name=row.unit.name if row.unit else None,
        wecom_userid=m.wecom_userid,
        brands=brands,
    )


def list_staff(db: Session, actor: Actor, brand: Brand) -> list[StaffOut]:
    rows = [r for r in _staff_rows(db, brand) if _visible(actor, brand, r)]
    served = _brands_served(db, [r.staff.id for r in rows])
    return [_staff_out(r, served.get(r.staff.id, [])) for r in rows]


def staff_row(db: Session, actor: Actor, brand: Brand, staff_id: str) -> StaffRow:
    for row in _staff_rows(db, brand):
        if row.staff.id == staff_id or row.staff.username == staff_id.lower():
            if _visible(actor, brand, row):
                return row
            break
    raise NotFound("org.staff_not_found", staff=staff_id)


def get_staff(db: Session, actor: Actor, brand: Brand, staff_id: str) -> StaffOut:
    row = staff_row(db, actor, brand, staff_id)
    served = _brands_served(db, [row.staff.id])
    return _staff_out(row, served.get(row.staff.id, []))


def list_api_keys(db: Session, actor: Actor, brand: Brand) -> list[ApiKey]:
    authorize(actor, "apikeys.manage", brand_ref(brand))
    return list(
        db.scalars(select(ApiKey).where(ApiKey.brand_id == brand.id).order_by(ApiKey.created_at))
    )


def get_api_key(db: Session, actor: Actor, brand: Brand, key_id: str) -> ApiKey:
    authorize(actor, "apikeys.manage", brand_ref(brand))
    key = db.scalar(select(ApiKey).where(ApiKey.brand_id == brand.id, ApiKey.id == key_id))
    if key is None:
        raise NotFound("org.api_key_not_found", key=key_id)
    return key


def list_audit(
    db: Session, actor: Actor, brand: Brand, limit: int = 100, before: str | None = None
) -> list[AuditEntry]:
    authorize(actor, "audit.read", brand_ref(brand))
    stmt = select(AuditEntry).where(AuditEntry.brand_id == brand.id)
    if before:
        stmt = stmt.where(AuditEntry.id < before)
    return list(db.scalars(stmt.order_by(AuditEntry.id.desc()).limit(min(max(limit, 1), 500))))


# ---------------------------------------------------------------- for other domains


def subtree_unit_ids(brand_id: str, path_prefix: str) -> Select[Any]:
    """A sub-select of the ids of units under ``path_prefix`` (for data-scope filters)."""
    return select(OrgUnit.id).where(
        OrgUnit.brand_id == brand_id, OrgUnit.path.startswith(path_prefix, autoescape=True)
    )


def staff_in_units(brand_id: str, unit_ids: Select[Any]) -> Select[Any]:
    """A sub-select of staff ids whose membership in the brand sits in ``unit_ids``."""
    return select(Membership.staff_id).where(
        Membership.brand_id == brand_id, Membership.unit_id.in_(unit_ids)
    )


def staff_names(db: Session, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = db.execute(select(Staff.id, Staff.name).where(Staff.id.in_(sorted(ids))))
    return {sid: name for sid, name in rows}


def staff_brief(db: Session, ids: set[str]) -> dict[str, tuple[str, str]]:
    """staff id → (name, username)."""
    if not ids:
        return {}
    rows = db.execute(select(Staff.id, Staff.name, Staff.username).where(Staff.id.in_(sorted(ids))))
    return {sid: (name, username) for sid, name, username in rows}


def staff_by_wecom(db: Session, brand: Brand, userids: set[str]) -> dict[str, str]:
    """WeCom userid → staff id, for this brand's memberships."""
    if not userids:
        return {}
    rows = db.execute(
        select(Membership.wecom_userid, Membership.staff_id).where(
            Membership.brand_id == brand.id, Membership.wecom_userid.in_(sorted(userids))
        )
    )
    return {u: s for u, s in rows if u}


def unit_ids_by_code(db: Session, brand: Brand, codes: set[str]) -> dict[str, str]:
    if not codes:
        return {}
    rows = db.execute(
        select(OrgUnit.code, OrgUnit.id).where(
            OrgUnit.brand_id == brand.id, OrgUnit.code.in_(sorted(codes))
        )
    )
    return {code: uid for code, uid in rows}
