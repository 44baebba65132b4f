"""Inputs and outputs of the customers domain.

An *observation* is one source record's statement that some identifiers belong to one
person (a CRM row with phone + member number, a WeCom add event with external_userid +
unionid, an order with a Tmall buyer id + phone). OneID turns observations into customers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ID_TYPES = (
    "phone",
    "unionid",
    "mini_openid",
    "oa_openid",
    "external_userid",
    "member_no",
    "pos_card",
    "tmall_buyer",
    "jd_buyer",
    "douyin_buyer",
    "email",
    "device_id",
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IdentifierIn(_In):
    type: str = Field(description="One of the brand's identifier types, e.g. phone, unionid")
    value: str = Field(min_length=1, max_length=256)


class ProfileIn(_In):
    """Profile facts carried by an observation; PII here is encrypted before storage."""

    name: str | None = Field(default=None, max_length=100)
    nickname: str | None = Field(default=None, max_length=100)
    gender: Literal["male", "female", "unknown"] | None = None
    birthday: date | None = None
    city: str | None = Field(default=None, max_length=100)
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ConsentIn(_In):
    """Consent given through one identifier (it stays with that identifier)."""

    identifier: IdentifierIn
    purpose: str = Field(min_length=1, max_length=40, description="e.g. marketing, sms")
    granted: bool
    at: datetime | None = None
    source: str | None = Field(default=None, max_length=80)


class ObservationIn(_In):
    source: str = Field(min_length=1, max_length=80, description="e.g. crm, pos, wecom")
    ref: str | None = Field(default=None, max_length=200, description="source record id")
    observed_at: datetime
    identifiers: list[IdentifierIn] = Field(min_length=1, max_length=20)
    profile: ProfileIn | None = None
    consents: list[ConsentIn] = Field(default_factory=list)
    owner_wecom_userid: str | None = Field(default=None, max_length=64)
    unit_code: str | None = Field(default=None, max_length=64)


class ObserveResult(BaseModel):
    """What resolving one observation gave: the customer (None when only weak identifiers
    were seen) and the key of its strongest identifier, used to attribute facts in the lake."""

    customer_id: str | None
    identity_key: str
    status: Literal["linked", "created", "conflict", "weak_only"]
