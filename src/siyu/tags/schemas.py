"""Inputs and outputs of the tags domain, shared by the API, console and CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KEY = r"^[a-z][a-z0-9_]{1,63}$"
Health = Literal["ok", "stale", "failing", "never", "paused"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TagGroupIn(_In):
    key: str = Field(pattern=KEY, description="stable identifier, e.g. coffee_habits")
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["rule", "manual"] = "rule"
    exclusive: bool = False
    description: str | None = Field(default=None, max_length=400)


class TagIn(_In):
    key: str = Field(pattern=KEY, description="stable identifier used by rules and SOPs")
    name: str = Field(min_length=1, max_length=100)
    group: str = Field(description="key of the group")
    kind: Literal["rule", "manual"] = "rule"
    rule: str | None = Field(
        default=None,
        max_length=4000,
        description="rule tags: the rule, e.g. count(order_paid, last 90d) >= 3",
    )
    rule_json: dict[str, Any] | None = Field(
        default=None, description="rule tags: the rule as the console builder's JSON tree"
    )
    description: str | None = Field(default=None, max_length=400)
    stale_after_hours: int = Field(default=26, ge=1, le=24 * 60)


class TagPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    rule: str | None = Field(default=None, max_length=4000)
    rule_json: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=400)
    status: Literal["active", "paused"] | None = None
    stale_after_hours: int | None = Field(default=None, ge=1, le=24 * 60)


class TagOut(BaseModel):
    id: str
    key: str
    name: str
    group: str
    kind: str
    rule: str | None
    description: str | None
    status: str
    builtin: bool
    health: Health
    members: int | None
    last_run_at: datetime | None
    last_ok_at: datetime | None
    last_duration_ms: int | None
    last_error: str | None
    stale_after_hours: int


class TagGroupOut(BaseModel):
    id: str
    key: str
    name: str
    kind: str
    exclusive: bool
    builtin: bool
    description: str | None
    tags: list[TagOut]


class ManualTagIn(_In):
    customer_ids: list[str] = Field(min_length=1, max_length=10_000)
    present: bool = Field(default=True, description="true sets the tag, false removes it")


class RunIn(_In):
    mode: Literal["auto", "full", "incremental"] = "auto"
    as_of: datetime | None = Field(
        default=None, description="evaluate as of this time (default now; brand-local day)"
    )


class RunOut(BaseModel):
    id: str
    mode: str
    status: str
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    customers: int
    changes: int
    error: str | None
    tags: dict[str, Any]


class CustomerTagOut(BaseModel):
    tag: str
    name: str
    group: str
    group_name: str
    kind: str
    value: str | None
    score: float | None
    since: datetime
    set_by: str | None


class RuleCheckIn(_In):
    rule: str | None = Field(default=None, max_length=4000)
    rule_json: dict[str, Any] | None = None


class RuleCheckOut(BaseModel):
    ok: bool
    rule: str | None = None
    rule_json: dict[str, Any] | None = None
    count: int | None = None
    error: dict[str, Any] | None = None


class SettingsIn(_In):
    group: Literal["rfm_segment", "lifecycle", "value_model"]
    params: dict[str, Any]


class SegmentIn(_In):
    key: str = Field(pattern=KEY)
    name: str = Field(min_length=1, max_length=100)
    definition: str = Field(
        min_length=1,
        max_length=4000,
        description="tags (tag_<key>) and conditions, e.g. "
        "tag_rfm_important_value and not tag_lifecycle_churned",
    )
    description: str | None = Field(default=None, max_length=400)


class SegmentPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    definition: str | None = Field(default=None, min_length=1, max_length=4000)
    description: str | None = Field(default=None, max_length=400)


class SegmentOut(BaseModel):
    id: str
    key: str
    name: str
    definition: str
    description: str | None
    last_count: int | None
    last_counted_at: datetime | None


class SnapshotOut(BaseModel):
    id: str
    segment: str
    taken_at: datetime
    count: int
    definition: str


class PreviewRow(BaseModel):
    customer_id: str
    name: str | None
    phone: str | None
    city: str | None
    tags: list[str]
