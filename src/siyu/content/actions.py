"""Every write of the content domain: settings (allowed domains, UTM), folders, materials and
their versions, tracking links and clicks, and materials put on SOP touch steps (with A/B/n
variants). Each checks ``content.write`` (clicks come from the public redirect and need
none), runs in one transaction and is audited.

    m = create_material(db, actor, brand, MaterialIn(kind="text", name="新品", body={...}))
    m = update_material(db, actor, brand, m.id, MaterialPatch(body={...}))   # version 2
    link = create_link(db, actor, brand, LinkIn(target_url="https://mall.example.com/x"))
    target = record_click(db, link.code, method="GET", user_agent=ua, ip=ip).target
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.content import links as L
from siyu.content.materials import check_fallbacks, validate_body
from siyu.content.models import (
    ContentFolder,
    ContentSettings,
    LinkClick,
    Material,
    MaterialVersion,
    TrackingLink,
)
from siyu.content.schemas import (
    FolderIn,
    ImportResult,
    LinkIn,
    MaterialIn,
    MaterialPatch,
    SettingsIn,
    StepContentIn,
)
from siyu.core.audit import record, snapshot
from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic
from siyu.core.errors import FieldError, Invalid, NotFound, SiyuError
from siyu.core.ids import new_id
from siyu.core.settings import get_settings
from siyu.core.tenancy import SYSTEM, Actor
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.org.models import Brand
    from siyu.sop.models import Sop

WRITE = "content.write"
READ = "org.read"
DEFAULT_UTM = {"utm_source": "siyu", "utm_medium": "private_domain"}


def _authorize(actor: Actor, brand: Brand, permission: str = WRITE) -> None:
    authorize(actor, permission, org_queries.brand_ref(brand))


# ---------------------------------------------------------------- settings


def brand_settings(db: Session, brand_id: str) -> ContentSettings:
    """The brand's content settings (defaults, unsaved, until some are set)."""
    row = db.get(ContentSettings, brand_id)
    if row is None:
        row = ContentSettings(brand_id=brand_id, allowed_domains=[], utm={}, updated_at=utcnow())
    return row


def set_settings(db: Session, actor: Actor, brand: Brand, body: SettingsIn) -> ContentSettings:
    """Save the domains links may redirect to (subdomains included) and UTM defaults."""
    _authorize(actor, brand)
    domains = sorted({L.normalise_domain(d) for d in body.allowed_domains})
    for key in body.utm:
        if not key.startswith("utm_"):
            raise Invalid("content.bad_utm", name=key)
    with atomic(db):
        row = db.get(ContentSettings, brand.id)
        before = snapshot(row) if row else None
        if row is None:
            row = ContentSettings(brand_id=brand.id)
            db.add(row)
        row.allowed_domains = domains
        row.utm = dict(body.utm)
        row.updated_at = utcnow()
        row.updated_by = actor.label
        db.flush()
        record(
            db,
            actor,
            "content.settings",
            "content_settings",
            brand.id,
            brand=brand,
            before=before,
            after=snapshot(row),
        )
    return row


# ---------------------------------------------------------------- folders


def create_folder(db: Session, actor: Actor, brand: Brand, body: FolderIn) -> ContentFolder:
    _authorize(actor, brand)
    agency = _agency_of(brand, body.library)
    with atomic(db):
        if body.parent_id is not None:
            parent = db.get(ContentFolder, body.parent_id)
            if parent is None or not _folder_mine(parent, brand):
                raise NotFound("content.folder_not_found", folder=body.parent_id)
        folder = ContentFolder(
            id=new_id(),
            brand_id=None if agency else brand.id,
            agency_id=agency,
            parent_id=body.parent_id,
            name=body.name,
        )
        db.add(folder)
        db.flush()
        record(
            db,
            actor,
            "content.folder_create",
            "content_folder",
            folder.id,
            brand=brand,
            after=snapshot(folder),
        )
    return folder


def _agency_of(brand: Brand, library: str) -> str | None:
    if library != "agency":
        return None
    if brand.agency_id is None:
        raise Invalid("content.no_agency", brand=brand.slug)
    return brand.agency_id


def _folder_mine(folder: ContentFolder, brand: Brand) -> bool:
    return folder.brand_id == brand.id or (
        folder.agency_id is not None and folder.agency_id == brand.agency_id
    )


# ---------------------------------------------------------------- materials


def readable(material: Material, brand: Brand) -> bool:
    """A brand reads its own materials and its agency's shared ones."""
    if material.brand_id == brand.id:
        return True
    return (
        material.library == "agency"
        and material.agency_id is not None
        and material.agency_id == brand.agency_id
    )


def material_for(db: Session, brand: Brand, material_id: str) -> Material:
    """A material the brand may read; ``NotFound`` ``content.material_not_found``."""
    m = db.get(Material, material_id)
    if m is None or not readable(m, brand):
        raise NotFound("content.material_not_found", material=material_id)
    return m


def _owned(db: Session, brand: Brand, material_id: str) -> Material:
    m = db.get(Material, material_id)
    if m is None or not readable(m, brand):
        raise NotFound("content.material_not_found", material=material_id)
    if m.brand_id != brand.id:  # another brand's shared material: read-only here
        raise Invalid("content.material_read_only", material=material_id)
    return m


def version_of(db: Session, material: Material, version: int | None = None) -> MaterialVersion:
    v = db.scalar(
        select(MaterialVersion).where(
            MaterialVersion.material_id == material.id,
            MaterialVersion.version == (version or material.version),
        )
    )
    if v is None:
        raise NotFound("content.version_not_found", material=material.id, version=version)
    return v


def check_usable(material: Material, now: datetime | None = None) -> None:
    """Refuse to send an archived, expired or not-yet-valid material."""
    now = now or utcnow()
    if material.status != "active":
        raise Invalid("content.material_archived", material=material.id)
    if material.valid_until is not None and as_utc(material.valid_until) <= now:
        raise Invalid(
            "content.material_expired", material=material.id, until=material.valid_until.isoformat()
        )
    if material.valid_from is not None and as_utc(material.valid_from) > now:
        raise Invalid(
            "content.material_not_yet_valid",
            material=material.id,
            since=material.valid_from.isoformat(),
        )


def _dates(valid_from: datetime | None, valid_until: datetime | None) -> None:
    if valid_from and valid_until and valid_until <= valid_from:
        raise Invalid(
            "content.bad_validity",
            errors=[FieldError("content.bad_validity", "valid_until", reason="after valid_from")],
        )


def _tags(tags: list[str]) -> list[str]:
    return sorted({t.strip() for t in tags if t.strip()})[:20]


def create_material(db: Session, actor: Actor, brand: Brand, body: MaterialIn) -> Material:
    """A new material (version 1) after its platform limits and templates are checked."""
    _authorize(actor, brand)
    variables = validate_body(body.kind, body.body)
    check_fallbacks(body.fallbacks)
    _dates(body.valid_from, body.valid_until)
    agency = _agency_of(brand, body.library)
    with atomic(db):
        if body.folder_id is not None:
            folder = db.get(ContentFolder, body.folder_id)
            if folder is None or not _folder_mine(folder, brand):
                raise NotFound("content.folder_not_found", folder=body.folder_id)
        m = Material(
            id=new_id(),
            brand_id=brand.id,
            agency_id=agency,
            library=body.library,
            folder_id=body.folder_id,
            kind=body.kind,
            name=body.name,
            tags=_tags(body.tags),
            version=1,
            status="active",
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            created_by=actor.label,
        )
        db.add(m)
        db.flush()
        db.add(
            MaterialVersion(
                id=new_id(),
                material_id=m.id,
                brand_id=brand.id,
                version=1,
                body=body.body,
                variables=variables,
                fallbacks=dict(body.fallbacks),
                created_by=actor.label,
            )
        )
        record(
            db,
            actor,
            "content.material_create",
            "content_material",
            m.id,
            brand=brand,
            after={**snapshot(m), "body": body.body},
        )
    return m


def update_material(
    db: Session, actor: Actor, brand: Brand, material_id: str, body: MaterialPatch
) -> Material:
    """Edit a material; a changed body or fallbacks writes a new version."""
    _authorize(actor, brand)
    with atomic(db):
        m = _owned(db, brand, material_id)
        before = snapshot(m)
        current = version_of(db, m)
        new_body = body.body if body.body is not None else current.body
        new_fallbacks = body.fallbacks if body.fallbacks is not None else current.fallbacks
        if body.body is not None or body.fallbacks is not None:
            variables = validate_body(m.kind, new_body)
            check_fallbacks(new_fallbacks)
            if new_body != current.body or new_fallbacks != current.fallbacks:
                m.version += 1
                db.add(
                    MaterialVersion(
                        id=new_id(),
                        material_id=m.id,
                        brand_id=m.brand_id,
                        version=m.version,
                        body=new_body,
                        variables=variables,
                        fallbacks=dict(new_fallbacks),
                        note=body.note,
                        created_by=actor.label,
                    )
                )
        fields = body.model_dump(exclude_unset=True)
        if "name" in fields and body.name:
            m.name = body.name
        if "tags" in fields and body.tags is not None:
            m.tags = _tags(body.tags)
        if "folder_id" in fields:
            if body.folder_id is not None:
                folder = db.get(ContentFolder, body.folder_id)
                if folder is None or not _folder_mine(folder, brand):
                    raise NotFound("content.folder_not_found", folder=body.folder_id)
            m.folder_id = body.folder_id
        if "valid_from" in fields:
            m.valid_from = body.valid_from
        if "valid_until" in fields:
            m.valid_until = body.valid_until
        _dates(m.valid_from, m.valid_until)
        if body.status is not None:
            m.status = body.status
        m.updated_at = utcnow()
        db.flush()
        record(
            db,
            actor,
            "content.material_update",
            "content_material",
            m.id,
            brand=brand,
            before=before,
            after={**snapshot(m), "body": new_body},
        )
    return m


def import_materials(
    db: Session, actor: Actor, brand: Brand, rows: list[dict[str, Any]]
) -> ImportResult:
    """Create materials from rows (JSON objects shaped like :class:`MaterialIn`); a bad row
    is reported with its number and reason, the good ones are kept."""
    from pydantic import ValidationError

    from siyu.core.validation import field_errors

    _authorize(actor, brand)
    result = ImportResult()
    for i, raw in enumerate(rows, start=1):
        try:
            create_material(db, actor, brand, MaterialIn.model_validate(raw))
            result.created += 1
        except ValidationError as exc:
            result.errors.extend(e.as_dict() for e in field_errors(exc, i))
        except SiyuError as exc:
            errs = exc.errors or [FieldError(exc.code, reason=exc.message("en"))]
            for e in errs:
                result.errors.append({**e.as_dict(), "row": i})
    return result


# ---------------------------------------------------------------- links


def short_url(code: str) -> str:
    return f"/t/{code}"


def create_link(
    db: Session,
    actor: Actor,
    brand: Brand,
    body: LinkIn,
    *,
    sop_id: str | None = None,
    sent_at: datetime | None = None,
) -> TrackingLink:
    """A tracking link to an allowed target, with UTM parameters for the mall."""
    _authorize(actor, brand)
    settings = brand_settings(db, brand.id)
    L.safe_target(body.target_url, list(settings.allowed_domains or []))
    version = None
    if body.material_id is not None:
        m = material_for(db, brand, body.material_id)
        check_usable(m)
        version = m.version
    utm = {**DEFAULT_UTM, **(settings.utm or {}), **body.utm}
    if body.channel:
        utm.setdefault("utm_medium", body.channel)
    if body.campaign:
        utm["utm_campaign"] = body.campaign
    if body.material_id:
        utm["utm_content"] = f"{body.material_id}.v{version}" + (
            f".{body.variant}" if body.variant else ""
        )
    with atomic(db):
        for _attempt in range(5):
            link = TrackingLink(
                id=new_id(),
                brand_id=brand.id,
                code=L.new_code(),
                target_url=body.target_url,
                material_id=body.material_id,
                version=version,
                touch_id=body.touch_id,
                sop_id=sop_id,
                customer_id=body.customer_id,
                koc_note_id=body.koc_note_id,
                channel=body.channel,
                variant=body.variant,
                campaign=body.campaign,
                utm=utm,
                sent_at=sent_at,
                expires_at=body.expires_at,
                created_by=actor.label,
            )
            try:
                with db.begin_nested():
                    db.add(link)
                break
            except IntegrityError:  # a code collision (62^8): draw another
                continue
        else:  # pragma: no cover
            raise Invalid("content.link_code_exhausted")
        record(
            db,
            actor,
            "content.link_create",
            "content_link",
            link.id,
            brand=brand,
            after=snapshot(link),
        )
    return link


def signed_url(link: TrackingLink, customer_id: str, touch_id: str = "") -> str:
    """The link's URL naming one customer (and touch) in signed parameters."""
    query = L.signed_query(get_settings().secret_key, link.code, customer_id, touch_id)
    return f"{short_url(link.code)}?{query}"


@dataclass
class Click:
    """What the redirect does: ``target`` (None: refuse) and the click row written."""

    target: str | None
    click: LinkClick | None
    reason: str | None = None


def _ip_hash(ip: str | None) -> str | None:
    if not ip:
        return None
    return hashlib.sha256(get_settings().secret_key + ip.encode()).hexdigest()[:32]


def record_click(
    db: Session,
    code: str,
    *,
    method: str = "GET",
    user_agent: str | None = None,
    ip: str | None = None,
    params: dict[str, str] | None = None,
    now: datetime | None = None,
) -> Click:
    """A request to ``/t/{code}``: record it, queue a ``link_clicked`` event for real clicks,
    and say where to redirect. Bots, previews, HEAD requests and clicks within a second of
    the send are kept (``bot``) but not counted. The target is checked again against the
    brand's allowed domains (they may have changed since the link was made)."""
    now = now or utcnow()
    params = params or {}
    link = db.scalar(select(TrackingLink).where(TrackingLink.code == code))
    if link is None:
        return Click(None, None, "not_found")
    if link.expires_at is not None and as_utc(link.expires_at) <= now:
        return Click(None, None, "expired")
    settings = brand_settings(db, link.brand_id)
    try:
        L.safe_target(link.target_url, list(settings.allowed_domains or []))
    except Invalid:
        return Click(None, None, "redirect_refused")
    customer_id, touch_id = link.customer_id, link.touch_id
    c, t, s = params.get("c", ""), params.get("t", ""), params.get("s", "")
    if c and s and L.verify(get_settings().secret_key, link.code, c, t, s):
        customer_id = customer_id or c[:26]
        touch_id = touch_id or (t[:26] or None)
    sent_at = link.sent_at
    if sent_at is None and touch_id:
        from siyu.sop.models import Touch

        sent_at = db.scalar(
            select(Touch.send_at).where(Touch.brand_id == link.brand_id, Touch.id == touch_id)
        )
    reason = L.bot_reason(method, user_agent, now, as_utc(sent_at) if sent_at else None)
    target = L.with_utm(link.target_url, dict(link.utm or {}))
    event_id = f"click:{new_id()}"
    with atomic(db):
        click = LinkClick(
            id=new_id(),
            brand_id=link.brand_id,
            link_id=link.id,
            event_id=event_id,
            customer_id=customer_id,
            touch_id=touch_id,
            material_id=link.material_id,
            version=link.version,
            koc_note_id=link.koc_note_id,
            channel=link.channel,
            variant=link.variant,
            at=now,
            bot=reason is not None,
            reason=reason,
            user_agent=(user_agent or "")[:300] or None,
            ip_hash=_ip_hash(ip),
        )
        db.add(click)
    if reason is None:
        _queue_event(db, link, click)
    return Click(target, click, reason)


def _queue_event(db: Session, link: TrackingLink, click: LinkClick) -> None:
    """The click as a catalogue event (``link_clicked``) in the ingest inbox, so it reaches
    the lake with the customer's identity key when the worker flushes."""
    from siyu.customers.models import Identity
    from siyu.ingest import actions as ingest_actions

    brand = org_queries.find_brand(db, link.brand_id)
    if brand is None:  # pragma: no cover
        return
    identifiers: list[dict[str, str]] = []
    if click.customer_id:
        row = db.scalar(
            select(Identity)
            .where(
                Identity.brand_id == link.brand_id,
                Identity.customer_id == click.customer_id,
                Identity.id_type.in_(("external_userid", "unionid", "member_no", "mini_openid")),
                Identity.value.is_not(None),
            )
            .order_by(Identity.id_type)
            .limit(1)
        )
        if row is not None and row.value:
            identifiers.append({"type": row.id_type, "value": row.value})
    props = {
        "code": link.code,
        "link_id": link.id,
        "customer_id": click.customer_id,
        "touch_id": click.touch_id,
        "sop_id": link.sop_id,
        "content_id": link.material_id,
        "version": link.version,
        "variant": link.variant,
        "channel": link.channel,
        "koc_note_id": link.koc_note_id,
        "url": link.target_url[:1000],
    }
    raw = {
        "event_id": click.event_id,
        "event_type": "link_clicked",
        "occurred_at": as_utc(click.at).isoformat(),
        "identifiers": identifiers,
        "source": "siyu.links",
        "properties": {k: v for k, v in props.items() if v is not None},
    }
    try:
        ingest_actions.accept_event(db, SYSTEM, brand, raw)
    except SiyuError:  # an identifier the brand no longer accepts: keep the click anyway
        raw["identifiers"] = []
        ingest_actions.accept_event(db, SYSTEM, brand, raw)


# ---------------------------------------------------------------- SOP steps


def step_content(db: Session, brand: Brand, material_id: str) -> dict[str, Any]:
    """What a touch step carries for a material: its id, pinned version, kind, name and
    body (so the engine and the channels need not read the library)."""
    m = material_for(db, brand, material_id)
    check_usable(m)
    v = version_of(db, m)
    body = dict(v.body or {})
    out: dict[str, Any] = {
        "content_id": m.id,
        "version": m.version,
        "content_kind": m.kind,
        "name": m.name,
        "fallbacks": dict(v.fallbacks or {}),
    }
    for key in ("text", "title", "desc", "url", "appid", "page", "pic_url", "attachments"):
        if key in body:
            out[key] = body[key]
    return out


def set_step_content(
    db: Session, actor: Actor, brand: Brand, sop_key: str, body: StepContentIn
) -> Sop:
    """Put a material (or A/B/n variants of materials, with weights) on a touch step of an
    SOP; the versions current now are pinned."""
    from siyu.sop import actions as sop_actions
    from siyu.sop.schemas import SopPatch

    _authorize(actor, brand)
    sop = sop_actions.sop_by_key(db, brand, sop_key)
    steps = [dict(s) for s in sop.steps or []]
    if body.step >= len(steps) or steps[body.step].get("type") != "touch":
        raise Invalid("content.not_a_touch_step", sop=sop.key, step=body.step)
    if bool(body.material_id) == bool(body.variants):
        raise Invalid("content.bad_variants", reason="give one material or 2–5 variants")
    step = steps[body.step]
    if body.material_id:
        step["content"] = step_content(db, brand, body.material_id)
        step.pop("variants", None)
    else:
        if len(body.variants) < 2 or len({v.name for v in body.variants}) != len(body.variants):
            raise Invalid("content.bad_variants", reason="2–5 variants with distinct names")
        step["variants"] = [
            {"name": v.name, "weight": v.weight, "content": step_content(db, brand, v.material_id)}
            for v in body.variants
        ]
        step["content"] = dict(step["variants"][0]["content"])
    return sop_actions.update_sop(
        db, actor, brand, sop.key, SopPatch.model_validate({"steps": steps})
    )
