"""Every write of the ingest domain: batches, single events into the inbox, the inbox flush,
file imports, saved mappings, custom event types, lake maintenance and erasure.

Each action checks permission (``events.write``), owns its transaction and leaves an audit
entry — per batch or import, not per event (the facts themselves are the record).

    out = ingest_batch(db, actor, brand, [{"event_id": "e1", "event_type": "page_viewed", …}])
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.analytics import lake
from siyu.core.audit import record, snapshot
from siyu.core.clock import utcnow
from siyu.core.db import atomic
from siyu.core.errors import Conflict, FieldError, Forbidden, Invalid
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM, Actor
from siyu.customers import queries as customer_queries
from siyu.ingest import files
from siyu.ingest.catalogue import STANDARD_TYPES
from siyu.ingest.filestage import Context, frame, stage_events
from siyu.ingest.mapping import Mapping, known_fields
from siyu.ingest.models import CustomEventType, InboxEvent, SourceMapping
from siyu.ingest.orderstage import stage_orders
from siyu.ingest.pipeline import commit
from siyu.ingest.registry import brand_registry
from siyu.ingest.schemas import (
    BatchOut,
    CustomEventIn,
    EventQueued,
    ImportOut,
    ItemError,
    ItemResult,
    MappingIn,
    Status,
)
from siyu.ingest.staging import ItemStager, Staged
from siyu.org import queries as org_queries
from siyu.org.permissions import authorize

if TYPE_CHECKING:
    from siyu.org.models import Brand


def _authorize(actor: Actor, brand: Brand, permission: str = "events.write") -> None:
    authorize(actor, permission, org_queries.brand_ref(brand))


def _stager(db: Session, brand: Brand, source: str) -> ItemStager:
    id_types = list(customer_queries.id_types(db, brand))
    return ItemStager(brand.id, brand_registry(db, brand.id), id_types, utcnow(), source)


def _audit(
    db: Session, actor: Actor, brand: Brand, action: str, entity: str | None, after: Any
) -> None:
    with atomic(db):
        record(
            db,
            actor,
            action,
            "ingest",
            entity,
            brand=brand,
            after=after,
        )


# ---------------------------------------------------------------- HTTP batches


def ingest_batch(
    db: Session, actor: Actor, brand: Brand, items: list[Any], *, source: str = "api"
) -> BatchOut:
    """Validate each item, store the good ones once, answer per item."""
    _authorize(actor, brand)
    stager = _stager(db, brand, source)
    for index, raw in enumerate(items):
        stager.add(index, raw)
    staged = stager.staged()
    ingest_id = new_id()
    result = commit(db, actor, brand, staged, ingest_id=ingest_id)
    outcome = result.status()
    by_item: dict[int, list[FieldError]] = defaultdict(list)
    for err in staged.errors:
        by_item[err.row if err.row is not None else -1].append(err)
    results = []
    for index, raw in enumerate(items):
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        if index in by_item:
            errors = [
                ItemError(field=e.field, code=e.code, reason=e.reason) for e in by_item[index]
            ]
            results.append(
                ItemResult(index=index, event_id=event_id, status="rejected", errors=errors)
            )
        else:
            status: Status = outcome.get(index, "rejected")
            # our own values, already of the right types: no validation per item
            results.append(
                ItemResult.model_construct(index=index, event_id=event_id, status=status, errors=[])
            )
    rejected = len(items) - result.accepted - result.duplicates
    out = BatchOut(
        ingest_id=ingest_id,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=rejected,
        results=results,
    )
    _audit(
        db,
        actor,
        brand,
        "events.batch",
        ingest_id,
        {"accepted": out.accepted, "duplicates": out.duplicates, "rejected": rejected},
    )
    return out


# ---------------------------------------------------------------- real time: the inbox


def accept_event(db: Session, actor: Actor, brand: Brand, raw: dict[str, Any]) -> EventQueued:
    """Validate one event now and queue it for the worker (``siyu worker``)."""
    _authorize(actor, brand)
    stager = _stager(db, brand, "api")
    event_id = stager.add(0, raw)
    if event_id is None:
        raise Invalid("validation.failed", errors=stager.errors)
    with atomic(db):
        exists = db.scalar(
            select(InboxEvent.id).where(
                InboxEvent.brand_id == brand.id, InboxEvent.event_id == event_id
            )
        )
        if exists:
            return EventQueued(event_id=event_id, status="duplicate")
        try:
            with db.begin_nested():
                db.add(
                    InboxEvent(
                        brand_id=brand.id,
                        event_id=event_id,
                        payload=raw,
                        actor_kind=actor.kind,
                        actor_id=actor.id,
                    )
                )
        except IntegrityError:  # the same event raced in from another request
            return EventQueued(event_id=event_id, status="duplicate")
    return EventQueued(event_id=event_id, status="queued")


def flush_inbox(db: Session, limit: int = 5000) -> int:
    """Move up to ``limit`` queued events to the lake; returns how many were handled.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers
    share the queue without taking the same row; SQLite runs one worker. The rows are
    deleted in the same transaction that claimed them, after the lake append: a crash in
    between leaves them queued, and the next flush appends them again, which the lake's
    dedup by event id turns into nothing.
    """
    with atomic(db):
        stmt = (
            select(InboxEvent)
            .where(InboxEvent.status == "pending")
            .order_by(InboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list(db.scalars(stmt))
        if not rows:
            return 0
        by_brand: dict[str, list[InboxEvent]] = defaultdict(list)
        for row in rows:
            by_brand[row.brand_id].append(row)
        for brand_id, group in by_brand.items():
            brand = org_queries.find_brand(db, brand_id)
            if brand is None:
                continue
            stager = _stager(db, brand, "api")
            for index, row in enumerate(group):
                stager.add(index, row.payload)
            staged = stager.staged()
            ingest_id = new_id()
            result = commit(db, SYSTEM, brand, staged, ingest_id=ingest_id, skip_known=False)
            failed = {e.row: e for e in staged.errors if e.row is not None}
            done = [r.id for i, r in enumerate(group) if i not in failed]
            for index, err in failed.items():
                # Valid at intake, invalid now (e.g. a custom type was redeclared): keep the
                # row for inspection instead of retrying it forever.
                group[index].status = "rejected"
                group[index].error = f"{err.code}: {err.reason}"
            if done:
                db.execute(delete(InboxEvent).where(InboxEvent.id.in_(done)))
            record(
                db,
                SYSTEM,
                "events.flush",
                "ingest",
                ingest_id,
                brand=brand,
                after={
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "rejected": len(failed),
                },
            )
    return len(rows)


# ---------------------------------------------------------------- files


def _mapping(
    db: Session,
    actor: Actor,
    brand: Brand,
    source: str,
    kind: str,
    given: dict[str, Any] | None,
    save: bool,
) -> Mapping:
    if given is not None:
        data = MappingIn.model_validate({**given, "source": source, "kind": kind})
        if save:
            save_mapping(db, actor, brand, data)
        return Mapping.from_dict(data.model_dump())
    saved = db.scalar(
        select(SourceMapping).where(
            SourceMapping.brand_id == brand.id, SourceMapping.source == source
        )
    )
    return Mapping.from_dict(saved.mapping) if saved else Mapping()


def import_file(
    db: Session,
    actor: Actor,
    brand: Brand,
    path: Path,
    *,
    kind: str,
    source: str | None = None,
    mapping: dict[str, Any] | None = None,
    dry_run: bool = False,
    data: bytes | None = None,
) -> ImportOut:
    """Import a CSV/XLSX/JSONL file of events, orders or customers into OneID and the lake.

    ``mapping`` (file header → field …) is used and saved for ``source``; without it the
    source's saved mapping applies. Re-importing a file adds nothing.
    """
    _authorize(actor, brand)
    if kind not in ("events", "orders", "customers"):
        raise Invalid("ingest.bad_kind", kind=kind)
    started = time.perf_counter()
    src = source or "import"
    fmt = files.file_format(path)
    if data is None:
        if not path.exists():
            raise Invalid("import.missing_file", path=str(path))
        data = path.read_bytes()
    chosen = _mapping(db, actor, brand, src, kind, mapping, save=not dry_run and source is not None)
    if fmt == "jsonl":
        staged = _stage_jsonl(db, brand, data, src)
    else:
        raw = files.read_table(path, data)
        registry = brand_registry(db, brand.id)
        id_types = list(customer_queries.id_types(db, brand))
        ctx = Context(brand.id, brand.timezone, registry, id_types, src, kind, utcnow())
        fr = frame(raw, chosen, ctx, known_fields(registry, id_types))
        staged = stage_orders(fr, ctx) if kind == "orders" else stage_events(fr, ctx)
    staging = time.perf_counter() - started
    ingest_id = new_id()
    result = commit(db, actor, brand, staged, ingest_id=ingest_id, dry_run=dry_run)
    out = ImportOut(
        ingest_id=ingest_id,
        file=str(path),
        kind=kind,
        source=src,
        total=staged.total,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=len(staged.rejected_rows),
        dry_run=dry_run,
        seconds=round(time.perf_counter() - started, 3),
        phases={"read_and_check": round(staging, 3), **result.seconds},
        ignored_columns=staged.ignored_columns,
        errors=[e.as_dict() | {"line": e.row} for e in staged.errors],
    )
    if not dry_run:
        _audit(
            db,
            actor,
            brand,
            "events.import",
            ingest_id,
            {
                "file": path.name,
                "kind": kind,
                "source": src,
                "total": out.total,
                "accepted": out.accepted,
                "duplicates": out.duplicates,
                "rejected": out.rejected,
            },
        )
    return out


def _stage_jsonl(db: Session, brand: Brand, data: bytes, source: str) -> Staged:
    items, errors = files.jsonl_items(data)
    stager = _stager(db, brand, source)
    for line, raw in items:
        stager.add(line, raw)
    stager.errors.extend(errors)
    stager.total += len(errors)
    return stager.staged()


def save_mapping(db: Session, actor: Actor, brand: Brand, data: MappingIn) -> SourceMapping:
    _authorize(actor, brand)
    with atomic(db):
        row = db.scalar(
            select(SourceMapping).where(
                SourceMapping.brand_id == brand.id, SourceMapping.source == data.source
            )
        )
        before = snapshot(row) if row else None
        body = {"columns": data.columns, "values": data.values, "defaults": data.defaults}
        if row is None:
            row = SourceMapping(brand_id=brand.id, source=data.source, kind=data.kind, mapping=body)
            db.add(row)
        else:
            row.kind, row.mapping, row.updated_at = data.kind, body, utcnow()
        db.flush()
        record(
            db,
            actor,
            "ingest.mapping_save",
            "source_mapping",
            row.id,
            brand=brand,
            before=before,
            after=snapshot(row),
        )
    return row


def declare_event_type(
    db: Session, actor: Actor, brand: Brand, data: CustomEventIn
) -> CustomEventType:
    """A brand's own event type; a changed schema is declared as a new version."""
    _authorize(actor, brand)
    if data.event_type in STANDARD_TYPES:
        raise Conflict("ingest.standard_event_type", event_type=data.event_type)
    with atomic(db):
        exists = db.scalar(
            select(CustomEventType.id).where(
                CustomEventType.brand_id == brand.id,
                CustomEventType.event_type == data.event_type,
                CustomEventType.version == data.version,
            )
        )
        if exists:
            raise Conflict(
                "ingest.event_type_exists", event_type=data.event_type, version=data.version
            )
        row = CustomEventType(
            brand_id=brand.id,
            event_type=data.event_type,
            version=data.version,
            description=data.description,
            fields=[f.model_dump(exclude_none=True) for f in data.fields],
        )
        db.add(row)
        db.flush()
        record(
            db,
            actor,
            "ingest.event_type_declare",
            "custom_event_type",
            row.id,
            brand=brand,
            after=snapshot(row),
        )
    return row


# ---------------------------------------------------------------- lake maintenance


def erase_identities(
    db: Session, actor: Actor, brand: Brand, identity_keys: list[str]
) -> dict[str, int]:
    """Delete an identity's facts from the lake (PIPL deletion) and audit it."""
    _authorize(actor, brand, "customers.write")
    try:
        deleted = lake.erase(brand.id, identity_keys)
    except ValueError as exc:
        raise Invalid("ingest.bad_identity_key", reason=str(exc)) from exc
    _audit(
        db,
        actor,
        brand,
        "lake.erase",
        None,
        {"identities": len(set(identity_keys)), "deleted": deleted},
    )
    return deleted


def compact_lake(
    db: Session, actor: Actor, brand: Brand | None, retention_hours: int = 168
) -> dict[str, dict[str, int]]:
    if brand is None:
        if not actor.superadmin:
            raise Forbidden("auth.permission_denied", permission="lake.compact")
        return lake.compact(None, retention_hours)
    _authorize(actor, brand)
    out = lake.compact(brand.id, retention_hours)
    _audit(db, actor, brand, "lake.compact", None, out)
    return out
