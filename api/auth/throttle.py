"""Failed logins, counted per client and per token prefix, with back-off (#18).

Tokens are 32 random bytes, so guessing one is hopeless; the limit is there so
that nobody can try (300 wrong tokens in 15.7 s went unnoticed before), and so
that every failure is seen: each is written to the audit log, without the
secret. Past :data:`LIMIT` failures in :data:`WINDOW_S` a key is locked out for
the window, and each further lockout in a row doubles the time, up to
:data:`MAX_LOCK_S`. While locked, the key's login attempts are answered 429
without being tried (and written once, as the lockout).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: Failed logins a client (or a token prefix) may have in a window.
LIMIT = 10
WINDOW_S = 60.0
#: The longest lockout, s.
MAX_LOCK_S = 3600.0
#: Keys kept at most (a flood of addresses must not grow memory without end).
MAX_KEYS = 100_000
#: Characters of a sent secret that key the per-prefix count (not enough to be a secret).
PREFIX_CHARS = 6


@dataclass(slots=True)
class _Key:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    strikes: int = 0


def keys_of(client: str, secret: str | None) -> list[str]:
    """The keys one attempt counts against: its client, and its secret's prefix."""
    keys = [f"client:{client}"]
    if secret:
        keys.append(f"prefix:{secret[:PREFIX_CHARS]}")
    return keys


class LoginThrottle:
    """Per-key failure counts and lockouts; thread-safe."""

    def __init__(self, limit: int = LIMIT, window_s: float = WINDOW_S,
                 max_lock_s: float = MAX_LOCK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_lock_s, self.clock = (limit, window_s,
                                                                  max_lock_s, clock)
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def locked_for(self, keys: Iterable[str]) -> float:
        """Seconds until every one of ``keys`` may try again (0 when none is locked)."""
        now = self.clock()
        with self._lock:
            waits = [k.locked_until - now for key in keys
                     if (k := self._keys.get(key)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: Iterable[str]) -> float:
        """Count one failure against each key; the lockout it starts, s (0 for none)."""
        now = self.clock()
        started = 0.0
        with self._lock:
            if len(self._keys) >= MAX_KEYS:
                self._forget(now)
            for key in keys:
                k = self._keys.setdefault(key, _Key())
                if k.locked_until and now > k.locked_until + self.max_lock_s:
                    k.strikes = 0  # quiet for long: the back-off starts over
                while k.failures and k.failures[0] <= now - self.window_s:
                    k.failures.popleft()
                k.failures.append(now)
                if len(k.failures) >= self.limit:
                    k.strikes += 1
                    lock = min(self.window_s * 2 ** (k.strikes - 1), self.max_lock_s)
                    k.locked_until = now + lock
                    k.failures.clear()
                    started = max(started, lock)
        return started

    def _forget(self, now: float) -> None:
        """Drop keys with nothing recent (called with the lock held)."""
        stale = [key for key, k in self._keys.items()
                 if k.locked_until + self.max_lock_s < now
                 and (not k.failures or k.failures[-1] < now - self.window_s)]
        for key in stale or list(self._keys)[: len(self._keys) // 2]:
            del self._keys[key]
