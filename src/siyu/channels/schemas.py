"""Shapes of the channels API: per-brand channel settings (secrets write-only) and the
outbox (rows, dead letters, state counts, retries)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from siyu.channels.models import CONFIGURABLE

OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")
CODE = r"^[a-z][a-z0-9_]{0,63}$"
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
Secret = Annotated[str | None, Field(default=None, max_length=200)]


def _http_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    enabled: bool = True
    # write-only: None or "" keeps the stored secret; clear_secret removes it
    secret: Secret = None
    clear_secret: bool = False


class WebhookSettingsIn(_In):
    url: str = Field(min_length=8, max_length=500)

    _url = field_validator("url")(_http_url)


class SmsTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    template_id: str = Field(min_length=1, max_length=64, description="the provider's code")
    variables: list[str] = Field(default_factory=list, max_length=20)
    sign_name: str | None = Field(default=None, max_length=40)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: list[str]) -> list[str]:
        for v in value:
            if not VARIABLE.match(v):
                raise ValueError(f"bad variable name {v!r}")
        if len(set(value)) != len(value):
            raise ValueError("variables repeat")
        return value


class SmsSettingsIn(_In):
    endpoint: str = Field(min_length=8, max_length=500)
    key_id: str = Field(min_length=1, max_length=100)
    sign_name: str = Field(min_length=1, max_length=40)
    templates: dict[str, SmsTemplateIn] = Field(default_factory=dict, max_length=200)

    _endpoint = field_validator("endpoint")(_http_url)

    @field_validator("templates")
    @classmethod
    def _codes(cls, value: dict[str, SmsTemplateIn]) -> dict[str, SmsTemplateIn]:
        for code in value:
            if not re.match(CODE, code):
                raise ValueError(f"bad template code {code!r} (lower-case letters, digits, _)")
        return value


class EmailSettingsIn(_In):
    from_address: str = Field(min_length=3, max_length=200)
    smtp_host: str | None = Field(default=None, max_length=200)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = Field(default=None, max_length=200)
    smtp_starttls: bool = True

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value


SETTINGS_MODELS: dict[str, type[_In]] = {
    "webhook": WebhookSettingsIn,
    "sms": SmsSettingsIn,
    "email": EmailSettingsIn,
}
assert set(SETTINGS_MODELS) == set(CONFIGURABLE)


class ChannelSettingsOut(BaseModel):
    channel: str
    configured: bool
    enabled: bool
    config: dict[str, Any]
    secret_set: bool
    secret_hint: str = Field(description="the secret masked (its last characters), or empty")
    updated_at: datetime | None
    updated_by: str | None


class OutboxRowOut(BaseModel):
    id: str
    idem_key: str
    channel: str
    customer_id: str | None
    sop_id: str | None
    sop: str | None = Field(description="the SOP's key, when the row came from one")
    status: Literal["pending", "sending", "sent", "failed"]
    attempts: int
    reason: str | None
    error: str | None
    available_at: datetime = Field(
        description="pending: when due; sending: lease deadline; sent/failed: last outcome"
    )
    sent_at: datetime | None
    created_at: datetime
    claimed_by: str | None


class OutboxCount(BaseModel):
    channel: str
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0


class OutboxSummaryOut(BaseModel):
    channels: list[OutboxCount]
    total: OutboxCount
    reasons: dict[str, int] = Field(description="failed rows per reason code")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=500)


class RetryOut(BaseModel):
    retried: int
    ids: list[str]
