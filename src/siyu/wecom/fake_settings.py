"""Settings, errcodes and state records of the local WeCom server (see fake_state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

CHINA = timezone(timedelta(hours=8))
DEMO_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"

# errcodes the fake answers (WECOM.md; the rest of doc 90313 where it names none)
OK = 0
SYSTEM_BUSY = -1
INVALID_SECRET = 40001
INVALID_CORPID = 40013
INVALID_TOKEN = 40014
MISSING_TOKEN = 41001
EXPIRED_TOKEN = 42001
CALL_LIMIT = 45009
CONCURRENCY_LIMIT = 45033
WELCOME_CODE_EXPIRED = 41050
WELCOME_CODE_USED = 41051
INVALID_PARAMETER = 40058
DATA_FORMAT = 47001
INVALID_USERID = 60111
INVALID_EXTERNAL_USERID = 40096
NOT_A_CUSTOMER = 84061
TAG_LIMIT = 41000  # the fake's choice: "corp tag count over 3,000"
TRANSFER_LIMIT = 40129  # the fake's choice: transferred twice already (90-day protection)
GROUP_NOT_FOUND = 90501
GROUP_TRANSFER_DAILY = 90509  # the fake's choice: 300 chats per new owner per day


class FakeError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def invalid(reason: str) -> FakeError:
    return FakeError(INVALID_PARAMETER, f"invalid parameter: {reason}")


@dataclass
class FakeSettings:
    corp_id: str = "wwfakecorp000001"
    secret: str = "fake-secret"
    agent_id: str = "1000002"
    token: str = "SiyuFakeToken"
    aes_key: str = DEMO_AES_KEY
    callback_url: str | None = None
    callback_timeout: float = 5.0
    callback_tries: int = 3
    token_ttl: int = 7200
    welcome_code_ttl: float = 20.0
    api_limit_per_minute: int = 10_000
    api_block_seconds: float = 60.0
    max_concurrent_per_api: int | None = None
    # None: as many mass messages a month as the month has days; 4 for the older rule
    monthly_quota: int | None = None
    max_corp_tags: int = 3000
    transfer_max_times: int = 2
    transfer_wait_seconds: float = 24 * 3600.0
    group_transfer_per_day: int = 300
    takeover_customer_limit: int | None = None
    transfer_result_page: int = 100


@dataclass
class FakeState:
    departments: dict[int, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    follows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tag_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    contact_ways: dict[str, dict[str, Any]] = field(default_factory=dict)
    welcome_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    welcome_sent: list[dict[str, Any]] = field(default_factory=list)
    group_chats: dict[str, dict[str, Any]] = field(default_factory=dict)
    mass: dict[str, dict[str, Any]] = field(default_factory=dict)
    quota_used: dict[tuple[str, str], int] = field(default_factory=dict)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    transfer_counts: dict[str, int] = field(default_factory=dict)
    group_transfers: dict[tuple[str, str], int] = field(default_factory=dict)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
