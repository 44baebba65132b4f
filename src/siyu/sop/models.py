"""Tables of the SOP engine: the brand's breathing policy, SOP definitions, enrolments (each
customer's place in an SOP), planned touches with their decisions, guide tasks, the outbox of
intended effects, and planner runs.

Every planned touch carries an idempotency key (enrolment, step, cycle) unique per brand, and
so does every outbox row: a planner killed mid-run and restarted finds what it already decided
and never sends twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from siyu.core.db import Base, created_column, id_column

SOP_STATUSES = ("draft", "enabled", "disabled")
ENROLMENT_STATES = ("active", "waiting", "done", "exited", "holdout")
TOUCH_STATUSES = ("planned", "sent", "deferred", "suppressed")


class SopPolicy(Base):
    """A brand's breathing policy (``siyu.sop.policy.BreathingPolicy.as_dict()``)."""

    __tablename__ = "sop_policies"

    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(String(200))


class Sop(Base):
    """An SOP: audience, schedule, priority, goal, holdout share, ordered steps and policy
    overrides (definitions validated by ``siyu.sop.schemas``)."""

    __tablename__ = "sops"
    __table_args__ = (
        UniqueConstraint("brand_id", "key"),
        Index("ix_sops_brand_status", "brand_id", "status"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(12), default="draft")
    priority: Mapped[int] = mapped_column(Integer, default=50)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    goal_event: Mapped[str | None] = mapped_column(String(64))
    holdout_pct: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    template: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    enabled_at: Mapped[datetime | None] = mapped_column()
    # The engine's enrolment watermark: audience changes up to here have been enrolled.
    enrolled_until: Mapped[datetime | None] = mapped_column()


class Enrolment(Base):
    """A customer's place in an SOP. ``cycle`` counts re-entries (a customer may enter the
    same SOP again after finishing it, e.g. every birthday)."""

    __tablename__ = "sop_enrolments"
    __table_args__ = (
        UniqueConstraint("sop_id", "customer_id", "cycle"),
        Index("ix_sop_enrolments_due", "brand_id", "state", "next_at"),
        Index("ix_sop_enrolments_customer", "brand_id", "customer_id"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    sop_id: Mapped[str] = mapped_column(ForeignKey("sops.id"))
    customer_id: Mapped[str] = mapped_column(String(26))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    entered_at: Mapped[datetime] = mapped_column()
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(String(12), default="active")
    variant: Mapped[str | None] = mapped_column(String(16))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_reason: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime | None] = mapped_column()


class Touch(Base):
    """A planned touch and its decision: sent (at), deferred (until) or suppressed, with the
    reason code (``siyu.sop.planner`` reasons) — the answer to "why didn't X get Y?"."""

    __tablename__ = "sop_touches"
    __table_args__ = (
        UniqueConstraint("brand_id", "idem_key"),
        Index("ix_sop_touches_customer", "brand_id", "customer_id", "due_at"),
        Index("ix_sop_touches_status", "brand_id", "status", "due_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    sop_id: Mapped[str] = mapped_column(ForeignKey("sops.id"))
    enrolment_id: Mapped[str] = mapped_column(ForeignKey("sop_enrolments.id"))
    customer_id: Mapped[str] = mapped_column(String(26))
    step: Mapped[int] = mapped_column(Integer)
    idem_key: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))  # marketing | transactional
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sender: Mapped[str | None] = mapped_column(String(24))  # owner_guide | store_guide | brand
    guide_staff_id: Mapped[str | None] = mapped_column(String(26))
    expected_value: Mapped[float] = mapped_column(Float, default=0.0)
    due_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="planned")
    reason: Mapped[str | None] = mapped_column(String(32))
    cause: Mapped[str | None] = mapped_column(String(32))
    send_at: Mapped[datetime | None] = mapped_column()
    deferred_until: Mapped[datetime | None] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    run_id: Mapped[str | None] = mapped_column(String(26))


class GuideTask(Base):
    """A task for a guide (call, visit, 1:1 chat) with a checklist and a due time."""

    __tablename__ = "guide_tasks"
    __table_args__ = (
        Index("ix_guide_tasks_staff_due", "brand_id", "staff_id", "status", "due_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"))
    customer_id: Mapped[str] = mapped_column(String(26))
    sop_id: Mapped[str | None] = mapped_column(ForeignKey("sops.id"))
    touch_id: Mapped[str | None] = mapped_column(ForeignKey("sop_touches.id"))
    kind: Mapped[str] = mapped_column(String(12))  # call | visit | chat
    title: Mapped[str] = mapped_column(String(200))
    script: Mapped[str | None] = mapped_column(String(2000))
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    expected_value: Mapped[float] = mapped_column(Float, default=0.0)
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | done | skipped
    skip_reason: Mapped[str | None] = mapped_column(String(200))
    done_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_column()


class Outbox(Base):
    """An intended effect for a channel (a touch to send); written in the same transaction
    as the decision, delivered by ``siyu worker``, unique per idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("brand_id", "idem_key"),
        Index("ix_outbox_pending", "status", "available_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    idem_key: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[str | None] = mapped_column(String(26))
    touch_id: Mapped[str | None] = mapped_column(ForeignKey("sop_touches.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(String(1000))
    # the stable reason code of the last failure (``siyu.channels.base.REASONS``)
    reason: Mapped[str | None] = mapped_column(String(40))
    # the worker holding the claim while ``sending`` (host:pid), kept after for diagnosis
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()


class SopRun(Base):
    """One planner run (or dry-run) for a brand-local day."""

    __tablename__ = "sop_runs"
    __table_args__ = (Index("ix_sop_runs_brand_day", "brand_id", "day"),)

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    day: Mapped[date] = mapped_column(Date)
    mode: Mapped[str] = mapped_column(String(12))  # run | simulate
    status: Mapped[str] = mapped_column(String(12), default="running")
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(String(1000))


class PlatformQuotaUse(Base):
    """A mass message a customer received that Siyu did not send (WeCom answered a mass
    message's result with status 3, "already received another mass message"): it uses the
    platform quota as much as one of ours, so the planner counts it on ``wecom_mass``."""

    __tablename__ = "platform_quota_uses"
    __table_args__ = (
        UniqueConstraint("brand_id", "source_key"),
        Index("ix_platform_quota_uses_customer", "brand_id", "customer_id", "used_at"),
    )

    id: Mapped[str] = id_column()
    brand_id: Mapped[str] = mapped_column(ForeignKey("brands.id"))
    customer_id: Mapped[str] = mapped_column(String(26))
    used_at: Mapped[datetime] = mapped_column()
    source_key: Mapped[str] = mapped_column(String(120))  # e.g. the mass message id
    created_at: Mapped[datetime] = created_column()
