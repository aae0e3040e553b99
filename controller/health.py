"""Health of each device: last good read, errors, and back-off after failures.

A failing device is retried after 2 s × consecutive failures, capped at
5 minutes (the policy OpenEMS uses for defective components), so one dead
inverter never slows the cycle for everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_STEP_S = 2.0
BACKOFF_MAX_S = 300.0


@dataclass(slots=True)
class DeviceHealth:
    """What the controller knows about one device's reliability (wall-clock seconds)."""

    name: str
    endpoint: str
    last_good: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    errors_total: int = 0
    reads_total: int = 0
    consecutive_failures: int = 0
    backoff_until: float = 0.0
    last_event: str | None = None

    def succeeded(self, now: float) -> None:
        """Record a good read or write."""
        self.last_good = now
        self.reads_total += 1
        self.consecutive_failures = 0
        self.backoff_until = 0.0

    def failed(self, now: float, reason: str) -> None:
        """Record a failure and back off."""
        self.errors_total += 1
        self.consecutive_failures += 1
        self.last_error = reason
        self.last_error_at = now
        self.backoff_until = now + min(BACKOFF_STEP_S * self.consecutive_failures, BACKOFF_MAX_S)

    def note(self, event: str) -> None:
        """Record something the installer should see that is not a failure (a counter reset)."""
        self.last_event = event

    def in_backoff(self, now: float) -> bool:
        """Whether the device should be skipped this cycle."""
        return now < self.backoff_until

    def fresh(self, now: float, stale_after_s: float) -> bool:
        """Whether the last good read is recent enough to use."""
        return self.last_good is not None and now - self.last_good <= stale_after_s

    def state(self, now: float, stale_after_s: float) -> str:
        """``ok``, ``unknown`` (stale or never read) or ``backoff``."""
        if self.fresh(now, stale_after_s):
            return "ok"
        return "backoff" if self.in_backoff(now) else "unknown"

    def as_dict(self, now: float, stale_after_s: float) -> dict[str, object]:
        """JSON-ready view for the API and the CLI."""
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "state": self.state(now, stale_after_s),
            "last_good_age_s": None if self.last_good is None else round(now - self.last_good, 3),
            "last_error": self.last_error,
            "errors_total": self.errors_total,
            "reads_total": self.reads_total,
            "consecutive_failures": self.consecutive_failures,
            "backoff_remaining_s": round(max(self.backoff_until - now, 0.0), 3),
            "last_event": self.last_event,
        }
