"""Password hashing (argon2id), token generation and keyed hashes for secrets we store."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hashers: dict[str, tuple[PasswordHasher, str]] = {}


def _hasher() -> tuple[PasswordHasher, str]:
    """The argon2id hasher for the configured profile, with a dummy hash of its cost.

    ``SIYU_ARGON2_PROFILE=fast`` (tests only) trades strength for speed. Verifying against
    the dummy when a user does not exist costs as much as a real check, so response times do
    not reveal which usernames exist.
    """
    from siyu.core.settings import get_settings

    profile = get_settings().argon2_profile
    if profile not in _hashers:
        hasher = (
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
            if profile == "fast"
            else PasswordHasher()
        )
        _hashers[profile] = (hasher, hasher.hash(secrets.token_hex(16)))
    return _hashers[profile]


def hash_password(password: str) -> str:
    return _hasher()[0].hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    hasher, dummy = _hasher()
    try:
        return hasher.verify(stored or dummy, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token (API keys, session ids): safe to store, fast to look up."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def constant_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
