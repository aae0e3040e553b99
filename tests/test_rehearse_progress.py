"""The rehearsal's progress lines: their wording and their rate (a fake wall clock)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from controller.island_day.rehearse_progress import ProgressLines, cycle_line

T0 = datetime(2026, 6, 21, 3, 15, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("islanded_s", "shed_wh", "missed", "expected"), [
    (0.0, 0.0, 0, "simulated 03:15 UTC (2000×), OFF_GRID, islanded 0 min, shed 0.00 kWh"),
    (4290.0, 354.0, 0, "simulated 03:15 UTC (2000×), OFF_GRID, islanded 1 h 12 min, "
                       "shed 0.35 kWh"),
    (3600.0, 12_500.0, 3, "simulated 03:15 UTC (2000×), OFF_GRID, islanded 1 h 00 min, "
                          "shed 12.50 kWh, 3 cycles missed"),
])
def test_a_cycle_line_says_the_simulated_time_the_state_and_the_shed(
        islanded_s: float, shed_wh: float, missed: int, expected: str) -> None:
    assert cycle_line(T0, 2000, "OFF_GRID", islanded_s, shed_wh, missed) == expected


def test_cycle_lines_come_every_few_seconds_and_at_once_on_a_state_change() -> None:
    out, wall = io.StringIO(), [0.0]
    lines = ProgressLines(out, 1440, every_s=5.0, wall=lambda: wall[0])
    written = []
    for t, state in [(0.0, "ON_GRID"), (1.0, "ON_GRID"), (2.0, "GOING_OFF_GRID"),
                     (3.0, "GOING_OFF_GRID"), (6.9, "GOING_OFF_GRID"),
                     (7.0, "GOING_OFF_GRID"), (8.0, "OFF_GRID")]:
        wall[0] = t
        written.append(lines.cycle(T0 + t * 1440, state, 0.0, 0.0, 0))
    assert written == [True, False, True, False, False, True, True]
    assert all(line.startswith("island rehearse: simulated ")
               for line in out.getvalue().splitlines())
