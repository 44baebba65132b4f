"""Webhooks into a brand's own systems: a JSON POST signed with the brand's secret.

Request: ``POST <url>`` with body ``{"id", "brand_id", "channel", "customer_id", "attempt",
"payload"}`` (compact JSON) and headers

- ``X-Siyu-Timestamp``: Unix seconds at signing;
- ``X-Siyu-Signature``: hex HMAC-SHA256 over ``"<timestamp>." + body`` with the brand secret;
- ``X-Siyu-Idempotency-Key``: the outbox key; the same on every retry, so the receiver can
  drop duplicates (delivery is at-least-once).

Receivers check with :func:`verify` (constant-time, with a replay window).

Classification: 2xx sent; 5xx, 408, 425, 429, time-outs and connection errors transient
(``Retry-After`` honoured); 401/403 ``auth_failed`` and any other status ``rejected``,
permanent. A body over ``MAX_BODY`` bytes is refused before sending (``message_too_large``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from siyu.channels.base import Capabilities, Message, Outcome, is_timeout

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class WebhookEndpoint:
    url: str
    secret: bytes


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp is
    within ``tolerance`` seconds of ``now`` (refuses replays of old requests)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature.lower())


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


class WebhookChannel:
    name = "webhook"
    capabilities = Capabilities(rich_media=True, delivery_receipts=False)

    def __init__(self, endpoints: Mapping[str, WebhookEndpoint], timeout: float = 10.0) -> None:
        self.endpoints = endpoints  # brand id -> endpoint
        self.timeout = timeout

    def send(self, message: Message) -> Outcome:
        endpoint = self.endpoints.get(message.brand_id)
        if endpoint is None:
            return Outcome.permanent("webhook_not_configured", code="not_configured")
        try:
            body = self.body(message)
        except (TypeError, ValueError) as exc:  # not JSON-serialisable
            return Outcome.permanent(f"bad_payload: {exc}", code="bad_payload")
        if len(body) > MAX_BODY:
            return Outcome.permanent(
                f"message_too_large: {len(body)} bytes (limit {MAX_BODY})",
                code="message_too_large",
            )
        return self.post(endpoint, message.idem_key, body)

    @staticmethod
    def body(message: Message) -> bytes:
        return json.dumps(
            {
                "id": message.idem_key,
                "brand_id": message.brand_id,
                "channel": message.channel,
                "customer_id": message.customer_id,
                "attempt": message.attempt,
                "payload": message.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    def post(self, endpoint: WebhookEndpoint, idem_key: str, body: bytes) -> Outcome:
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - the brand's configured URL
            endpoint.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "siyu-webhook/1",
                "X-Siyu-Timestamp": timestamp,
                "X-Siyu-Signature": sign(endpoint.secret, timestamp, body),
                "X-Siyu-Idempotency-Key": idem_key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status >= 500 or status in TRANSIENT_STATUSES:
                return Outcome.transient(
                    f"http {status}",
                    retry_after=_retry_after(exc.headers.get("Retry-After")),
                    code="throttled" if status == 429 else "provider_unavailable",
                )
            code = "auth_failed" if status in (401, 403) else "rejected"
            return Outcome.permanent(f"http {status}", code=code)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            code = "provider_timeout" if is_timeout(exc) else "provider_unavailable"
            return Outcome.transient(f"webhook: {type(exc).__name__}: {exc}", code=code)
        if 200 <= status < 300:
            return Outcome.ok()
        return Outcome.permanent(f"http {status}", code="rejected")
