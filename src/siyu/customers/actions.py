"""Every write to customer data: observing identities (OneID), manual merge and split,
review decisions, consent, owners and profile facts, revealing PII.

    results = observe_batch(db, actor, brand, [ObservationIn(...), ...])
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import as_utc, utcnow
from siyu.core.db import atomic, bulk_insert, table_of
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.ids import new_id
from siyu.core.tenancy import Actor
from siyu.customers import oneid, vault
from siyu.customers.identifiers import TypeConfig, type_config
from siyu.customers.models import (
    Consent,
    Customer,
    CustomerOwner,
    Identity,
    Observation,
    ObservationMember,
    Review,
)
from siyu.customers.queries import access_customer
from siyu.customers.schemas import ObservationIn, ObserveResult
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.org.models import Brand


def observe_batch(
    db: Session, actor: Actor, brand: Brand, observations: list[ObservationIn]
) -> list[ObserveResult]:
    """Resolve a batch of observations into customers (incremental OneID), in one
    transaction, and record the profile facts, owners and consents they carry.

    Raises ``Invalid('customers.bad_identifiers')`` naming each malformed identifier by
    item index (``row``) before writing anything; callers that want to keep the good items
    validate with :func:`oneid.parse_observations` first.
    """
    _authorize_write(actor, brand)
    cfg = type_config(db, brand.id)
    parsed, errors = oneid.parse_observations(brand.id, cfg, observations)
    oneid.raise_for(errors)
    return _resolve(db, actor, brand, cfg, parsed)


def observe_hashed(
    db: Session,
    actor: Actor,
    brand: Brand,
    items: list[tuple[ObservationIn, list[tuple[str, str, str]]]],
) -> list[ObserveResult]:
    """:func:`observe_batch` for observations whose identifiers are already normalised and
    hashed: ``(observation, [(type, normalised value, match hash), …])``. The observation's
    own ``identifiers`` are not read (the ingest pipeline builds it without them)."""
    _authorize_write(actor, brand)
    cfg = type_config(db, brand.id)
    parsed = [oneid.prepare(cfg, item, hashed) for item, hashed in items]
    return _resolve(db, actor, brand, cfg, parsed)


def _resolve(
    db: Session, actor: Actor, brand: Brand, cfg: TypeConfig, parsed: list[oneid.Parsed]
) -> list[ObserveResult]:
    with atomic(db):
        resolver = oneid.Resolver(db=db, brand_id=brand.id, actor=actor, cfg=cfg)
        results = resolver.observe(parsed)
        _apply_facts(db, brand, parsed, results)
    return results


def _authorize_write(actor: Actor, brand: Brand) -> None:
    ref = org_queries.brand_ref(brand)
    if actor.kind == "api_key" and "events.write" in actor.api_scopes:
        authorize(actor, "events.write", ref)
    else:
        authorize(actor, "customers.write", ref)


def _apply_facts(
    db: Session, brand: Brand, parsed: list[oneid.Parsed], results: list[ObserveResult]
) -> None:
    """Profiles (latest observation wins per field), owners, home stores, consents."""
    profile: dict[str, dict[str, Any]] = defaultdict(dict)
    owners: dict[tuple[str, str], tuple[datetime, str]] = {}
    units: dict[str, str] = {}
    wecom_ids = {p.item.owner_wecom_userid for p in parsed if p.item.owner_wecom_userid}
    unit_codes = {p.item.unit_code for p in parsed if p.item.unit_code}
    staff_of = org_queries.staff_by_wecom(db, brand, wecom_ids)
    unit_of = org_queries.unit_ids_by_code(db, brand, unit_codes)
    consents: list[dict[str, Any]] = []
    cfg_keys = vault.keys()
    for p, result in sorted(zip(parsed, results, strict=True), key=lambda x: x[0].observed_at):
        cid = result.customer_id
        if cid is None:
            continue
        item = p.item
        if item.profile is not None:
            facts = item.profile.model_dump(exclude_none=True, exclude={"attributes"})
            if item.profile.name:
                facts["name_enc"] = vault.encrypt(item.profile.name, cfg_keys)
                facts["name_masked"] = vault.mask("name", item.profile.name)
                del facts["name"]
            profile[cid].update(facts)
            if item.profile.attributes:
                profile[cid].setdefault("attributes", {}).update(item.profile.attributes)
        if item.owner_wecom_userid and item.owner_wecom_userid in staff_of:
            owners[(cid, staff_of[item.owner_wecom_userid])] = (p.observed_at, item.source)
        if item.unit_code and item.unit_code in unit_of:
            units[cid] = unit_of[item.unit_code]
        for consent in item.consents:
            norm = vault.normalise(consent.identifier.type, consent.identifier.value)
            h = vault.match_hash(brand.id, consent.identifier.type, norm, cfg_keys)
            consents.append(
                {
                    "hash": h,
                    "type": consent.identifier.type,
                    "purpose": consent.purpose,
                    "granted": consent.granted,
                    "at": as_utc(consent.at) if consent.at else p.observed_at,
                    "source": consent.source or item.source,
                }
            )
    _write_profiles(db, profile)
    _write_owners(db, brand, owners, units)
    _write_consents(db, brand, consents)


def _write_profiles(db: Session, profile: dict[str, dict[str, Any]]) -> None:
    """One executemany per distinct set of fields (an import usually has one or two)."""
    c = table_of(Customer)
    with_attrs = sorted(cid for cid, f in profile.items() if f.get("attributes"))
    current: dict[str, dict[str, Any]] = {}
    for part in oneid.chunks(with_attrs):
        current.update(db.execute(select(c.c.id, c.c.attributes).where(c.c.id.in_(part))).all())
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for cid, facts in profile.items():
        if facts.get("attributes"):
            facts["attributes"] = {**(current.get(cid) or {}), **facts["attributes"]}
        if facts:
            groups[tuple(sorted(facts))].append({"p_id": cid, **facts})
    for fields, rows in groups.items():
        db.execute(
            update(c).where(c.c.id == bindparam("p_id")).values({f: bindparam(f) for f in fields}),
            rows,
        )


def _write_owners(
    db: Session,
    brand: Brand,
    owners: dict[tuple[str, str], tuple[datetime, str]],
    units: dict[str, str],
) -> None:
    """Owners and home stores of a batch in a few executemany statements."""
    c, o = table_of(Customer), table_of(CustomerOwner)
    if owners:
        existing: set[tuple[str, str]] = set()
        for part in oneid.chunks(sorted({cid for cid, _ in owners})):
            existing |= {
                (a, b)
                for a, b in db.execute(
                    select(o.c.customer_id, o.c.staff_id).where(o.c.customer_id.in_(part))
                )
            }
        again = [{"p_c": cid, "p_s": sid} for (cid, sid) in owners if (cid, sid) in existing]
        if again:
            db.execute(
                update(o)
                .where(o.c.customer_id == bindparam("p_c"), o.c.staff_id == bindparam("p_s"))
                .values(until=None),
                again,
            )
        bulk_insert(
            db,
            o,
            [
                {
                    "customer_id": cid,
                    "staff_id": sid,
                    "brand_id": brand.id,
                    "since": since,
                    "until": None,
                    "source": source,
                }
                for (cid, sid), (since, source) in owners.items()
                if (cid, sid) not in existing
            ],
        )
        # the first guide becomes the owner; later ones serve alongside
        first: dict[str, str] = {}
        for (cid, sid), _ in sorted(owners.items(), key=lambda kv: kv[1][0]):
            first.setdefault(cid, sid)
        db.execute(
            update(c)
            .where(c.c.id == bindparam("p_c"), c.c.owner_staff_id.is_(None))
            .values(owner_staff_id=bindparam("p_s")),
            [{"p_c": cid, "p_s": sid} for cid, sid in first.items()],
        )
    if units:
        db.execute(
            update(c).where(c.c.id == bindparam("p_c")).values(home_unit_id=bindparam("p_u")),
            [{"p_c": cid, "p_u": uid} for cid, uid in units.items()],
        )


def _write_consents(db: Session, brand: Brand, consents: list[dict[str, Any]]) -> None:
    if not consents:
        return
    pairs = {(c["type"], c["hash"]) for c in consents}
    ids = {
        h: iid
        for h, iid in oneid.identities_by_key(
            db, brand.id, pairs, (Identity.value_hash, Identity.id)
        )
    }
    for c in consents:
        identity_id = ids.get(c["hash"])
        if identity_id is None:
            raise Invalid("customers.consent_identifier_unknown", type=c["type"])
        db.add(
            Consent(
                brand_id=brand.id,
                identity_id=identity_id,
                purpose=c["purpose"],
                granted=c["granted"],
                at=c["at"],
                source=c["source"],
            )
        )


# ---------------------------------------------------------------- operators' decisions


def merge_customers(
    db: Session, actor: Actor, brand: Brand, customer_ids: list[str], note: str | None = None
) -> Customer:
    """Merge customers by hand: a forced observation joining one identity of each."""
    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    if len(set(customer_ids)) < 2:
        raise Invalid("customers.merge_needs_two")
    with atomic(db):
        customers = [access_customer(db, actor, brand, c, "customers.merge") for c in customer_ids]
        anchors = []
        for customer in customers:
            anchor = db.scalar(
                select(Identity.id)
                .where(Identity.customer_id == customer.id, Identity.weak.is_(False))
                .order_by(Identity.id)
                .limit(1)
            )
            if anchor is None:
                raise Invalid("customers.no_identity", customer=customer.id)
            anchors.append(anchor)
        obs = _manual_observation(db, brand, anchors, "forced", actor, note)
        _recompute(db, actor, brand, set(anchors))
        record(
            db,
            actor,
            "customer.merge",
            "customer",
            customers[0].id,
            brand=brand,
            after={"customers": [c.id for c in customers], "observation": obs},
        )
        survivor = access_customer(db, actor, brand, customers[0].id)
    return survivor


def split_customer(
    db: Session,
    actor: Actor,
    brand: Brand,
    customer_id: str,
    identity_ids: list[str],
    note: str | None = None,
) -> tuple[Customer, Customer]:
    """Move ``identity_ids`` out of the customer into a customer of their own.

    Every observation that linked the two sides is rejected (kept as evidence), and the
    component is recomputed: events follow their identities, consents stay with theirs.
    """
    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    with atomic(db):
        customer = access_customer(db, actor, brand, customer_id, "customers.merge")
        mine = set(
            db.scalars(
                select(Identity.id).where(
                    Identity.customer_id == customer.id, Identity.weak.is_(False)
                )
            )
        )
        moving = set(identity_ids)
        if not moving or not moving <= mine or moving == mine:
            raise Invalid("customers.bad_split")
        staying = mine - moving
        crossing = [
            o
            for o in oneid.load_obs(db, _observations_of(db, mine))
            if set(o.members) & moving and set(o.members) & staying
        ]
        if crossing:
            db.execute(
                update(Observation)
                .where(Observation.id.in_([o.id for o in crossing]))
                .values(status="rejected", manual=True, note=note or "split by operator")
            )
        _recompute(db, actor, brand, mine)
        db.expire_all()
        moved_to = db.scalar(select(Identity.customer_id).where(Identity.id == min(moving)))
        stayed_in = db.scalar(select(Identity.customer_id).where(Identity.id == min(staying)))
        if moved_to is None or stayed_in is None or moved_to == stayed_in:
            raise Conflict("customers.split_relinked")
        record(
            db,
            actor,
            "customer.split",
            "customer",
            customer.id,
            brand=brand,
            after={
                "moved": sorted(moving),
                "to": moved_to,
                "stayed_in": stayed_in,
                "rejected_observations": [o.id for o in crossing],
            },
        )
        a = access_customer(db, actor, brand, stayed_in)
        b = access_customer(db, actor, brand, moved_to)
    return a, b


def decide_review(
    db: Session,
    actor: Actor,
    brand: Brand,
    review_id: str,
    approve: bool,
    note: str | None = None,
) -> Review:
    """Approve (merge despite the conflict) or reject (keep apart for good) a queued merge."""
    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    with atomic(db):
        review = db.scalar(
            select(Review).where(Review.id == review_id, Review.brand_id == brand.id)
        )
        if review is None:
            raise NotFound("customers.review_not_found", review=review_id)
        if review.status != "open":
            raise Conflict("customers.review_closed", status=review.status)
        before = {"status": review.status}
        db.execute(
            update(Observation)
            .where(Observation.id == review.observation_id)
            .values(status="forced" if approve else "rejected", manual=True, note=note)
        )
        review.status = "approved" if approve else "rejected"
        review.decided_by = actor.label
        review.decided_at = utcnow()
        review.note = note
        members = set(
            db.scalars(
                select(ObservationMember.identity_id).where(
                    ObservationMember.observation_id == review.observation_id,
                    ObservationMember.weak.is_(False),
                )
            )
        )
        _recompute(db, actor, brand, members)
        record(
            db,
            actor,
            "oneid.review",
            "oneid_review",
            review.id,
            brand=brand,
            before=before,
            after={"status": review.status, "note": note},
        )
    return review


def reveal(db: Session, actor: Actor, brand: Brand, customer_id: str, field: str) -> str:
    """Decrypt a customer's phone, email or name for someone allowed to see it; audited."""
    authorize(actor, "customers.reveal", org_queries.brand_ref(brand))
    if field not in ("phone", "email", "name"):
        raise Invalid("customers.bad_reveal_field", field=field)
    with atomic(db):
        customer = access_customer(db, actor, brand, customer_id, "customers.reveal")
        if field == "name":
            token = customer.name_enc
        else:
            token = db.scalar(
                select(Identity.value_enc)
                .where(Identity.customer_id == customer.id, Identity.id_type == field)
                .order_by(Identity.last_seen_at.desc())
                .limit(1)
            )
        if not token:
            raise NotFound("customers.field_empty", field=field)
        value = vault.decrypt(token)
        record(
            db,
            actor,
            "customer.reveal",
            "customer",
            customer.id,
            brand=brand,
            after={"field": field},
        )
    return value


def run_full(db: Session, actor: Actor, brand: Brand) -> dict[str, int]:
    """Recompute every component of the brand from its observations (the full run)."""
    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    from siyu.customers.oneid_full import full_resolution

    with atomic(db):
        stats = full_resolution(db, brand.id, type_config(db, brand.id), actor)
        record(
            db,
            actor,
            "oneid.full_run",
            "brand",
            brand.id,
            brand=brand,
            after=dict(stats),
        )
    return stats


# ---------------------------------------------------------------- helpers


def _observations_of(db: Session, identity_ids: set[str]) -> set[str]:
    out: set[str] = set()
    for part in oneid.chunks(sorted(identity_ids)):
        out |= set(
            db.scalars(
                select(ObservationMember.observation_id).where(
                    ObservationMember.identity_id.in_(part), ObservationMember.weak.is_(False)
                )
            )
        )
    return out


def _manual_observation(
    db: Session,
    brand: Brand,
    identity_ids: list[str],
    status: str,
    actor: Actor,
    note: str | None,
) -> str:
    keys = db.execute(
        select(Identity.id_type, Identity.value_hash).where(Identity.id.in_(identity_ids))
    ).all()
    sh = oneid.set_hash([(t, h) for t, h in keys])
    existing = db.scalar(
        select(Observation).where(Observation.brand_id == brand.id, Observation.set_hash == sh)
    )
    now = utcnow()
    if existing is not None:
        existing.status = status
        existing.manual = True
        existing.note = note
        return existing.id
    oid = new_id()
    db.add(
        Observation(
            id=oid,
            brand_id=brand.id,
            set_hash=sh,
            source=f"manual:{actor.label}"[:80],
            ref=None,
            observed_at=now,
            last_seen_at=now,
            seen_count=1,
            status=status,
            manual=True,
            note=note,
        )
    )
    db.flush()
    db.add_all(
        ObservationMember(observation_id=oid, identity_id=i, weak=False) for i in identity_ids
    )
    db.flush()
    return oid


def _recompute(db: Session, actor: Actor, brand: Brand, seeds: set[str]) -> None:
    db.flush()
    oneid.recompute_component(db, brand.id, type_config(db, brand.id), seeds, actor)
    db.flush()


def set_identifier_type(
    db: Session,
    actor: Actor,
    brand: Brand,
    id_type: str,
    *,
    strong: bool | None = None,
    unique: bool | None = None,
    priority: int | None = None,
    enabled: bool | None = None,
) -> dict[str, Any]:
    """Change how OneID treats an identifier type in one brand (strength, uniqueness,
    priority, or switch a custom type on). Takes effect for evidence resolved from now on;
    run the full recompute to apply it to what is already stored."""
    from siyu.customers.identifiers import DEFAULTS
    from siyu.customers.models import IdentifierTypeSetting

    authorize(actor, "customers.merge", org_queries.brand_ref(brand))
    if not (1 <= len(id_type) <= 24) or not id_type.replace("_", "").isalnum():
        raise Invalid("customers.bad_identifier_type", type=id_type)
    with atomic(db):
        row = db.scalar(
            select(IdentifierTypeSetting).where(
                IdentifierTypeSetting.brand_id == brand.id, IdentifierTypeSetting.id_type == id_type
            )
        )
        base = DEFAULTS.get(id_type)
        before = None
        if row is None:
            row = IdentifierTypeSetting(
                brand_id=brand.id,
                id_type=id_type,
                strong=base.strong if base else True,
                unique=base.unique if base else False,
                priority=base.priority if base else 100,
                enabled=True,
            )
            db.add(row)
        else:
            before = {
                "strong": row.strong,
                "unique": row.unique,
                "priority": row.priority,
                "enabled": row.enabled,
            }
        if strong is not None:
            row.strong = strong
        if unique is not None:
            row.unique = unique
        if priority is not None:
            row.priority = priority
        if enabled is not None:
            row.enabled = enabled
        after = {
            "strong": row.strong,
            "unique": row.unique,
            "priority": row.priority,
            "enabled": row.enabled,
        }
        db.flush()
        record(
            db,
            actor,
            "oneid.identifier_type",
            "identifier_type",
            id_type,
            brand=brand,
            before=before,
            after=after,
        )
    return {"type": id_type, **after}
