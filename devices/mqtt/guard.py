"""Limits every MQTT message is parsed under, and the count of those refused.

A device topic is written by whoever may publish there: a faulty device, a
neighbour's script, an attacker with the broker's password. One message must
never stop the reader (issue 18: 100,000 nested ``[`` raised RecursionError
on paho's network thread and every MQTT device went stale for good), so each
message is checked before it is parsed:

* size: at most :attr:`MessageLimits.max_bytes` (a Shelly status is ~2 KB);
* nesting: JSON at most :attr:`MessageLimits.max_depth` deep, counted on the
  raw bytes before ``json.loads`` recurses;
* rate: at most :attr:`MessageLimits.max_per_s` messages a second per topic
  (a device that floods is read at that rate, the rest dropped unparsed);
* time: a parse that took longer than :attr:`MessageLimits.max_parse_s` is
  refused and the topic muted for :attr:`MessageLimits.mute_factor` times
  that long, so a payload that is slow to parse costs at most a small share
  of the thread that reads every device.

Refusals are counted per topic and logged at most once a minute
(:class:`RefusalLog`), never once per message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


class PayloadRefused(ValueError):
    """A message over one of the limits; the message says which and by how much."""


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """What one MQTT message may cost the reader."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_per_s: float = 50.0
    max_parse_s: float = 0.05
    mute_factor: float = 20.0


DEFAULT_LIMITS = MessageLimits()

#: A JSON string literal: brackets inside strings are text, not nesting.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


def json_depth(payload: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a scalar).

    Counted on the bytes (strings blanked), vectorised, so a payload too deep for
    ``json.loads`` to recurse into is measured without recursing.
    """
    opens = payload.count(b"[") + payload.count(b"{")
    if opens <= 1:
        return opens
    data = np.frombuffer(_STRING.sub(b'""', payload), dtype=np.uint8)
    step = np.isin(data, _OPEN).astype(np.int32) - np.isin(data, _CLOSE).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


def check_size_and_depth(payload: bytes, limits: MessageLimits) -> None:
    """Raise :class:`PayloadRefused` if ``payload`` is too big or nests too deep."""
    if len(payload) > limits.max_bytes:
        raise PayloadRefused(f"{len(payload):,} bytes (limit {limits.max_bytes:,})")
    if payload.count(b"[") + payload.count(b"{") <= limits.max_depth:
        return  # cannot nest deeper than it opens: most payloads stop here (~1 µs)
    depth = json_depth(payload)
    if depth > limits.max_depth:
        raise PayloadRefused(f"JSON nested {depth} deep (limit {limits.max_depth})")


class TopicGate:
    """The rate and time limits of one topic (a token bucket and a mute deadline)."""

    __slots__ = ("_tokens", "_last", "muted_until", "limits")

    def __init__(self, limits: MessageLimits) -> None:
        self.limits = limits
        self._tokens = 2 * limits.max_per_s  # a burst of two seconds' worth
        self._last = time.monotonic()
        self.muted_until = 0.0

    def admit(self, now: float) -> str | None:
        """None if a message may be parsed now, else why not."""
        if now < self.muted_until:
            return f"muted for {self.muted_until - now:.1f} s after a slow parse"
        rate = self.limits.max_per_s
        self._tokens = min(self._tokens + (now - self._last) * rate, 2 * rate)
        self._last = now
        if self._tokens < 1.0:
            return f"more than {rate:g} messages a second"
        self._tokens -= 1.0
        return None

    def timed(self, elapsed_s: float, now: float) -> str | None:
        """After a parse: None if it was quick enough, else why it is refused (and mute)."""
        if elapsed_s <= self.limits.max_parse_s:
            return None
        mute = elapsed_s * self.limits.mute_factor
        self.muted_until = now + mute
        return (f"parsing took {elapsed_s * 1000:.0f} ms (limit "
                f"{self.limits.max_parse_s * 1000:.0f} ms); topic muted for {mute:.1f} s")


class RefusalLog:
    """Counts refused messages per topic; logs a summary at most once per ``every_s``."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.every_s, self._clock, self._log = every_s, clock, logger
        self._lock = threading.Lock()
        self.totals: dict[str, int] = {}
        self._window: dict[str, list] = {}  # topic → [count, last reason]
        self._logged_at = -float("inf")
        self.lines_logged = 0

    def refused(self, topic: str, reason: str) -> None:
        """Count one refused message on ``topic``; log now if a minute has passed."""
        with self._lock:
            self.totals[topic] = self.totals.get(topic, 0) + 1
            entry = self._window.setdefault(topic, [0, reason])
            entry[0] += 1
            entry[1] = reason
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Log what was refused since the last line, if ``every_s`` has passed (or ``force``)."""
        now = self._clock()
        with self._lock:
            if not self._window or (not force and now - self._logged_at < self.every_s):
                return
            window, self._window = self._window, {}
            self._logged_at = now
            self.lines_logged += 1
        count = sum(c for c, _ in window.values())
        parts = "; ".join(f"{topic}: {c:,} (last: {reason})"
                          for topic, (c, reason) in sorted(window.items())[:10])
        more = f"; and {len(window) - 10} more topics" if len(window) > 10 else ""
        self._log.warning("MQTT: %s message%s refused and not read: %s%s (logged at most "
                          "once every %g s)", f"{count:,}", "" if count == 1 else "s",
                          parts, more, self.every_s)
