"""Typed WeCom API errors.

Every answer with ``errcode != 0`` becomes a :class:`WeComError` (``errcode``, ``errmsg``,
``api``); well-known codes map to subclasses so callers can react without comparing numbers.
``transient`` tells the outbox dispatcher whether a later attempt may succeed.

    try:
        client.send_welcome_msg(code, text="你好")
    except WelcomeCodeExpired:
        ...  # too late: the 20 s window has passed, fall back to a mass message
    except WeComError as exc:
        outcome = Outcome.transient(str(exc)) if exc.transient else Outcome.permanent(str(exc))
"""

from __future__ import annotations

from typing import ClassVar

from siyu.core.errors import SiyuError

# errcodes documented in shared/WECOM.md (doc 90313 for the full table)
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
# ours, not WeCom's: the request never got an answer (connection refused, timeout, HTTP 5xx)
TRANSPORT = -2
# ours: refused before calling because an argument breaks a documented limit
CLIENT_VALIDATION = -3

TOKEN_CODES = frozenset({INVALID_TOKEN, EXPIRED_TOKEN, MISSING_TOKEN})
RATE_CODES = frozenset({CALL_LIMIT, CONCURRENCY_LIMIT})


class WeComError(SiyuError):
    """WeCom refused a call (or could not be reached)."""

    status: ClassVar[int] = 502
    error_code: ClassVar[str] = "wecom.api_error"
    is_transient: ClassVar[bool] = False

    def __init__(self, errcode: int, errmsg: str = "", api: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api
        super().__init__(self.error_code, errcode=errcode, errmsg=errmsg, api=api)

    @property
    def transient(self) -> bool:
        """True when the same call may succeed later (busy, rate limited, unreachable)."""
        return self.is_transient


class TokenInvalid(WeComError):
    """40014 / 42001 / 41001 still answered after one refresh of the access token."""

    error_code = "wecom.token_invalid"
    is_transient = True


class CredentialsInvalid(WeComError):
    """gettoken refused the corp id (40013) or the secret (40001)."""

    status = 401
    error_code = "wecom.credentials_invalid"


class RateLimited(WeComError):
    """45009 (call limit) or 45033 (concurrency), or our own limiter would exceed the limit."""

    status = 429
    error_code = "wecom.rate_limited"
    is_transient = True

    def __init__(
        self, errcode: int, errmsg: str = "", api: str = "", retry_after: float = 60.0
    ) -> None:
        self.retry_after = retry_after
        super().__init__(errcode, errmsg, api)


class SystemBusy(WeComError):
    """-1 still answered after the retries."""

    status = 503
    error_code = "wecom.system_busy"
    is_transient = True


class Unavailable(WeComError):
    """No answer: connection refused, timeout or an HTTP error status."""

    status = 503
    error_code = "wecom.unavailable"
    is_transient = True


class WelcomeCodeExpired(WeComError):
    """41050: the welcome code is older than 20 s."""

    status = 410
    error_code = "wecom.welcome_code_expired"


class WelcomeCodeUsed(WeComError):
    """41051: the welcome code was already used (by us or another app)."""

    status = 409
    error_code = "wecom.welcome_code_used"


class InvalidArgument(WeComError):
    """An argument breaks a documented limit (checked before calling) or WeCom says so."""

    status = 422
    error_code = "wecom.invalid_argument"

    @classmethod
    def local(cls, api: str, reason: str) -> InvalidArgument:
        return cls(CLIENT_VALIDATION, reason, api)


class WeComNotFound(WeComError):
    """A userid, external_userid or relationship WeCom does not know."""

    status = 404
    error_code = "wecom.not_found"


_BY_CODE: dict[int, type[WeComError]] = {
    SYSTEM_BUSY: SystemBusy,
    INVALID_SECRET: CredentialsInvalid,
    INVALID_CORPID: CredentialsInvalid,
    INVALID_TOKEN: TokenInvalid,
    MISSING_TOKEN: TokenInvalid,
    EXPIRED_TOKEN: TokenInvalid,
    CALL_LIMIT: RateLimited,
    CONCURRENCY_LIMIT: RateLimited,
    WELCOME_CODE_EXPIRED: WelcomeCodeExpired,
    WELCOME_CODE_USED: WelcomeCodeUsed,
    INVALID_PARAMETER: InvalidArgument,
    DATA_FORMAT: InvalidArgument,
    INVALID_USERID: WeComNotFound,
    INVALID_EXTERNAL_USERID: WeComNotFound,
    NOT_A_CUSTOMER: WeComNotFound,
    TRANSPORT: Unavailable,
}


def error_for(errcode: int, errmsg: str = "", api: str = "") -> WeComError:
    """The typed error for an answer's errcode."""
    return _BY_CODE.get(errcode, WeComError)(errcode, errmsg, api)
