"""Tracking links: short codes, signed per-customer parameters, redirect safety, UTM
parameters and bot/preview filtering. Pure functions; the writes are in ``actions``.

A link is ``/t/{code}``. A link made for one touch and one customer names them in its row; a
link shared by many sends (one per touch step or campaign) carries the customer and the touch
in signed query parameters: ``/t/{code}?c={customer}&t={touch}&s={signature}``. An unsigned
or wrongly signed parameter is ignored (the click counts, anonymously).

Redirects go only to the brand's allowed domains (or their subdomains), over http(s), with no
user-info, no backslashes, no control characters and no percent-encoded host:
``//evil.com``, ``https://allowed.com.evil.com``, ``https://allowed.com@evil.com``,
``javascript:…`` and ``https:\\\\evil.com`` are all refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from siyu.core.errors import Invalid

CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 8
TOO_SOON = timedelta(seconds=1)
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_CONTROL = re.compile(r"[\x00-\x20\x7f\\]")
# Crawlers, link-preview fetchers (WeChat/WeCom share previews, IM unfurlers) and tools.
BOT_UA = re.compile(
    r"bot|spider|crawl|slurp|preview|unfurl|facebookexternalhit|embedly|"
    r"wechatsharemeta|mpcrawler|wxwork-preview|headlesschrome|phantomjs|"
    r"curl/|wget/|python-requests|python-httpx|go-http-client|java/|okhttp|scrapy|"
    r"bytespider|baiduspider|yisouspider|sogou|360spider|petalbot",
    re.IGNORECASE,
)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_domain(value: str) -> str:
    """A domain as stored in the settings (lower case, IDNA, no scheme/port/path)."""
    raw = value.strip().lower().rstrip(".")
    if raw.startswith("*."):
        raw = raw[2:]
    try:
        host = raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise Invalid("content.bad_domain", domain=value) from None
    if not _HOST.match(host) or "." not in host:
        raise Invalid("content.bad_domain", domain=value)
    return host


def safe_target(url: str, allowed_domains: list[str]) -> str:
    """``url`` if it may be redirected to, else :class:`Invalid` ``content.redirect_refused``
    (with the reason)."""

    def refuse(reason: str) -> Invalid:
        return Invalid("content.redirect_refused", url=url[:200], reason=reason)

    if not url or _CONTROL.search(url):
        raise refuse("control characters, spaces or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise refuse("only http and https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise refuse("user-info in the address")
    host = (parts.hostname or "").rstrip(".")
    if not host or "%" in parts.netloc or not _HOST.match(host):
        raise refuse("no valid host")
    if port not in (None, 80, 443):
        raise refuse("non-standard port")
    for domain in allowed_domains:
        if host == domain or host.endswith("." + domain):
            return url
    raise refuse(f"{host} is not an allowed domain")


def with_utm(url: str, utm: dict[str, str]) -> str:
    """``url`` with UTM parameters added (parameters already in the URL win)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    have = {k for k, _ in query}
    extra = [(k, v) for k, v in sorted(utm.items()) if v and k not in have]
    if not extra:
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, *extra])))


def signature(secret: bytes, code: str, customer_id: str, touch_id: str) -> str:
    mac = hmac.new(secret, f"{code}|{customer_id}|{touch_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:12]).decode().rstrip("=")


def signed_query(secret: bytes, code: str, customer_id: str, touch_id: str = "") -> str:
    sig = signature(secret, code, customer_id, touch_id)
    params = {"c": customer_id, "s": sig}
    if touch_id:
        params["t"] = touch_id
    return urlencode(params)


def verify(secret: bytes, code: str, customer_id: str, touch_id: str, sig: str) -> bool:
    return hmac.compare_digest(signature(secret, code, customer_id, touch_id), sig)


def bot_reason(
    method: str, user_agent: str | None, at: datetime, sent_at: datetime | None
) -> str | None:
    """Why a request is not a person's click (``head``, ``bot_ua``, ``too_soon``), or None."""
    if method.upper() == "HEAD":
        return "head"
    if not user_agent or not user_agent.strip() or BOT_UA.search(user_agent):
        return "bot_ua"
    if sent_at is not None and timedelta(0) <= at - sent_at < TOO_SOON:
        return "too_soon"
    return None
