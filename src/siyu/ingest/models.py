"""Tables of the ingest domain in the operational store.

- :class:`CustomEventType`: a brand's own event schema (a field list), versioned.
- :class:`SourceMapping`: how a source's files map to canonical fields, saved per brand.
- :class:`InboxEvent`: single real-time events waiting for ``siyu worker`` to move them to
  the lake (the lake prefers batches; the HTTP caller gets its 202 at once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column


class CustomEventType(Base):
    __tablename__ = "custom_event_types"
    __table_args__ = (UniqueConstraint("brand_id", "event_type", "version"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    description: Mapped[str] = mapped_column(String(400), default="")
    # [{"name", "type", "required", "max_length", "min", "max", "enum"}, …]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = created_column()


class SourceMapping(Base):
    __tablename__ = "source_mappings"
    __table_args__ = (UniqueConstraint("brand_id", "source"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), index=True)
    source: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))
    # {"columns": {file header: canonical}, "values": {...}, "defaults": {...}}
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()


class InboxEvent(Base):
    """One accepted real-time event. Deleted once it is in the lake; ``rejected`` rows stay
    for inspection (their schema changed between intake and flush)."""

    __tablename__ = "ingest_inbox"
    __table_args__ = (
        UniqueConstraint("brand_id", "event_id"),
        Index("ix_ingest_inbox_status_id", "status", "id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    event_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = created_column()
    error: Mapped[str | None] = mapped_column(Text)
