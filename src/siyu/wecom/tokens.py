"""Access-token cache shared by every client of a process.

One token per app secret (shared/WECOM.md): fetching a new one does not revoke the old one,
but each fetch counts against ``gettoken``'s limits, so every client of the same
(server, corp, secret) shares one cached token, refreshed ``refresh_margin`` seconds before it
expires. A per-key lock makes concurrent callers wait for one fetch instead of each fetching.

    cache = TokenCache()
    token = cache.get(key) or fetch()
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

TokenKey = tuple[str, str, str]


def token_key(base_url: str, corp_id: str, secret: str) -> TokenKey:
    """The cache key; the secret is hashed so the cache never holds it."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return (base_url.rstrip("/"), corp_id, digest)


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float


class TokenCache:
    def __init__(
        self, *, refresh_margin: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._tokens: dict[TokenKey, CachedToken] = {}
        self._locks: dict[TokenKey, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: TokenKey) -> threading.Lock:
        """The lock held while fetching the token for ``key``."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: TokenKey) -> str | None:
        """The cached token, or None when absent or due for refresh."""
        with self._guard:
            cached = self._tokens.get(key)
        if cached is None:
            return None
        if self.clock() >= cached.expires_at:
            return None
        return cached.token

    def put(self, key: TokenKey, token: str, expires_in: float) -> None:
        # a token living less than twice the margin is refreshed at half its life instead
        margin = min(self.refresh_margin, expires_in / 2)
        with self._guard:
            self._tokens[key] = CachedToken(token, self.clock() + expires_in - margin)

    def drop(self, key: TokenKey, token: str | None = None) -> None:
        """Forget the token (only if it is still ``token``, so a fresher one survives)."""
        with self._guard:
            cached = self._tokens.get(key)
            if cached is not None and (token is None or cached.token == token):
                del self._tokens[key]

    def clear(self) -> None:
        with self._guard:
            self._tokens.clear()


DEFAULT_TOKEN_CACHE = TokenCache()
