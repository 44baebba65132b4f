"""Client-side rate limiting for WeCom: a sliding window per (corp, API).

WeCom counts calls per corp per API (10,000 a minute and 150,000 an hour, shared/WECOM.md);
a hit blocks the API for the rest of the window (60 s for the minute limit, 60 min for the
hour limit). We count our own calls so we wait a little instead of being blocked for long,
and we remember a block the server reported so no thread calls into it.

    limiter = SlidingWindowLimiter()            # the documented defaults
    limiter.acquire(("ww123", "externalcontact/get"))   # sleeps if the window is full

Process-local: several processes sharing one corp each count their own calls, so set the
limits to a share of WeCom's when running several workers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence

MINUTE_LIMIT = 10_000
HOUR_LIMIT = 150_000
DEFAULT_WINDOWS: tuple[tuple[float, int], ...] = ((60.0, MINUTE_LIMIT), (3600.0, HOUR_LIMIT))


class SlidingWindowLimiter:
    """At most ``limit`` calls in any ``seconds``-long window, for each window given."""

    def __init__(
        self,
        windows: Sequence[tuple[float, int]] = DEFAULT_WINDOWS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not windows or any(s <= 0 or n <= 0 for s, n in windows):
            raise ValueError("windows must be (seconds > 0, limit > 0) pairs")
        self.windows = tuple(sorted(windows))
        self.clock = clock
        self.sleep = sleep
        self._calls: dict[Hashable, list[deque[float]]] = {}
        self._blocked: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def wait_time(self, key: Hashable) -> float:
        """Seconds until a call for ``key`` is allowed (0 when it is allowed now)."""
        with self._lock:
            return self._wait(key, self.clock())

    def _wait(self, key: Hashable, now: float) -> float:
        wait = max(0.0, self._blocked.get(key, 0.0) - now)
        queues = self._calls.get(key)
        if queues:
            for (seconds, limit), calls in zip(self.windows, queues, strict=True):
                while calls and calls[0] <= now - seconds:
                    calls.popleft()
                if len(calls) >= limit:
                    # the call that must leave the window before one more fits
                    wait = max(wait, calls[len(calls) - limit] + seconds - now)
        return wait

    def try_acquire(self, key: Hashable) -> float:
        """Record a call and return 0 if allowed now; otherwise record nothing and return
        the seconds to wait."""
        with self._lock:
            now = self.clock()
            wait = self._wait(key, now)
            if wait <= 0:
                queues = self._calls.setdefault(key, [deque() for _ in self.windows])
                for calls in queues:
                    calls.append(now)
            return wait

    def acquire(self, key: Hashable, *, max_wait: float | None = None) -> float:
        """Block until a call is allowed and record it; returns the seconds waited.
        Raises ``TimeoutError`` when the wait would exceed ``max_wait``."""
        waited = 0.0
        while True:
            wait = self.try_acquire(key)
            if wait <= 0:
                return waited
            if max_wait is not None and waited + wait > max_wait:
                raise TimeoutError(wait)
            self.sleep(wait)
            waited += wait

    def block(self, key: Hashable, seconds: float) -> None:
        """The server said the limit is hit: no call for ``key`` for ``seconds``."""
        with self._lock:
            until = self.clock() + seconds
            self._blocked[key] = max(self._blocked.get(key, 0.0), until)

    def count(self, key: Hashable, seconds: float) -> int:
        """Calls recorded for ``key`` in the last ``seconds``."""
        with self._lock:
            now = self.clock()
            queues = self._calls.get(key)
            return sum(1 for t in queues[-1] if t > now - seconds) if queues else 0
