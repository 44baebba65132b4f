"""SOP definitions as the API, console, CLI and templates give them, validated.

An SOP is an audience, a schedule, a priority, an optional goal event that ends it, a holdout
share kept untouched (to measure lift), policy overrides and ordered steps::

    {
      "key": "dormant_winback", "name": "沉睡唤醒", "priority": 60,
      "audience": {"kind": "tag_entered", "tag": "lifecycle_dormant"},
      "schedule": {"start": "2026-12-01T00:00:00+08:00", "end": null},
      "goal_event": "order_paid", "holdout_pct": 10,
      "steps": [
        {"type": "touch", "channel": "wecom_1to1", "sender": "owner_guide",
         "content": {"text": "好久不见…", "content_id": null}, "valid_hours": 48},
        {"type": "wait", "days": 3},
        {"type": "branch", "condition": "exists(message_received, last 3d)",
         "then": 4, "else": 3},
        {"type": "guide_task", "task": "call", "title": "回访", "checklist": ["问候", "送券"],
         "due_hours": 24, "automatable": true},
        {"type": "exit"}
      ]
    }

Steps (``type``): ``wait`` (``days``/``hours``/``minutes``, or ``until`` a local time of day
"HH:MM", or both: that long, then the next such time), ``branch`` (a tag-language
``condition``; ``then``/``else`` are step indexes, default: the next step), ``touch``
(``channel``, ``content``, ``sender`` owner_guide | store_guide | brand, ``mode`` auto |
confirm (a guide confirms before it goes), ``kind`` marketing | transactional,
``valid_hours``, optional A/B/n ``variants`` [{"name": "A", "weight": 50, "content": {…}},
…] whose content replaces ``content``; a ``content`` may name a library material with
``content_id`` and ``version``), ``guide_task`` (``task`` call | visit | chat, ``title``,
``script``, ``checklist``, ``due_hours``, ``automatable``), ``tag`` (``add``/``remove`` a manual tag
key), ``split`` (A/B: ``variants`` {"A": 50, "B": 50} → ``goto`` {"A": i, "B": j}), ``exit``.

Audience (``kind``): ``segment`` (``segment`` key: members are enrolled when the SOP runs),
``tag_entered`` / ``tag_exited`` (``tag`` key: customers entering or leaving it since the SOP
was enabled), ``event`` (``event`` type, optional ``condition`` on the event's customer, e.g.
the welcome journey on ``wecom_contact_added``).

Schedule: ``start``/``end`` (aware datetimes), and at most one of ``cron`` ("minute hour
day-of-month month day-of-week" in the brand's time zone, e.g. member day "0 10 8 * *"),
``relative`` ({"event": "order_paid", "which": "first"|"last", "days": 3} — enter that many
days after it), ``birthday`` ({"days_before": 0}). Without one the audience enters as soon as
it qualifies.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from siyu.sop.policy import CHANNELS as POLICY_CHANNELS

KEY = r"^[a-z][a-z0-9_]{1,63}$"
# the planner's channels; guide tasks are their own step type
CHANNELS = tuple(c for c in POLICY_CHANNELS if c != "guide_task")
SENDERS = ("owner_guide", "store_guide", "brand")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Audience(_In):
    kind: Literal["segment", "tag_entered", "tag_exited", "event"]
    segment: str | None = Field(default=None, pattern=KEY)
    tag: str | None = Field(default=None, max_length=80)
    event: str | None = Field(default=None, max_length=64)
    condition: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _needs(self) -> Audience:
        need = {"segment": "segment", "tag_entered": "tag", "tag_exited": "tag", "event": "event"}
        name = need[self.kind]
        if not getattr(self, name):
            raise ValueError(f"audience {self.kind} needs {name!r}")
        return self


class Relative(_In):
    event: str = Field(min_length=1, max_length=64)
    which: Literal["first", "last"] = "first"
    days: int = Field(ge=0, le=3650)


class Birthday(_In):
    days_before: int = Field(default=0, ge=0, le=60)


class Schedule(_In):
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = Field(default=None, max_length=100)
    relative: Relative | None = None
    birthday: Birthday | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split()
        if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
            raise ValueError("cron needs five fields: minute hour day-of-month month day-of-week")
        return value

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if sum(x is not None for x in (self.cron, self.relative, self.birthday)) > 1:
            raise ValueError("use at most one of cron, relative and birthday")
        for at in (self.start, self.end):
            if at is not None and at.tzinfo is None:
                raise ValueError("start and end need a time zone")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Wait(_In):
    type: Literal["wait"]
    days: int = Field(default=0, ge=0, le=365)
    hours: int = Field(default=0, ge=0, le=24 * 365)
    minutes: int = Field(default=0, ge=0, le=60 * 24 * 365)
    until: str | None = Field(default=None, description='local time of day "HH:MM"')

    @model_validator(mode="after")
    def _some(self) -> Wait:
        if self.until is not None and not _HHMM.match(self.until):
            raise ValueError('until must be a local time "HH:MM"')
        if not (self.days or self.hours or self.minutes or self.until):
            raise ValueError("a wait needs a duration or a time of day")
        return self


class Branch(_In):
    type: Literal["branch"]
    condition: str = Field(min_length=1, max_length=2000)
    then: int | None = Field(default=None, ge=0)
    else_: int | None = Field(default=None, ge=0, alias="else")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TouchVariant(_In):
    """One A/B/n variant of a touch: its share (weight) and its content."""

    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,16}$")
    weight: int = Field(ge=1, le=100)
    content: dict[str, Any] = Field(default_factory=dict)


class TouchStep(_In):
    type: Literal["touch"]
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    content: dict[str, Any] = Field(default_factory=dict)
    sender: Literal[SENDERS] = "owner_guide"  # type: ignore[valid-type]
    mode: Literal["auto", "confirm"] = "auto"
    kind: Literal["marketing", "transactional"] = "marketing"
    valid_hours: int = Field(default=48, ge=1, le=24 * 60)
    # A/B/n: each customer gets one variant's content (the first is the control).
    variants: list[TouchVariant] | None = Field(default=None, min_length=2, max_length=5)

    @model_validator(mode="after")
    def _distinct(self) -> TouchStep:
        names = [v.name for v in self.variants or []]
        if len(set(names)) != len(names):
            raise ValueError("variant names are distinct")
        return self


class GuideTaskStep(_In):
    type: Literal["guide_task"]
    task: Literal["call", "visit", "chat"] = "chat"
    title: str = Field(min_length=1, max_length=200)
    script: str | None = Field(default=None, max_length=2000)
    checklist: list[str] = Field(default_factory=list, max_length=20)
    due_hours: int = Field(default=24, ge=1, le=24 * 30)
    automatable: bool = False


class TagStep(_In):
    type: Literal["tag"]
    add: str | None = Field(default=None, max_length=80)
    remove: str | None = Field(default=None, max_length=80)

    @model_validator(mode="after")
    def _one(self) -> TagStep:
        if bool(self.add) == bool(self.remove):
            raise ValueError("a tag step adds or removes one manual tag")
        return self


class Split(_In):
    type: Literal["split"]
    variants: dict[str, int] = Field(min_length=2, max_length=5)
    goto: dict[str, int]

    @model_validator(mode="after")
    def _same(self) -> Split:
        if set(self.variants) != set(self.goto):
            raise ValueError("variants and goto name the same variants")
        if sum(self.variants.values()) != 100 or any(v <= 0 for v in self.variants.values()):
            raise ValueError("variant shares are positive and add up to 100")
        return self


class Exit(_In):
    type: Literal["exit"]


Step = Annotated[
    Wait | Branch | TouchStep | GuideTaskStep | TagStep | Split | Exit,
    Field(discriminator="type"),
]


class SopIn(_In):
    key: str = Field(pattern=KEY)
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=400)
    priority: int = Field(default=50, ge=0, le=100, description="higher wins arbitration")
    audience: Audience
    schedule: Schedule = Field(default_factory=Schedule)
    goal_event: str | None = Field(default=None, max_length=64)
    holdout_pct: int = Field(default=0, ge=0, le=50)
    steps: list[Step] = Field(min_length=1, max_length=50)
    policy: dict[str, Any] = Field(default_factory=dict, description="breathing overrides")

    @model_validator(mode="after")
    def _targets(self) -> SopIn:
        n = len(self.steps)
        for i, step in enumerate(self.steps):
            targets: list[int | None] = []
            if isinstance(step, Branch):
                targets = [step.then, step.else_]
            elif isinstance(step, Split):
                targets = list(step.goto.values())
            for t in targets:
                if t is not None and (t >= n or t == i):
                    raise ValueError(f"step {i} jumps to {t}, not another step of this SOP")
        return self


class SopPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=400)
    priority: int | None = Field(default=None, ge=0, le=100)
    audience: Audience | None = None
    schedule: Schedule | None = None
    goal_event: str | None = Field(default=None, max_length=64)
    holdout_pct: int | None = Field(default=None, ge=0, le=50)
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=50)
    policy: dict[str, Any] | None = None


def dump_steps(steps: list[Any]) -> list[dict[str, Any]]:
    """Steps as stored (JSON, ``else`` under its own name)."""
    return [s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in steps]


# ---------------------------------------------------------------- outputs


class SopCounts(BaseModel):
    """Live counts of an SOP: enrolments now, touch decisions over the last 7 days."""

    active: int = 0
    holdout: int = 0
    done: int = 0
    sent_7d: int = 0
    deferred_7d: int = 0
    suppressed_7d: int = 0


class SopOut(BaseModel):
    id: str
    key: str
    name: str
    description: str | None
    status: Literal["draft", "enabled", "disabled"]
    priority: int
    audience: dict[str, Any]
    schedule: dict[str, Any]
    goal_event: str | None
    holdout_pct: int
    steps: list[dict[str, Any]]
    policy: dict[str, Any]
    template: str | None
    version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime | None
    enabled_at: datetime | None
    counts: SopCounts = Field(default_factory=SopCounts)


class TemplateOut(BaseModel):
    key: str
    name: str
    description: str | None
    needs: dict[str, Any]
    definition: dict[str, Any]


class DecisionOut(BaseModel):
    """One planned touch and what became of it: sent (at), deferred (until) or suppressed,
    with the reason code (``ui.sop.reason.<code>``) and the binding rule (``cause``)."""

    id: str
    sop: str
    sop_name: str
    customer_id: str
    step: int
    channel: str
    kind: str
    sender: str | None
    guide_staff_id: str | None
    expected_value: float
    status: Literal["planned", "sent", "deferred", "suppressed"]
    reason: str | None
    cause: str | None
    due_at: datetime
    expires_at: datetime
    send_at: datetime | None
    deferred_until: datetime | None
    decided_at: datetime | None
    content: dict[str, Any]


class GuideTaskOut(BaseModel):
    id: str
    staff_id: str
    customer_id: str
    sop: str | None
    kind: str
    title: str
    script: str | None
    checklist: list[Any]
    expected_value: float
    due_at: datetime
    status: str
    skip_reason: str | None
    done_at: datetime | None
    overdue: bool
