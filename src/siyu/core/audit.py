"""Audit log: who did what, when, with the before and after state, for every write.

Actions call :func:`record` inside their transaction, so an entry exists exactly when the
change it describes was committed.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from siyu.core.db import Base, created_column, id_column
from siyu.core.tenancy import Actor


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_brand_at", "brand_id", "at"),)

    id: Mapped[str] = id_column()
    at: Mapped[datetime] = created_column()
    agency_id: Mapped[str | None] = mapped_column(String(26))
    brand_id: Mapped[str | None] = mapped_column(String(26))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_label: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


SECRET_FIELDS = frozenset({"password_hash", "key_hash", "token_hash"})


def snapshot(obj: Any, exclude: frozenset[str] = SECRET_FIELDS) -> dict[str, Any]:
    """Column values of an ORM object, JSON-safe, secrets left out."""
    table = obj.__table__
    return {c.key: _plain(getattr(obj, c.key)) for c in table.columns if c.key not in exclude}


def record(
    db: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str | None,
    *,
    brand_id: str | None = None,
    agency_id: str | None = None,
    brand: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry; ``brand`` (any object with ``id`` and ``agency_id``) fills both
    tenancy columns at once."""
    if brand is not None:
        brand_id, agency_id = brand.id, brand.agency_id
    entry = AuditEntry(
        agency_id=agency_id,
        brand_id=brand_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=_plain(before) if before is not None else None,
        after=_plain(after) if after is not None else None,
    )
    db.add(entry)
    return entry
