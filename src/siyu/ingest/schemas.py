"""Inputs and outputs of the ingest domain (shared by the API, the CLI and the importers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from siyu.ingest.catalogue import EVENT_TYPE_PATTERN

MAX_BATCH = 10_000
FIELD_NAME = r"^[a-z][a-z0-9_]{0,63}$"
Kind = Literal["events", "orders", "customers"]
CustomFieldType = Literal["string", "integer", "number", "boolean", "datetime", "fen"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomFieldIn(_In):
    """One property of a brand's own event type (a JSON-schema-like field list)."""

    name: str = Field(pattern=FIELD_NAME)
    type: CustomFieldType = "string"
    required: bool = False
    max_length: int | None = Field(default=None, ge=1, le=10_000)
    min: float | None = None
    max: float | None = None
    enum: list[str] | None = Field(default=None, max_length=200)


class CustomEventIn(_In):
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN)
    version: int = Field(default=1, ge=1, le=999)
    description: str = Field(default="", max_length=400)
    fields: list[CustomFieldIn] = Field(min_length=1, max_length=100)

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[CustomFieldIn]) -> list[CustomFieldIn]:
        names = [f.name for f in value]
        if len(names) != len(set(names)):
            raise ValueError("field names must be unique")
        return value


class CustomEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    event_type: str
    version: int
    description: str
    fields: list[dict[str, Any]]
    created_at: datetime


class MappingIn(_In):
    """How one source's files map to canonical fields.

    ``columns``: file header → canonical field (``手机号`` → ``phone``); ``values``: per
    canonical field, file value → canonical value (``渠道``: ``天猫`` → ``tmall``);
    ``defaults``: canonical field → value used when the file has no such column.
    """

    source: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Kind
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)


class MappingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    source: str
    kind: str
    mapping: dict[str, Any]
    updated_at: datetime


class ItemError(BaseModel):
    field: str | None = None
    code: str
    reason: str


Status = Literal["accepted", "duplicate", "rejected"]


class ItemResult(BaseModel):
    index: int
    event_id: str | None
    status: Status
    errors: list[ItemError] = Field(default_factory=list)


class BatchIn(BaseModel):
    """``{"events": [envelope, …]}`` — up to 10,000 events (see the event catalogue)."""

    events: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


class BatchOut(BaseModel):
    ingest_id: str
    accepted: int
    duplicates: int
    rejected: int
    results: list[ItemResult]


class EventQueued(BaseModel):
    event_id: str
    status: Literal["queued", "duplicate"]


class ImportOut(BaseModel):
    """Outcome of a file import; ``errors`` name each bad row (line, column, reason, code)."""

    ingest_id: str
    file: str
    kind: str
    source: str
    total: int
    accepted: int
    duplicates: int
    rejected: int
    dry_run: bool
    seconds: float
    # where the time went: reading and checking the file, OneID, the lake
    phases: dict[str, float] = Field(default_factory=dict)
    ignored_columns: list[str] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    report: str | None = None
