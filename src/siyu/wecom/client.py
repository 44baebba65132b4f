"""WeCom server API client (self-built app), written from shared/WECOM.md.

- The access token is cached per (server, corp, secret) in a process-wide, thread-safe cache
  and refreshed before it expires; 40014 / 42001 drop it, fetch a new one and retry once.
- -1 (system busy) is retried at most 3 times with exponential back-off.
- 45009 / 45033 block the API (60 s by default), back off and retry ``rate_limit_retries``
  times, then raise :class:`RateLimited`; a client-side sliding window per corp and API keeps
  us under 10,000/min and 150,000/h in the first place.
- Cursor-paginated APIs are iterators (``iter_*``); arguments breaking a documented limit
  raise :class:`InvalidArgument` before any call.

    client = WeComClient("ww123", secret)
    for item in client.iter_external_contacts_by_user(["zhangsan"]):
        print(item["external_contact"]["external_userid"], item["follow_info"]["state"])
    msgid, fail_list = client.add_msg_template("single", "zhangsan", external_userids=[...],
                                               text="新品上市")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from siyu.wecom import errors as e
from siyu.wecom.client_apis import ApisMixin
from siyu.wecom.ratelimit import SlidingWindowLimiter
from siyu.wecom.tokens import DEFAULT_TOKEN_CACHE, TokenCache, token_key

BASE_URL = "https://qyapi.weixin.qq.com"
DEFAULT_LIMITER = SlidingWindowLimiter()


class WeComClient(ApisMixin):
    """One self-built app of one corp. Thread-safe; share it."""

    def __init__(
        self,
        corp_id: str,
        secret: str,
        *,
        base_url: str = BASE_URL,
        http: httpx.Client | None = None,
        token_cache: TokenCache | None = None,
        limiter: SlidingWindowLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        busy_retries: int = 3,
        backoff_base: float = 1.0,
        rate_limit_retries: int = 1,
        minute_block: float = 60.0,
        concurrency_backoff: float = 1.0,
        limiter_max_wait: float | None = None,
    ) -> None:
        if not corp_id or not secret:
            raise e.InvalidArgument.local("gettoken", "corp_id and secret are required")
        self.corp_id = corp_id
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self.tokens = token_cache if token_cache is not None else DEFAULT_TOKEN_CACHE
        self.limiter = limiter if limiter is not None else DEFAULT_LIMITER
        self.sleep = sleep
        self.clock = clock
        self.busy_retries = busy_retries
        self.backoff_base = backoff_base
        self.rate_limit_retries = rate_limit_retries
        self.minute_block = minute_block
        self.concurrency_backoff = concurrency_backoff
        # a client that must not wait out a rate limit (rate_limit_retries=0, e.g. an outbox
        # worker that reschedules) must not wait in the limiter either
        if limiter_max_wait is None:
            limiter_max_wait = minute_block if rate_limit_retries > 0 else 0.0
        self.limiter_max_wait = limiter_max_wait
        self._key = token_key(self.base_url, corp_id, secret)

    def __repr__(self) -> str:  # never the secret
        return f"WeComClient(corp_id={self.corp_id!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ token

    def get_access_token(self, *, force: bool = False) -> str:
        """The cached token, fetched when missing or due (one fetch for all threads)."""
        if not force:
            token = self.tokens.get(self._key)
            if token:
                return token
        with self.tokens.lock(self._key):
            token = None if force else self.tokens.get(self._key)
            if token:
                return token
            data = self._send(
                "GET",
                "gettoken",
                {"corpid": self.corp_id, "corpsecret": self._secret},
                None,
                token=None,
            )
            token = str(data.get("access_token") or "")
            if not token:
                raise e.WeComError(e.TRANSPORT, "gettoken answered no access_token", "gettoken")
            self.tokens.put(self._key, token, float(data.get("expires_in") or 7200))
            return token

    def invalidate_token(self, token: str | None = None) -> None:
        self.tokens.drop(self._key, token)

    # ------------------------------------------------------------------ calls

    def get(self, api: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET /cgi-bin/{api}`` with the access token; the answer when errcode is 0."""
        return self._call("GET", api, params or {}, None)

    def post(self, api: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /cgi-bin/{api}`` with a JSON body; the answer when errcode is 0."""
        return self._call("POST", api, {}, body or {})

    def _call(
        self, method: str, api: str, params: dict[str, Any], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        refreshed = False
        while True:
            token = self.get_access_token()
            try:
                return self._send(method, api, params, body, token=token)
            except e.TokenInvalid:
                if refreshed:
                    raise
                # the token expired or was invalidated early: drop it, fetch, retry once
                refreshed = True
                self.invalidate_token(token)

    def _send(
        self,
        method: str,
        api: str,
        params: dict[str, Any],
        body: dict[str, Any] | None,
        *,
        token: str | None,
    ) -> dict[str, Any]:
        """One logical call: client-side limiter, -1 retries and 45009/45033 back-off."""
        busy = limited = 0
        while True:
            self._acquire(api)
            data = self._request(method, api, params, body, token)
            errcode = int(data.get("errcode") or 0)
            if errcode == 0:
                return data
            errmsg = str(data.get("errmsg") or "")
            if errcode == e.SYSTEM_BUSY and busy < self.busy_retries:
                self.sleep(self.backoff_base * 2**busy)
                busy += 1
                continue
            if errcode in e.RATE_CODES:
                block = self.minute_block if errcode == e.CALL_LIMIT else self.concurrency_backoff
                if errcode == e.CALL_LIMIT:
                    self.limiter.block(self._limit_key(api), block)
                if limited < self.rate_limit_retries:
                    self.sleep(block)
                    limited += 1
                    continue
                raise e.RateLimited(errcode, errmsg, api, retry_after=block)
            raise e.error_for(errcode, errmsg, api)

    def _limit_key(self, api: str) -> tuple[str, str, str]:
        # WeCom counts per corp and API; the server is part of the key so that two local
        # WeCom servers (tests) never share a block
        return (self.base_url, self.corp_id, api)

    def _acquire(self, api: str) -> None:
        key = self._limit_key(api)
        waited = 0.0
        while (wait := self.limiter.try_acquire(key)) > 0:
            if waited + wait > self.limiter_max_wait:
                raise e.RateLimited(e.CALL_LIMIT, "client-side rate limit", api, retry_after=wait)
            self.sleep(wait)
            waited += wait

    def _request(
        self,
        method: str,
        api: str,
        params: dict[str, Any],
        body: dict[str, Any] | None,
        token: str | None,
    ) -> dict[str, Any]:
        query = dict(params)
        if token is not None:
            query["access_token"] = token
        url = f"{self.base_url}/cgi-bin/{api}"
        try:
            resp = self.http.request(method, url, params=query, json=body)
        except httpx.HTTPError as exc:
            raise e.Unavailable(e.TRANSPORT, f"{type(exc).__name__}: {exc}", api) from exc
        if resp.status_code != 200:
            raise e.Unavailable(e.TRANSPORT, f"HTTP {resp.status_code}", api)
        try:
            data = resp.json()
        except ValueError as exc:
            raise e.Unavailable(e.TRANSPORT, "answer is not JSON", api) from exc
        if not isinstance(data, dict):
            raise e.Unavailable(e.TRANSPORT, "answer is not a JSON object", api)
        return data

    # ------------------------------------------------------------------ pagination

    def pages(
        self,
        api: str,
        body: dict[str, Any],
        items: str,
        *,
        cursor_field: str = "cursor",
        next_field: str = "next_cursor",
    ) -> Iterator[Any]:
        """Every item of a cursor-paginated POST API, page after page."""
        cursor = ""
        seen: set[str] = set()
        while True:
            data = self.post(api, {**body, cursor_field: cursor})
            yield from data.get(items) or []
            cursor = str(data.get(next_field) or "")
            if not cursor:
                return
            if cursor in seen:
                raise e.WeComError(e.TRANSPORT, f"cursor {cursor!r} repeated", api)
            seen.add(cursor)


__all__ = ["BASE_URL", "DEFAULT_LIMITER", "WeComClient"]
