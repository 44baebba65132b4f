"""The PII vault: normalise, encrypt (AES-256-GCM), hash for matching (HMAC-SHA256), mask.

Keys derive from the installation's ``pii.key`` (see ``core.settings``). The matching hash
covers the brand id, so the same phone number in two brands gives unrelated hashes and
tenants cannot be correlated through the store.

    >>> mask("phone", "13512346810")
    '135****6810'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from siyu.core.errors import Invalid

# Identifier types whose values are personal data: stored encrypted, shown masked.
PII_TYPES = frozenset({"phone", "email"})
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Keys:
    enc: bytes
    mac: bytes


@lru_cache(maxsize=8)
def _derive(master: bytes) -> Keys:
    # Two independent keys from one master, so a leak of one use does not weaken the other.
    enc = hmac.new(master, b"siyu-pii-encryption-v1", hashlib.sha256).digest()
    mac = hmac.new(master, b"siyu-pii-matching-v1", hashlib.sha256).digest()
    return Keys(enc=enc, mac=mac)


def keys() -> Keys:
    from siyu.core.settings import get_settings

    return _derive(get_settings().pii_key)


def normalise(id_type: str, value: str) -> str:
    """The canonical form used for matching; raises ``Invalid`` for a malformed value."""
    text = unicodedata.normalize("NFKC", value).strip()
    if id_type == "phone":
        digits = re.sub(r"[\s\-()]", "", text)
        if digits.startswith("+86"):
            digits = digits[3:]
        elif digits.startswith("0086"):
            digits = digits[4:]
        elif digits.startswith("86") and len(digits) == 13:
            digits = digits[2:]
        if _CN_MOBILE.match(digits) or _E164.match(digits):
            return digits
        raise Invalid("customers.bad_phone", value=mask("phone", digits))
    if id_type == "email":
        lowered = text.lower()
        if not _EMAIL.match(lowered):
            raise Invalid("customers.bad_email")
        return lowered
    if not text:
        raise Invalid("customers.empty_identifier", type=id_type)
    return text


def match_hash(brand_id: str, id_type: str, normalised: str, k: Keys | None = None) -> str:
    """Keyed hash for matching: 32 hex chars (128 bits) of HMAC-SHA256."""
    k = k or keys()
    msg = f"{brand_id}\x1f{id_type}\x1f{normalised}".encode()
    return hmac.new(k.mac, msg, hashlib.sha256).hexdigest()[:32]


def identity_key(brand_id: str, id_type: str, value: str, k: Keys | None = None) -> str:
    """``type:hash`` — how facts in the lake name the identity they came through."""
    return f"{id_type}:{match_hash(brand_id, id_type, normalise(id_type, value), k)}"


def encrypt(plaintext: str, k: Keys | None = None) -> str:
    k = k or keys()
    nonce = os.urandom(12)
    sealed = AESGCM(k.enc).encrypt(nonce, plaintext.encode(), b"siyu-v1")
    return "v1:" + base64.b64encode(nonce + sealed).decode()


def decrypt(token: str, k: Keys | None = None) -> str:
    k = k or keys()
    if not token.startswith("v1:"):
        raise Invalid("customers.bad_ciphertext")
    raw = base64.b64decode(token[3:])
    try:
        return AESGCM(k.enc).decrypt(raw[:12], raw[12:], b"siyu-v1").decode()
    except InvalidTag as exc:
        raise Invalid("customers.bad_ciphertext") from exc


def mask(kind: str, value: str | None) -> str:
    """Display form: phones keep the first 3 and last 4 digits, emails the first letter and
    the domain, names the first character; other identifiers keep their ends."""
    if not value:
        return ""
    if kind == "phone":
        if len(value) >= 7:
            return value[:3] + "****" + value[-4:]
        return "*" * len(value)
    if kind == "email":
        local, _, domain = value.partition("@")
        return (local[:1] + "***@" + domain) if domain else "***"
    if kind == "name":
        return value[:1] + "*" * max(1, len(value) - 1)
    if len(value) <= 8:
        return value[:2] + "***"
    return value[:4] + "…" + value[-4:]
