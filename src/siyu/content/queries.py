"""Reads of the content domain through the tenant funnel: the library (the brand's materials
and its agency's shared ones) with search, versions, folders, settings, a template preview
against a real customer (PII masked), links with their clicks, performance per material
(best and worst, optionally within a segment) and A/B/n results of an SOP touch step.

Library reads need ``org.read``; anything naming or measuring customers ``customers.read``,
and a named customer passes ``customers.queries.access_customer`` (the actor's data scope).

    page = list_materials(db, actor, brand, q="新品", kind="text")
    out = preview(db, actor, brand, PreviewIn(material_id=m.id, customer_id=c.id))
    table = variant_results(db, actor, brand, "dormant_winback", step=0, metric="click")
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from siyu.content import templating, variants
from siyu.content.actions import (
    READ,
    brand_settings,
    material_for,
    readable,
    short_url,
    version_of,
)
from siyu.content.materials import TEXT_BYTES, nbytes
from siyu.content.models import ContentFolder, LinkClick, Material, MaterialVersion, TrackingLink
from siyu.content.performance import Send, attribute, sends
from siyu.content.schemas import (
    ClickOut,
    FolderOut,
    LinkOut,
    MaterialOut,
    PerformanceOut,
    PerformanceRow,
    PreviewIn,
    PreviewOut,
    SettingsOut,
    VariantResults,
    VariantRow,
    VersionOut,
)
from siyu.core.clock import as_utc, local_today, utcnow
from siyu.core.errors import Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.customers import vault
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.customers.models import Customer
    from siyu.org.models import Brand

CUSTOMERS = "customers.read"
METRICS = ("reply", "click", "order", "gmv")
MAX_WINDOW_DAYS = 90


def _authorize(actor: Actor, brand: Brand, permission: str = READ) -> None:
    authorize(actor, permission, org_queries.brand_ref(brand))


def _valid_now(m: Material, now: datetime) -> bool:
    if m.status != "active":
        return False
    if m.valid_until is not None and as_utc(m.valid_until) <= now:
        return False
    return not (m.valid_from is not None and as_utc(m.valid_from) > now)


def material_out(m: Material, v: MaterialVersion, brand: Brand) -> MaterialOut:
    return MaterialOut(
        id=m.id,
        kind=m.kind,
        name=m.name,
        library=m.library,
        folder_id=m.folder_id,
        tags=list(m.tags or []),
        version=m.version,
        status=m.status,
        valid_from=m.valid_from,
        valid_until=m.valid_until,
        valid_now=_valid_now(m, utcnow()),
        body=dict(v.body or {}),
        variables=list(v.variables or []),
        fallbacks=dict(v.fallbacks or {}),
        owner_brand=m.brand_id == brand.id,
        created_by=m.created_by,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def _library(brand: Brand) -> Any:
    own = Material.brand_id == brand.id
    if brand.agency_id is None:
        return own
    return or_(own, (Material.library == "agency") & (Material.agency_id == brand.agency_id))


def list_materials(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    q: str = "",
    kind: str | None = None,
    tag: str | None = None,
    folder_id: str | None = None,
    library: str | None = None,
    status: str | None = "active",
    limit: int = 200,
) -> list[MaterialOut]:
    """The library: own and agency-shared materials, newest first, filtered."""
    _authorize(actor, brand)
    stmt = select(Material).where(_library(brand))
    if q:
        stmt = stmt.where(Material.name.contains(q.strip()))
    if kind:
        stmt = stmt.where(Material.kind == kind)
    if folder_id:
        stmt = stmt.where(Material.folder_id == folder_id)
    if library:
        stmt = stmt.where(Material.library == library)
    if status:
        stmt = stmt.where(Material.status == status)
    rows = list(db.scalars(stmt.order_by(Material.id.desc()).limit(max(1, min(limit, 1000)))))
    if tag:
        rows = [m for m in rows if tag in (m.tags or [])]
    versions = _current_versions(db, rows)
    return [material_out(m, versions[m.id], brand) for m in rows if m.id in versions]


def _current_versions(db: Session, rows: list[Material]) -> dict[str, MaterialVersion]:
    if not rows:
        return {}
    want = {(m.id, m.version) for m in rows}
    out: dict[str, MaterialVersion] = {}
    ids = [m.id for m in rows]
    for start in range(0, len(ids), 500):
        for v in db.scalars(
            select(MaterialVersion).where(MaterialVersion.material_id.in_(ids[start : start + 500]))
        ):
            if (v.material_id, v.version) in want:
                out[v.material_id] = v
    return out


def get_material(db: Session, actor: Actor, brand: Brand, material_id: str) -> MaterialOut:
    _authorize(actor, brand)
    m = material_for(db, brand, material_id)
    return material_out(m, version_of(db, m), brand)


def versions(db: Session, actor: Actor, brand: Brand, material_id: str) -> list[VersionOut]:
    """Every version of a material, newest first."""
    _authorize(actor, brand)
    m = material_for(db, brand, material_id)
    rows = db.scalars(
        select(MaterialVersion)
        .where(MaterialVersion.material_id == m.id)
        .order_by(MaterialVersion.version.desc())
    )
    return [
        VersionOut(
            version=v.version,
            body=dict(v.body or {}),
            variables=list(v.variables or []),
            fallbacks=dict(v.fallbacks or {}),
            note=v.note,
            created_by=v.created_by,
            created_at=v.created_at,
        )
        for v in rows
    ]


def list_folders(db: Session, actor: Actor, brand: Brand) -> list[FolderOut]:
    _authorize(actor, brand)
    cond = ContentFolder.brand_id == brand.id
    if brand.agency_id is not None:
        cond = or_(cond, ContentFolder.agency_id == brand.agency_id)
    rows = db.scalars(select(ContentFolder).where(cond).order_by(ContentFolder.name))
    return [
        FolderOut(
            id=f.id,
            name=f.name,
            parent_id=f.parent_id,
            library="agency" if f.agency_id else "brand",
        )
        for f in rows
    ]


def get_settings(db: Session, actor: Actor, brand: Brand) -> SettingsOut:
    _authorize(actor, brand)
    row = brand_settings(db, brand.id)
    return SettingsOut(allowed_domains=list(row.allowed_domains or []), utm=dict(row.utm or {}))


# ---------------------------------------------------------------- personalisation


def customer_values(
    db: Session, brand: Brand, customer: Customer, *, masked: bool = True
) -> dict[str, Any]:
    """Template values for one customer (nickname masked unless ``masked=False``, for the
    channels that deliver the message)."""
    from siyu.org.models import OrgUnit

    attrs = dict(customer.attributes or {})
    guide = None
    if customer.owner_staff_id:
        guide = org_queries.staff_names(db, {customer.owner_staff_id}).get(customer.owner_staff_id)
    store = city = None
    if customer.home_unit_id:
        unit = db.get(OrgUnit, customer.home_unit_id)
        if unit is not None and unit.brand_id == brand.id:
            store, city = unit.name, unit.city
    nickname = customer.nickname
    return {
        "nickname": vault.mask("name", nickname) if masked and nickname else nickname,
        "guide_name": guide,
        "store": store,
        "store_city": city,
        "city": customer.city,
        "member_tier": attrs.get("level") or attrs.get("member_tier"),
        "points": attrs.get("points"),
        "brand": brand.name,
        "today": local_today(brand.timezone).isoformat(),
    }


def preview(db: Session, actor: Actor, brand: Brand, body: PreviewIn) -> PreviewOut:
    """Render a template (given text, or a material's text) for a real customer the actor
    may see, with masked PII; unknown variables or forbidden constructs are refused."""
    _authorize(actor, brand)
    fallbacks = dict(body.fallbacks)
    if body.material_id:
        m = material_for(db, brand, body.material_id)
        v = version_of(db, m)
        source = (
            body.text
            if body.text is not None
            else str((v.body or {}).get("text") or (v.body or {}).get("title") or "")
        )
        fallbacks = {**dict(v.fallbacks or {}), **fallbacks}
    elif body.text is not None:
        source = body.text
    else:
        raise Invalid("content.preview_needs_text")
    values: dict[str, Any] = {"brand": brand.name, "link": "/t/preview"}
    customer_id = None
    if body.customer_id:
        customer = customer_queries.access_customer(db, actor, brand, body.customer_id)
        values |= customer_values(db, brand, customer, masked=True)
        customer_id = customer.id
    values |= {k: v for k, v in body.values.items() if k in templating.VARIABLES}
    text = templating.render(source, values, fallbacks)
    shown = {k: v for k, v in values.items() if v not in (None, "")}
    return PreviewOut(
        text=text, bytes=nbytes(text), limit=TEXT_BYTES, customer_id=customer_id, values=shown
    )


def render_content(
    db: Session,
    brand: Brand,
    content: dict[str, Any],
    customer_id: str | None,
    *,
    link: str | None = None,
    values: dict[str, Any] | None = None,
    masked: bool = False,
) -> dict[str, Any]:
    """A touch's content (as SOP steps and outbox payloads carry it) with its templates —
    ``text``, link ``title`` and ``desc`` — rendered for one customer, the step's fallbacks
    applied. For the channels that deliver it and for test sends; no permission check (the
    caller has passed the funnel). An archived or expired material is refused."""
    from siyu.customers.models import Customer

    mid = content.get("content_id")
    if isinstance(mid, str) and mid:
        from siyu.content.actions import check_usable

        m = db.get(Material, mid)
        if m is not None and readable(m, brand):
            check_usable(m)
    given: dict[str, Any] = {"brand": brand.name, "link": link}
    if customer_id:
        customer = db.get(Customer, customer_id)
        if customer is not None and customer.brand_id == brand.id:
            given |= customer_values(db, brand, customer, masked=masked)
    given |= {k: v for k, v in (values or {}).items() if k in templating.VARIABLES}
    fallbacks = dict(content.get("fallbacks") or {})
    out = dict(content)
    for key in ("text", "title", "desc"):
        value = content.get(key)
        if isinstance(value, str) and value:
            out[key] = templating.render(value, given, fallbacks)
    return out


# ---------------------------------------------------------------- links


def _link_out(link: TrackingLink, clicks: int = 0) -> LinkOut:
    return LinkOut(
        id=link.id,
        code=link.code,
        short_url=short_url(link.code),
        target_url=link.target_url,
        material_id=link.material_id,
        version=link.version,
        touch_id=link.touch_id,
        customer_id=link.customer_id,
        koc_note_id=link.koc_note_id,
        channel=link.channel,
        variant=link.variant,
        campaign=link.campaign,
        created_at=link.created_at,
        clicks=clicks,
    )


def click_counts(db: Session, brand_id: str, link_ids: list[str]) -> dict[str, int]:
    """Counted (not bot) clicks per link."""
    if not link_ids:
        return {}
    rows = db.execute(
        select(LinkClick.link_id, func.count())
        .where(
            LinkClick.brand_id == brand_id,
            LinkClick.link_id.in_(link_ids),
            LinkClick.bot.is_(False),
        )
        .group_by(LinkClick.link_id)
    )
    return {lid: int(n) for lid, n in rows}


def list_links(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    material_id: str | None = None,
    koc_note_id: str | None = None,
    limit: int = 200,
) -> list[LinkOut]:
    _authorize(actor, brand)
    stmt = select(TrackingLink).where(TrackingLink.brand_id == brand.id)
    if material_id:
        stmt = stmt.where(TrackingLink.material_id == material_id)
    if koc_note_id:
        stmt = stmt.where(TrackingLink.koc_note_id == koc_note_id)
    rows = list(db.scalars(stmt.order_by(TrackingLink.id.desc()).limit(max(1, min(limit, 1000)))))
    counts = click_counts(db, brand.id, [r.id for r in rows])
    return [_link_out(r, counts.get(r.id, 0)) for r in rows]


def get_link(db: Session, actor: Actor, brand: Brand, code: str) -> LinkOut:
    _authorize(actor, brand)
    link = db.scalar(
        select(TrackingLink).where(TrackingLink.brand_id == brand.id, TrackingLink.code == code)
    )
    if link is None:
        raise NotFound("content.link_not_found", code=code)
    return _link_out(link, click_counts(db, brand.id, [link.id]).get(link.id, 0))


def clicks(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    code: str | None = None,
    include_bots: bool = False,
    limit: int = 200,
) -> list[ClickOut]:
    """Recent clicks (customers named only within the actor's data scope)."""
    _authorize(actor, brand, CUSTOMERS)
    stmt = select(LinkClick).where(LinkClick.brand_id == brand.id)
    if code:
        link = db.scalar(
            select(TrackingLink).where(TrackingLink.brand_id == brand.id, TrackingLink.code == code)
        )
        if link is None:
            raise NotFound("content.link_not_found", code=code)
        stmt = stmt.where(LinkClick.link_id == link.id)
    if not include_bots:
        stmt = stmt.where(LinkClick.bot.is_(False))
    rows = list(db.scalars(stmt.order_by(LinkClick.at.desc()).limit(max(1, min(limit, 1000)))))
    named = {r.customer_id for r in rows if r.customer_id}
    visible = set(customer_queries.rows_by_id(db, actor, brand, sorted(named))) if named else set()
    return [
        ClickOut(
            id=r.id,
            link_id=r.link_id,
            customer_id=r.customer_id if r.customer_id in visible else None,
            touch_id=r.touch_id,
            material_id=r.material_id,
            variant=r.variant,
            channel=r.channel,
            at=r.at,
            bot=r.bot,
            reason=r.reason,
        )
        for r in rows
    ]


# ---------------------------------------------------------------- performance


def _period(days: int, window_days: int, now: datetime | None) -> tuple[datetime, datetime]:
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise Invalid("content.bad_window", window=window_days, max=MAX_WINDOW_DAYS)
    if not 1 <= days <= 366:
        raise Invalid("content.bad_window", window=days, max=366)
    now = now or utcnow()
    return now - timedelta(days=days), now + timedelta(seconds=1)


def _segment_members(db: Session, actor: Actor, brand: Brand, segment: str) -> set[str]:
    from siyu.tags import segments

    seg = segments.segment_by_key(db, brand, segment)
    return set(segments.evaluate(db, actor, brand, seg.definition).customer_ids)


def performance(
    db: Session,
    actor: Actor,
    brand: Brand,
    *,
    days: int = 30,
    window_days: int = 7,
    segment: str | None = None,
    now: datetime | None = None,
    top: int = 3,
) -> PerformanceOut:
    """Per material sent in the last ``days``: sends, delivered, replies, clicks, orders and
    GMV (fen) within ``window_days`` of each send; best and worst by order rate then click
    rate (materials with at least 10 sends)."""
    _authorize(actor, brand, CUSTOMERS)
    since, until = _period(days, window_days, now)
    members = _segment_members(db, actor, brand, segment) if segment else None
    rows = [s for s in sends(db, brand.id, since, until, customer_ids=members) if s.content_id]
    attribute(db, brand, rows, window_days)
    by_material: dict[str, list[Send]] = defaultdict(list)
    for s in rows:
        by_material[str(s.content_id)].append(s)
    mats = {
        m.id: m
        for m in db.scalars(select(Material).where(Material.id.in_(sorted(by_material))))
        if readable(m, brand)
    }
    out = []
    for mid, group in sorted(by_material.items()):
        m = mats.get(mid)
        if m is None:
            continue
        n = len(group)
        clicks_n = sum(s.clicked for s in group)
        ordered = sum(s.orders > 0 for s in group)
        out.append(
            PerformanceRow(
                material_id=mid,
                name=m.name,
                kind=m.kind,
                sends=n,
                delivered=sum(s.delivered for s in group),
                replies=sum(s.replied for s in group),
                clicks=clicks_n,
                orders=sum(s.orders for s in group),
                gmv_fen=sum(s.gmv_fen for s in group),
                click_rate=clicks_n / n if n else 0.0,
                order_rate=ordered / n if n else 0.0,
            )
        )
    out.sort(key=lambda r: (-r.gmv_fen, -r.sends, r.material_id))
    ranked = sorted(
        (r for r in out if r.sends >= 10), key=lambda r: (r.order_rate, r.click_rate, r.gmv_fen)
    )
    k = min(top, len(ranked) // 2) if len(ranked) > 1 else len(ranked)
    best = [r.material_id for r in reversed(ranked[-k:])] if k else []
    worst = [r.material_id for r in ranked[:k] if r.material_id not in best]
    return PerformanceOut(
        window_days=window_days, segment=segment, rows=out, best=best, worst=worst
    )


def variant_results(
    db: Session,
    actor: Actor,
    brand: Brand,
    sop_key: str,
    step: int,
    *,
    metric: str = "click",
    window_days: int = 7,
    days: int = 90,
    confidence: float = 0.95,
    now: datetime | None = None,
) -> VariantResults:
    """The A/B/n results of a touch step: per variant customers, successes (a customer with
    at least one reply/click/order within the window) or GMV per customer, with lift,
    confidence interval and p-value against the control (the first variant)."""
    from siyu.sop import actions as sop_actions

    _authorize(actor, brand, CUSTOMERS)
    if metric not in METRICS:
        raise Invalid("content.bad_metric", metric=metric, known=", ".join(METRICS))
    if not 0.5 <= confidence < 1:
        raise Invalid("content.bad_confidence", confidence=confidence)
    sop = sop_actions.sop_by_key(db, brand, sop_key)
    steps = list(sop.steps or [])
    if not 0 <= step < len(steps):
        raise Invalid("content.not_a_touch_step", sop=sop.key, step=step)
    since, until = _period(days, window_days, now)
    rows = [s for s in sends(db, brand.id, since, until, sop_id=sop.id, step=step) if s.variant]
    attribute(db, brand, rows, window_days, lake=metric in ("reply", "order", "gmv"))
    order = [str(v["name"]) for v in steps[step].get("variants") or []]
    for s in rows:
        if s.variant not in order:
            order.append(str(s.variant))
    per: dict[str, dict[str, Send]] = defaultdict(dict)
    for s in sorted(rows, key=lambda s: s.at):
        seen = per[str(s.variant)].get(s.customer_id)
        if seen is None:
            per[str(s.variant)][s.customer_id] = Send(**{**s.__dict__})
        else:  # a customer sent the step twice (re-entry): one unit, outcomes combined
            seen.replied |= s.replied
            seen.clicked |= s.clicked
            seen.orders += s.orders
            seen.gmv_fen += s.gmv_fen

    def success(s: Send) -> bool:
        return {"reply": s.replied, "click": s.clicked}.get(metric, s.orders > 0)

    table: list[VariantRow] = []
    control: list[Send] = []
    for i, name in enumerate(order):
        group = list(per.get(name, {}).values())
        if i == 0:
            control = group
        n, k = len(group), sum(success(s) for s in group)
        gmv = sum(s.gmv_fen for s in group)
        row = VariantRow(
            variant=name,
            control=i == 0,
            customers=n,
            successes=k,
            rate=k / n if n else 0.0,
            gmv_fen=gmv,
            gmv_per_customer_fen=gmv / n if n else 0.0,
        )
        if i > 0:
            if metric == "gmv":
                cmp = variants.welch(
                    [float(s.gmv_fen) for s in group],
                    [float(s.gmv_fen) for s in control],
                    confidence,
                )
                row.t = cmp.stat
            else:
                k0 = sum(success(s) for s in control)
                cmp = variants.two_proportion(k, n, k0, len(control), confidence)
                row.z = cmp.stat
            row.diff, row.lift, row.p_value = cmp.diff, cmp.lift, cmp.p_value
            row.ci_low, row.ci_high = cmp.ci_low, cmp.ci_high
            row.significant = cmp.p_value is not None and cmp.p_value < 1 - confidence
        table.append(row)
    return VariantResults(
        sop=sop.key,
        step=step,
        metric=metric,
        window_days=window_days,
        confidence=confidence,
        test="welch_t" if metric == "gmv" else "two_proportion_z",
        rows=table,
    )
