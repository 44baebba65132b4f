"""Tables of the tags domain: tag groups and tags (definitions and health), each customer's
tags, the tag history (entered / exited / changed), computation runs, segments and their
snapshots.

Tag kinds:

- ``rule``   — boolean rule in the tag language, computed on the analytics engine;
- ``value``  — one of several exclusive values in a group (RFM scores, lifecycle stage);
- ``model``  — a number from a value model (P(alive), expected purchases / spend, 365-day value);
- ``org``    — organisation tags: owner guide, home store (from the operational store);
- ``manual`` — set by staff, by hand (who and when are kept);
- ``wecom``  — WeCom corporate tags mirrored into the same groups (``external_id``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column

TAG_KINDS = ("rule", "value", "model", "org", "manual", "wecom")


class TagGroup(Base):
    """A shelf of the tag library. ``exclusive``: a customer holds at most one tag of it."""

    __tablename__ = "tag_groups"
    __table_args__ = (UniqueConstraint("brand_id", "key"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(12))
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(400))
    external_id: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # brand-set parameters of computed groups (RFM cut points, lifecycle days, value model
    # horizon) and what the last full run derived (fitted model, data-derived cut points)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = created_column()


class Tag(Base):
    """A tag definition and its health (last run, duration, count, error)."""

    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_tags_brand_group", "brand_id", "group_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    group_id: Mapped[str] = mapped_column(ForeignKey("tag_groups.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(12))
    description: Mapped[str | None] = mapped_column(String(400))
    # rule tags: the rule in text form (the JSON tree is derived from it, and back)
    rule: Mapped[str | None] = mapped_column(Text)
    # value / model / org tags: which computed quantity and value this tag stands for,
    # e.g. {"measure": "rfm_r", "value": "5"} or {"measure": "p_alive"}
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="active")  # active | paused
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    external_id: Mapped[str | None] = mapped_column(String(64))
    # bumped when the rule or spec changes: the next run recomputes it for everybody
    version: Mapped[int] = mapped_column(Integer, default=1)
    computed_version: Mapped[int] = mapped_column(Integer, default=0)
    stale_after_hours: Mapped[int] = mapped_column(Integer, default=26)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    last_run_at: Mapped[datetime | None] = mapped_column()
    last_ok_at: Mapped[datetime | None] = mapped_column()
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_count: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    last_error_at: Mapped[datetime | None] = mapped_column()


class CustomerTag(Base):
    """A customer holds a tag (with a value for value tags, a number for model tags)."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_brand_customer", "brand_id", "customer_id"),)

    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    value: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    since: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(12))  # rule | value | model | org | manual | wecom
    set_by: Mapped[str | None] = mapped_column(String(200))


class TagChange(Base):
    """Tag history: a customer entered, exited or changed the value of a tag (SOPs start on
    "entered tag X")."""

    __tablename__ = "tag_history"
    __table_args__ = (
        Index("ix_tag_history_brand_tag_at", "brand_id", "tag_id", "at"),
        Index("ix_tag_history_brand_customer", "brand_id", "customer_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id"))
    customer_id: Mapped[str] = mapped_column(String(26))
    change: Mapped[str] = mapped_column(String(8))  # entered | exited | changed
    value: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column()
    run_id: Mapped[str | None] = mapped_column(String(26))
    actor_label: Mapped[str | None] = mapped_column(String(200))


class TagRun(Base):
    """One computation: full or incremental, as of a time, with its watermark (facts
    received up to then are reflected)."""

    __tablename__ = "tag_runs"
    __table_args__ = (Index("ix_tag_runs_brand_started", "brand_id", "started_at"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    mode: Mapped[str] = mapped_column(String(12))  # full | incremental
    as_of: Mapped[datetime] = mapped_column()
    watermark: Mapped[datetime | None] = mapped_column()
    # ingests received shortly before the watermark that this run has seen
    recent_ingests: Mapped[list[str]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="running")  # running|ok|failed
    error: Mapped[str | None] = mapped_column(String(1000))
    customers: Mapped[int] = mapped_column(Integer, default=0)
    changes: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor_label: Mapped[str | None] = mapped_column(String(200))


class Segment(Base):
    """A boolean combination of tags and conditions (a segment definition)."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("brand_id", "key"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(400))
    definition: Mapped[str] = mapped_column(Text)
    last_count: Mapped[int | None] = mapped_column(Integer)
    last_counted_at: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()


class SegmentSnapshot(Base):
    """A segment's members frozen at a time (exports and audience packs come from one)."""

    __tablename__ = "segment_snapshots"
    __table_args__ = (Index("ix_segment_snapshots_segment", "segment_id", "taken_at"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id"))
    definition: Mapped[str] = mapped_column(Text)
    taken_at: Mapped[datetime] = mapped_column()
    count: Mapped[int] = mapped_column(Integer)
    customer_ids: Mapped[list[str]] = mapped_column(JSON)
    taken_by: Mapped[str | None] = mapped_column(String(200))
