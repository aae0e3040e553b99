"""What ``island rehearse`` says while it runs: plain lines on stderr.

A rehearsal spends seconds planning, then a minute or more running the day, then
seconds drawing the report; a person at the terminal (or a log reading it) should see
which, and how the island is going: the simulated time, the grid state, how long it
has been islanded and how much load was shed so far. Lines, not a redrawn bar, so the
same text reads well on a terminal, in a pipe and in a service's journal.

A cycle line goes out at most every :data:`EVERY_S` wall seconds, and at once when the
grid state changes (the moments worth seeing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

#: Wall seconds between two cycle lines, when the grid state does not change: a 24 h
#: rehearsal at the default speed (about a minute) prints about a dozen.
EVERY_S = 5.0
PREFIX = "island rehearse: "


class ProgressLines:
    """Phase lines and rate-limited cycle lines on ``stream``."""

    def __init__(self, stream: TextIO, speed: float, every_s: float = EVERY_S,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.speed, self.every_s, self.wall = stream, speed, every_s, wall
        self._last_at: float | None = None
        self._last_state: str | None = None

    def phase(self, text: str) -> None:
        """One line saying what the rehearsal does now."""
        self._write(text)

    def cycle(self, sim_ts: float, state: str, islanded_s: float, shed_wh: float,
              missed: int) -> bool:
        """After a cycle: a line if the state changed or :attr:`every_s` passed; whether
        one was written."""
        now = self.wall()
        due = self._last_at is None or now - self._last_at >= self.every_s
        if not due and state == self._last_state:
            return False
        self._last_at, self._last_state = now, state
        self._write(cycle_line(sim_ts, self.speed, state, islanded_s, shed_wh, missed))
        return True

    def _write(self, text: str) -> None:
        self.stream.write(PREFIX + text + "\n")
        self.stream.flush()


def cycle_line(sim_ts: float, speed: float, state: str, islanded_s: float, shed_wh: float,
               missed: int) -> str:
    """``simulated 03:15 UTC (2000×), OFF_GRID, islanded 1 h 12 min, shed 0.35 kWh``."""
    clock = datetime.fromtimestamp(sim_ts, UTC).strftime("%H:%M")
    minutes = round(islanded_s / 60.0)
    islanded = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    line = (f"simulated {clock} UTC ({speed:g}×), {state}, islanded {islanded}, "
            f"shed {shed_wh / 1000.0:.2f} kWh")
    return line + (f", {missed} cycles missed" if missed else "")
