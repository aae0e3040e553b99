"""Clocks: wall time, or simulated time running N times faster."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class SimClock:
    """Simulated seconds since midnight of the simulated day.

    ``speed`` simulated seconds pass per wall-clock second. A clock with
    ``speed == 0`` only moves when :meth:`advance` is called, which is what
    tests use to step a coop deterministically.
    """

    start_s: float = 9 * 3600.0
    speed: float = 1.0
    _offset: float = field(default=0.0, init=False)
    _wall0: float = field(default_factory=time.monotonic, init=False)

    def now(self) -> float:
        """Simulated time in seconds."""
        return self.start_s + self._offset + (time.monotonic() - self._wall0) * self.speed

    def advance(self, seconds: float) -> float:
        """Move simulated time forward by ``seconds`` and return the new time."""
        self._offset += seconds
        return self.now()
