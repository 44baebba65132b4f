"""Tables of the customers domain: customers, identities, observations (OneID evidence),
reviews, consents, owners, and the OneID log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column


class Customer(Base):
    """One person as the brand knows them. ``status=merged`` rows point at the survivor."""

    __tablename__ = "customers"
    __table_args__ = (Index("ix_customers_brand_status", "brand_id", "status"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    status: Mapped[str] = mapped_column(String(12), default="active")
    merged_into: Mapped[str | None] = mapped_column(String(26))
    # True while the customer's OneID component holds blocked or forced observations: any new
    # observation touching it is resolved by recomputing the component, not by a fast union.
    conflicted: Mapped[bool] = mapped_column(Boolean, default=False)
    name_enc: Mapped[str | None] = mapped_column(String(400))
    name_masked: Mapped[str | None] = mapped_column(String(100))
    nickname: Mapped[str | None] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(8))
    birthday: Mapped[date | None] = mapped_column(Date)
    city: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner_staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"), index=True)
    home_unit_id: Mapped[str | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    first_seen_at: Mapped[datetime | None] = mapped_column()
    last_seen_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_column()


class Identity(Base):
    """One identifier value of a brand (a phone, a unionid, …), matched by keyed hash.

    PII values (phone, email) are stored encrypted only; others in plain text, because
    connectors need them (an external_userid is what WeCom's API takes). Weak identifiers
    (device ids) have no customer: they are tied to customers through observations.
    """

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("brand_id", "id_type", "value_hash"),
        Index("ix_identities_brand_customer", "brand_id", "customer_id"),
        Index("ix_identities_brand_value", "brand_id", "value"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    id_type: Mapped[str] = mapped_column(String(24))
    value_hash: Mapped[str] = mapped_column(String(32))
    value: Mapped[str | None] = mapped_column(String(256))
    value_enc: Mapped[str | None] = mapped_column(String(600))
    masked: Mapped[str] = mapped_column(String(64))
    weak: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(80))
    first_seen_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()


class Observation(Base):
    """Evidence: one source record said these identities are one person.

    Identical identity sets are stored once (``set_hash``), keeping the earliest time, so the
    evidence — and the resolution computed from it — does not depend on arrival order.
    ``status``: applied / blocked (would join two values of a unique type; queued for
    review) / forced (an operator merged) / rejected (an operator split) / weak_only.
    """

    __tablename__ = "observations"
    __table_args__ = (UniqueConstraint("brand_id", "set_hash"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    set_hash: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(80))
    ref: Mapped[str | None] = mapped_column(String(200))
    observed_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    seen_count: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(12))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(400))
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ObservationMember(Base):
    __tablename__ = "observation_members"
    __table_args__ = (Index("ix_observation_members_identity", "identity_id"),)

    observation_id: Mapped[str] = mapped_column(
        ForeignKey("observations.id", ondelete="CASCADE"), primary_key=True
    )
    identity_id: Mapped[str] = mapped_column(ForeignKey("identities.id"), primary_key=True)
    weak: Mapped[bool] = mapped_column(Boolean, default=False)


class Review(Base):
    """A merge OneID refused to make on its own, waiting for an operator."""

    __tablename__ = "oneid_reviews"
    __table_args__ = (Index("ix_oneid_reviews_brand_status", "brand_id", "status"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    observation_id: Mapped[str] = mapped_column(ForeignKey("observations.id"))
    kind: Mapped[str] = mapped_column(String(24))
    id_types: Mapped[list[str]] = mapped_column(JSON)
    customer_ids: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="open")
    created_at: Mapped[datetime] = created_column()
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(String(400))


class OneIdLog(Base):
    """Every merge and split, with the observations that caused it (the evidence)."""

    __tablename__ = "oneid_log"
    __table_args__ = (Index("ix_oneid_log_brand_at", "brand_id", "at"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    at: Mapped[datetime] = created_column()
    kind: Mapped[str] = mapped_column(String(24))
    customer_ids: Mapped[list[str]] = mapped_column(JSON)
    result_ids: Mapped[list[str]] = mapped_column(JSON)
    observation_ids: Mapped[list[str]] = mapped_column(JSON)
    actor_label: Mapped[str] = mapped_column(String(200))


class Consent(Base):
    """Consent given through one identity; it never moves to another identity or person."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_identity", "identity_id", "purpose"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    identity_id: Mapped[str] = mapped_column(ForeignKey("identities.id"))
    purpose: Mapped[str] = mapped_column(String(40))
    granted: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column()
    source: Mapped[str | None] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = created_column()


class CustomerOwner(Base):
    """A staff member serving the customer (a guide who added them on WeCom, say)."""

    __tablename__ = "customer_owners"

    customer_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), primary_key=True)
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), index=True)
    since: Mapped[datetime] = mapped_column()
    until: Mapped[datetime | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(80))


class IdentifierTypeSetting(Base):
    """A brand's override of an identifier type's strength, uniqueness and priority."""

    __tablename__ = "identifier_types"
    __table_args__ = (UniqueConstraint("brand_id", "id_type"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    id_type: Mapped[str] = mapped_column(String(24))
    strong: Mapped[bool] = mapped_column(Boolean, default=True)
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
