"""Segments: boolean combinations of tags and conditions, counted live, snapshotted,
previewed with masked PII and exported (CSV, XLSX, an ad-platform audience pack).

A definition is a rule of the tag language in which every tag of the brand is also a boolean
profile column named ``tag_<key>``::

    tag_rfm_important_value and not tag_lifecycle_churned and city = "上海"
    tag_repeat_buyer or count(coupon_redeemed, last 30d) >= 1

Counts, previews and snapshots see only the customers the actor may see (data scope).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.core.audit import record
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, Invalid, NotFound
from siyu.core.tenancy import Actor
from siyu.customers import queries as customer_queries
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize, unit_filter
from siyu.tags import lang, library, rules
from siyu.tags.lang.ast import Field as RuleField
from siyu.tags.models import CustomerTag, Segment, SegmentSnapshot, Tag
from siyu.tags.schemas import PreviewRow, SegmentIn, SegmentPatch

if TYPE_CHECKING:
    import pyarrow as pa

    from siyu.org.models import Brand

TAG_PREFIX = "tag_"
EXPORT_FORMATS = ("csv", "xlsx", "audience")


@dataclasses.dataclass
class Evaluated:
    text: str
    customer_ids: list[str]


def _tag_keys(db: Session, brand: Brand) -> list[str]:
    return list(
        db.scalars(
            select(Tag.key).where(Tag.brand_id == brand.id, Tag.status.in_(["active", "paused"]))
        )
    )


def _catalogue(db: Session, brand: Brand) -> Any:
    library.ensure(db, brand)
    return rules.catalogue(db, brand, {TAG_PREFIX + k: "bool" for k in _tag_keys(db, brand)})


def _fields(node: Any) -> set[str]:
    """Names of every ``Field`` in a rule tree."""
    out: set[str] = set()
    if isinstance(node, RuleField):
        out.add(node.name)
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if dataclasses.is_dataclass(item):
                    out |= _fields(item)
    return out


def check(db: Session, brand: Brand, definition: str) -> str:
    """The canonical text of a definition; ``Invalid`` with the position and reason."""
    return str(lang.to_text(lang.check_rule(definition, _catalogue(db, brand)).tree))


def _visible(db: Session, actor: Actor, brand: Brand) -> list[str] | None:
    """Customer ids the actor may see, or None for all of the brand's."""
    from siyu.customers.models import Customer

    if unit_filter(actor, org_queries.brand_ref(brand)).all:
        return None
    flt = customer_queries.scope_filter(db, actor, brand)
    stmt = select(Customer.id).where(
        Customer.brand_id == brand.id, Customer.status == "active", flt
    )
    return sorted(db.scalars(stmt))


def _customers(db: Session, brand: Brand, ids: list[str] | None, tags: list[str]) -> pa.Table:
    """Profile columns plus one boolean column per referenced tag."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = rules.customers_table(db, brand.id, ids)
    for key in tags:
        holders = list(
            db.scalars(
                select(CustomerTag.customer_id)
                .join(Tag, Tag.id == CustomerTag.tag_id)
                .where(Tag.brand_id == brand.id, Tag.key == key)
            )
        )
        column = pc.is_in(table.column("customer_id"), value_set=pa.array(holders, pa.string()))
        table = table.append_column(TAG_PREFIX + key, column)
    return table


def evaluate(
    db: Session, actor: Actor, brand: Brand, definition: str, as_of: datetime | None = None
) -> Evaluated:
    """Members of a definition among the customers the actor may see (sorted ids)."""
    from siyu.analytics.engine import connect

    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    cat = _catalogue(db, brand)
    checked = lang.check_rule(definition, cat)
    keys = set(_tag_keys(db, brand))
    tags = sorted(
        n[len(TAG_PREFIX) :]
        for n in _fields(checked.tree)
        if n.startswith(TAG_PREFIX) and n[len(TAG_PREFIX) :] in keys
    )
    ids = _visible(db, actor, brand)
    customers = _customers(db, brand, ids, tags)
    idmap = customer_queries.identity_map(db, brand.id, ids)
    with connect() as engine:
        facts = lang.facts_from_lake(engine, brand.id, idmap, customers)
        expr = lang.compile_rule(checked.text, cat, facts, as_of or utcnow(), brand.timezone)
        got = engine.execute(expr)
    return Evaluated(lang.to_text(checked.tree), sorted(got.column("customer_id").to_pylist()))


def count(db: Session, actor: Actor, brand: Brand, definition: str) -> int:
    """The live count while a definition is being edited."""
    return len(evaluate(db, actor, brand, definition).customer_ids)


# ---------------------------------------------------------------- stored segments


def segment_by_key(db: Session, brand: Brand, key: str) -> Segment:
    seg = db.scalar(select(Segment).where(Segment.brand_id == brand.id, Segment.key == key))
    if seg is None:
        raise NotFound("segments.not_found", segment=key)
    return seg


def list_segments(db: Session, actor: Actor, brand: Brand) -> list[Segment]:
    authorize(actor, "customers.read", org_queries.brand_ref(brand))
    return list(
        db.scalars(select(Segment).where(Segment.brand_id == brand.id).order_by(Segment.key))
    )


def create(db: Session, actor: Actor, brand: Brand, body: SegmentIn) -> Segment:
    authorize(actor, "tags.write", org_queries.brand_ref(brand))
    text = check(db, brand, body.definition)
    with atomic(db):
        if db.scalar(
            select(Segment.id).where(Segment.brand_id == brand.id, Segment.key == body.key)
        ):
            raise Conflict("segments.exists", segment=body.key)
        seg = Segment(
            brand_id=brand.id,
            key=body.key,
            name=body.name,
            description=body.description,
            definition=text,
            created_by=actor.label,
            updated_at=utcnow(),
        )
        db.add(seg)
        db.flush()
        record(
            db,
            actor,
            "segment.create",
            "segment",
            seg.id,
            brand=brand,
            after={"key": seg.key, "definition": text},
        )
    return seg


def update(db: Session, actor: Actor, brand: Brand, key: str, body: SegmentPatch) -> Segment:
    authorize(actor, "tags.write", org_queries.brand_ref(brand))
    seg = segment_by_key(db, brand, key)
    before = {"name": seg.name, "definition": seg.definition}
    with atomic(db):
        if body.definition is not None:
            seg.definition = check(db, brand, body.definition)
        if body.name is not None:
            seg.name = body.name
        if body.description is not None:
            seg.description = body.description
        seg.updated_at = utcnow()
        record(
            db,
            actor,
            "segment.update",
            "segment",
            seg.id,
            brand=brand,
            before=before,
            after={"name": seg.name, "definition": seg.definition},
        )
    return seg


def snapshot(db: Session, actor: Actor, brand: Brand, key: str) -> SegmentSnapshot:
    """Freeze the segment's members now (exports and audience packs come from a snapshot)."""
    authorize(actor, "tags.write", org_queries.brand_ref(brand))
    seg = segment_by_key(db, brand, key)
    got = evaluate(db, actor, brand, seg.definition)
    now = utcnow()
    with atomic(db):
        snap = SegmentSnapshot(
            brand_id=brand.id,
            segment_id=seg.id,
            definition=got.text,
            taken_at=now,
            count=len(got.customer_ids),
            customer_ids=got.customer_ids,
            taken_by=actor.label,
        )
        db.add(snap)
        seg.last_count = snap.count
        seg.last_counted_at = now
        db.flush()
        record(
            db,
            actor,
            "segment.snapshot",
            "segment",
            seg.id,
            brand=brand,
            after={"snapshot": snap.id, "count": snap.count},
        )
    return snap


def latest_snapshot(db: Session, brand: Brand, seg: Segment) -> SegmentSnapshot | None:
    return db.scalar(
        select(SegmentSnapshot)
        .where(SegmentSnapshot.segment_id == seg.id)
        .order_by(SegmentSnapshot.taken_at.desc())
        .limit(1)
    )


def preview(
    db: Session, actor: Actor, brand: Brand, definition: str, limit: int = 20
) -> tuple[int, list[PreviewRow]]:
    """(count, the first ``limit`` members with masked name and phone, city and tags)."""
    got = evaluate(db, actor, brand, definition)
    return len(got.customer_ids), _rows(db, brand, got.customer_ids[:limit])


def _rows(db: Session, brand: Brand, ids: list[str]) -> list[PreviewRow]:
    from siyu.customers.models import Customer, Identity

    out: list[PreviewRow] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        people = {c.id: c for c in db.scalars(select(Customer).where(Customer.id.in_(part)))}
        phones: dict[str, str] = {}
        for cid, masked in db.execute(
            select(Identity.customer_id, Identity.masked)
            .where(Identity.customer_id.in_(part), Identity.id_type == "phone")
            .order_by(Identity.id)
        ):
            if cid:
                phones.setdefault(cid, masked)
        tags: dict[str, list[str]] = {}
        for cid, key in db.execute(
            select(CustomerTag.customer_id, Tag.key)
            .join(Tag, Tag.id == CustomerTag.tag_id)
            .where(CustomerTag.customer_id.in_(part))
            .order_by(Tag.key)
        ):
            tags.setdefault(cid, []).append(key)
        for cid in part:
            c = people.get(cid)
            out.append(
                PreviewRow(
                    customer_id=cid,
                    name=c.name_masked if c else None,
                    phone=phones.get(cid),
                    city=c.city if c else None,
                    tags=tags.get(cid, []),
                )
            )
    return out


def export(db: Session, actor: Actor, brand: Brand, key: str, fmt: str) -> tuple[str, bytes, str]:
    """(file name, bytes, media type) of the segment's latest snapshot (taken now if none).

    ``csv`` / ``xlsx``: customer id, masked name and phone, city, tags. ``audience``: one row
    per customer with a phone — MD5 and SHA-256 of the normalised 11-digit mobile number, the
    format Tencent, ByteDance (Ocean Engine) and Alibaba audience uploads take. Every export
    is audited with its row count."""
    if fmt not in EXPORT_FORMATS:
        raise Invalid("segments.bad_format", format=fmt, known=", ".join(EXPORT_FORMATS))
    authorize(actor, "segments.export", org_queries.brand_ref(brand))
    seg = segment_by_key(db, brand, key)
    snap = latest_snapshot(db, brand, seg) or snapshot(db, actor, brand, key)
    ids = list(snap.customer_ids)
    stamp = snap.taken_at.strftime("%Y%m%d-%H%M")
    if fmt == "audience":
        hashed = _audience(db, brand, ids)
        body = "md5,sha256\n" + "".join(f"{m},{s}\n" for m, s in hashed)
        name, data, media = f"{seg.key}-audience-{stamp}.csv", body.encode(), "text/csv"
        rows = len(hashed)
    else:
        table = _rows(db, brand, ids)
        header = ["customer_id", "name", "phone", "city", "tags"]
        values = [
            [r.customer_id, r.name or "", r.phone or "", r.city or "", " ".join(r.tags)]
            for r in table
        ]
        rows = len(values)
        if fmt == "csv":
            buf = io.StringIO(newline="")
            w = csv.writer(buf)
            w.writerow(header)
            w.writerows(values)
            # UTF-8 with BOM: what Excel in China opens without garbling
            name, data, media = (
                f"{seg.key}-{stamp}.csv",
                buf.getvalue().encode("utf-8-sig"),
                "text/csv",
            )
        else:
            name, data = f"{seg.key}-{stamp}.xlsx", _xlsx(header, values)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    with atomic(db):
        record(
            db,
            actor,
            "segment.export",
            "segment",
            seg.id,
            brand=brand,
            after={"format": fmt, "rows": rows, "snapshot": snap.id},
        )
    return name, data, media


def _xlsx(header: list[str], values: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("segment")
    ws.append(header)
    for row in values:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _audience(db: Session, brand: Brand, ids: list[str]) -> list[tuple[str, str]]:
    """(md5, sha256) of each member's normalised mobile number (one per customer: the
    earliest phone identity), sorted; customers without a phone are left out."""
    from siyu.customers import vault
    from siyu.customers.models import Identity

    keys = vault.keys()
    chosen: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for cid, enc in db.execute(
            select(Identity.customer_id, Identity.value_enc)
            .where(
                Identity.brand_id == brand.id,
                Identity.customer_id.in_(part),
                Identity.id_type == "phone",
            )
            .order_by(Identity.first_seen_at, Identity.id)
        ):
            if not cid or cid in chosen or not enc:
                continue
            phone = vault.normalise("phone", vault.decrypt(enc, keys))
            if len(phone) == 11 and phone.startswith("1"):
                chosen[cid] = phone
    out = [
        (
            hashlib.md5(p.encode(), usedforsecurity=False).hexdigest(),
            hashlib.sha256(p.encode()).hexdigest(),
        )
        for p in chosen.values()
    ]
    return sorted(out)
