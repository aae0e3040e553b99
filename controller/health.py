"""Health of each device: last good read, errors, and back-off after failures.

A failing device is retried after 2 s × consecutive failures, capped at
5 minutes (the policy OpenEMS uses for defective components), so one dead
inverter never slows the cycle for everyone else.

Every time here is on the *controller's* clock (:class:`DeviceClock` over
``Controller.clock``), not the wall clock: on a simulated clock at 2000× a
wall-clock back-off of 2 s would keep a device out for 4000 simulated seconds,
dozens of cycles, after a single hiccup. Only the network I/O itself (a Modbus
request's timeout) is measured in wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

BACKOFF_STEP_S = 2.0
#: Failures in a row after which a device is taken for dead rather than hiccuping: its
#: back-off doubles from then on (2, 4, … 10 s, then 20, 40, … s).
BACKOFF_LINEAR = 5
BACKOFF_MAX_S = 300.0


def backoff_s(failures: int, max_s: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait after ``failures`` failures in a row: 2 s more per failure while it
    may be a hiccup (so one is retried at once), doubling once it looks dead, capped."""
    if failures <= BACKOFF_LINEAR:
        return min(BACKOFF_STEP_S * failures, max_s)
    doublings = min(failures - BACKOFF_LINEAR, 64)  # 2**64 s is past any cap
    return min(BACKOFF_STEP_S * BACKOFF_LINEAR * 2.0 ** doublings, max_s)


@dataclass(slots=True)
class DeviceHealth:
    """What the controller knows about one device's reliability.

    Every ``now`` and timestamp is in seconds of the controller's clock.
    """

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
    #: The longest back-off, clock seconds (a sped-up clock's is longer: see
    #: :func:`scaled_backoff_max_s`).
    backoff_max_s: float = BACKOFF_MAX_S

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
        self.backoff_until = now + backoff_s(self.consecutive_failures, self.backoff_max_s)

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


class DeviceClock:
    """The clock device health runs on: the controller's clock, never slower than wall time.

    Each call advances by the larger of the controller clock's increase and the
    monotonic wall clock's increase since the last call:

    * sped-up simulated clock (the demo, ``island rehearse``): the controller's
      clock wins, so a back-off of 2 s is 2 simulated seconds, a cycle or less;
    * real time: both increase alike, so health behaves as on the wall clock; an
      NTP step back of the wall clock (``time.time``) is not seen (the monotonic
      increase wins), so back-off deadlines cannot stretch by the step;
    * a held or stepped clock (tests, a rehearsal before its start): wall time
      still passes, so a device backed off while the clock stands still is retried
      after at most its wall-clock back-off, as before.

    Args:
        clock: the controller's clock, seconds.
        wall: a monotonic wall clock (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float],
                 wall: Callable[[], float] = time.monotonic) -> None:
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()  # the API may ask for health from another thread
        self._last = (clock(), wall())
        self._now = self._last[0]

    def __call__(self) -> float:
        """Seconds of device time."""
        with self._lock:
            raw, wall = self._clock(), self._wall()
            self._now += max(raw - self._last[0], wall - self._last[1], 0.0)
            self._last = (raw, wall)
            return self._now


def scaled_backoff_max_s(cycle_s: float, nominal_dt_s: float) -> float:
    """The longest back-off on a clock whose cycle stands for ``nominal_dt_s`` seconds:
    :data:`BACKOFF_MAX_S` is 300 cycles of 1 s in real time, and stays 300 cycles on a
    sped-up clock, so a dead device (a battery that dropped out) does not cost a read
    timeout every few cycles. The first back-offs are not scaled: a hiccup is retried at
    once (the grid-former's confirmation must not wait)."""
    return BACKOFF_MAX_S * max(nominal_dt_s / cycle_s, 1.0)


def scaled_stale_after_s(stale_after_s: float, cycle_s: float, nominal_dt_s: float) -> float:
    """``stale_after_s`` on a clock whose cycle stands for ``nominal_dt_s`` seconds.

    The configured staleness is meant for the configured cycle (5 s = 5 cycles of
    1 s). On a sped-up or stepped clock one cycle covers ``nominal_dt_s`` clock
    seconds, so the same number of cycles is ``stale_after_s × nominal_dt_s /
    cycle_s`` clock seconds; in real time (``nominal_dt_s == cycle_s``) it is
    unchanged. The back-off's first steps are deliberately not scaled: it is a policy
    in clock seconds, so on a fast clock a failed device is retried within a few
    cycles; only its cap is (:func:`scaled_backoff_max_s`).
    """
    for name, value in (("stale_after_s", stale_after_s), ("cycle_s", cycle_s),
                        ("nominal_dt_s", nominal_dt_s)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    return stale_after_s * nominal_dt_s / cycle_s
