"""Reads of the ingest domain, always through the tenant funnel.

:func:`open_facts` is how brand code reads the lake: it checks the actor may read the
brand's customer data, then hands out an analytics engine whose tables are that brand's.

    with open_facts(db, actor, "a-coffee") as facts:
        events = facts.table("events")
        facts.execute(events.count())
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.analytics import lake
from siyu.analytics.engine import Engine, connect
from siyu.core.tenancy import Actor
from siyu.ingest.catalogue import catalogue_rows, describe_fields
from siyu.ingest.models import CustomEventType, InboxEvent, SourceMapping
from siyu.ingest.registry import custom_model
from siyu.org.models import Brand
from siyu.org.queries import access_brand


@dataclass
class BrandFacts:
    brand: Brand
    engine: Engine

    def table(self, name: str) -> Any:
        return self.engine.table(name, self.brand.id)

    def execute(self, expr: Any) -> Any:
        return self.engine.execute(expr)


@contextmanager
def open_facts(db: Session, actor: Actor, ref: str, engine: str = "duckdb") -> Iterator[BrandFacts]:
    brand = access_brand(db, actor, ref, "customers.read")
    with connect(engine) as eng:
        yield BrandFacts(brand, eng)


def list_mappings(db: Session, actor: Actor, brand: Brand) -> list[SourceMapping]:
    access_brand(db, actor, brand.id, "events.write")
    stmt = select(SourceMapping).where(SourceMapping.brand_id == brand.id)
    return list(db.scalars(stmt.order_by(SourceMapping.source)))


def list_event_types(db: Session, actor: Actor, brand: Brand) -> list[CustomEventType]:
    access_brand(db, actor, brand.id, "org.read")
    stmt = select(CustomEventType).where(CustomEventType.brand_id == brand.id)
    return list(db.scalars(stmt.order_by(CustomEventType.event_type, CustomEventType.version)))


def catalogue(db: Session | None = None, brand: Brand | None = None) -> list[dict[str, Any]]:
    """The standard catalogue, plus a brand's own types when given (already authorised)."""
    rows = catalogue_rows()
    if db is not None and brand is not None:
        stmt = select(CustomEventType).where(CustomEventType.brand_id == brand.id)
        for row in db.scalars(stmt):
            model = custom_model(row.event_type, row.version, row.fields)
            rows.append(
                {
                    "event_type": row.event_type,
                    "version": row.version,
                    "description": row.description or "custom",
                    "needs_identity": True,
                    "fields": describe_fields(model),
                    "custom": True,
                }
            )
    return rows


def inbox_counts(db: Session) -> dict[str, int]:
    stmt = select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
    return {status: int(n) for status, n in db.execute(stmt)}


def lake_stats(db: Session, actor: Actor, brand: Brand) -> dict[str, dict[str, int]]:
    access_brand(db, actor, brand.id, "customers.read")
    return lake.stats(brand.id)
