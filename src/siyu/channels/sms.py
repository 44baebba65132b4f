"""SMS through an HTTP provider, with a per-brand template registry.

No real provider is reachable from here, so this adapter implements one documented contract
(modelled on the common Chinese SMS gateways); a real provider gets its own small subclass
overriding ``request``/``classify``.

**Provider contract.** ``POST <base_url>/v1/sms/send`` with a JSON body::

    {"account": "<account id>", "to": "+8613800000000", "sign_name": "A咖啡",
     "template": "<provider template code>", "params": {"name": "..."}, "out_id": "<idem key>"}

and headers ``X-Sms-Account``, ``X-Sms-Timestamp`` (Unix seconds), ``X-Sms-Nonce`` (random
hex) and ``X-Sms-Signature`` = hex HMAC-SHA256 with the account secret over
``"<timestamp>\\n<nonce>\\n<hex sha256 of body>"``. The provider answers JSON
``{"code": "OK" | <error code>, "message": "...", "biz_id": "..."}``; ``out_id`` makes the
send idempotent on the provider's side (a retried ``out_id`` is not sent twice).

**Classification.** ``OK`` sent; the codes in ``TRANSIENT_CODES`` (throttling, busy, the
per-recipient daily limit), HTTP 5xx, time-outs and connection errors transient; the codes in
``PERMANENT_CODES`` and any unknown code permanent (a code we do not know is not retried
blindly).

**Templates.** Messages name a brand template (``content["template"]``) with ``params``; the
brand's registry maps it to the provider's approved template code, its signature name and the
parameters it takes (all required, no others allowed). An unregistered template
(``template_not_registered``), a missing or unknown parameter (``template_params_invalid``) or a
parameter value over ``MAX_PARAM_CHARS`` characters (``message_too_large``; gateways cap each
variable) is a permanent failure before any request is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from siyu.channels.base import Capabilities, Message, Outcome, is_timeout

TRANSIENT_CODES = frozenset(
    {"THROTTLED", "SYSTEM_BUSY", "INTERNAL_ERROR", "TIMEOUT", "RECIPIENT_DAY_LIMIT"}
)
PERMANENT_CODES = frozenset(
    {
        "INVALID_MOBILE",
        "TEMPLATE_NOT_FOUND",
        "TEMPLATE_PARAMS_INVALID",
        "SIGN_NAME_INVALID",
        "BLACKLISTED",
        "SIGNATURE_INVALID",
        "ACCOUNT_SUSPENDED",
        "CONTENT_REJECTED",
    }
)


MAX_PARAM_CHARS = 35
# provider code -> our reason code
CODE_REASONS = {
    "THROTTLED": "throttled",
    "RECIPIENT_DAY_LIMIT": "throttled",
    "TIMEOUT": "provider_timeout",
    "INVALID_MOBILE": "recipient_invalid",
    "BLACKLISTED": "recipient_invalid",
    "TEMPLATE_NOT_FOUND": "template_not_registered",
    "TEMPLATE_PARAMS_INVALID": "template_params_invalid",
    "SIGNATURE_INVALID": "auth_failed",
    "ACCOUNT_SUSPENDED": "auth_failed",
}


@dataclass(frozen=True)
class SmsTemplate:
    code: str  # the provider's approved template code
    sign_name: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmsProvider:
    base_url: str
    account: str
    secret: bytes
    timeout: float = 10.0


def signature(secret: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    text = f"{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def classify(code: str, message: str = "") -> Outcome:
    if code == "OK":
        return Outcome.ok()
    reason = f"sms {code}: {message}" if message else f"sms {code}"
    if code in TRANSIENT_CODES:
        return Outcome.transient(reason, code=CODE_REASONS.get(code, "provider_unavailable"))
    if code in PERMANENT_CODES:
        return Outcome.permanent(reason, code=CODE_REASONS.get(code, "rejected"))
    return Outcome.permanent(f"sms unknown code {code}: {message}", code="rejected")


class SmsChannel:
    name = "sms"
    capabilities = Capabilities(rich_media=False, delivery_receipts=True, per_recipient_quota=10)

    def __init__(
        self, provider: SmsProvider, templates: Mapping[str, Mapping[str, SmsTemplate]]
    ) -> None:
        self.provider = provider
        self.templates = templates  # brand id -> template name -> template

    def send(self, message: Message) -> Outcome:
        if not message.to:
            return Outcome.permanent("no_recipient")
        content = message.content
        name = str(content.get("template", ""))
        template = self.templates.get(message.brand_id, {}).get(name)
        if template is None:
            return Outcome.permanent(
                f"template_not_registered: {name[:64]}", code="template_not_registered"
            )
        raw = content.get("params") or {}
        if not isinstance(raw, dict):
            return Outcome.permanent("bad_payload: params is not an object", code="bad_payload")
        params: dict[str, Any] = dict(raw)
        missing = [p for p in template.params if p not in params]
        if missing:
            return Outcome.permanent(
                f"template_params_missing: {','.join(missing)}", code="template_params_invalid"
            )
        extra = sorted(set(params) - set(template.params))
        if extra:
            return Outcome.permanent(
                f"template_params_not_allowed: {','.join(extra)[:200]}",
                code="template_params_invalid",
            )
        long = [p for p in template.params if len(str(params[p])) > MAX_PARAM_CHARS]
        if long:
            return Outcome.permanent(
                f"message_too_large: {','.join(long)} over {MAX_PARAM_CHARS} characters",
                code="message_too_large",
            )
        body = json.dumps(
            {
                "account": self.provider.account,
                "to": message.to,
                "sign_name": template.sign_name,
                "template": template.code,
                "params": {p: str(params[p]) for p in template.params},
                "out_id": message.idem_key,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        return self.request(body)

    def request(self, body: bytes) -> Outcome:
        provider = self.provider
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        request = urllib.request.Request(  # noqa: S310 - the configured provider URL
            provider.base_url.rstrip("/") + "/v1/sms/send",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Sms-Account": provider.account,
                "X-Sms-Timestamp": timestamp,
                "X-Sms-Nonce": nonce,
                "X-Sms-Signature": signature(provider.secret, timestamp, nonce, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=provider.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                return Outcome.transient(f"sms http {exc.code}")
            raw = exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            code = "provider_timeout" if is_timeout(exc) else "provider_unavailable"
            return Outcome.transient(f"sms: {type(exc).__name__}: {exc}", code=code)
        try:
            answer = json.loads(raw)
            code, text = str(answer["code"]), str(answer.get("message", ""))
        except (ValueError, KeyError, TypeError):
            return Outcome.transient("sms: unreadable provider answer")
        outcome = classify(code, text)
        if outcome.status == "sent":
            return Outcome.ok(provider_id=str(answer.get("biz_id") or "") or None)
        return outcome
