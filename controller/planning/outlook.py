"""The plan for the next hours, as the pages show it (issue 22, point 5).

Hour by hour from the plan in force: the battery's target state of charge at the end of
each hour and what is expected from neighbours and coop batteries in it
(:class:`~controller.planning.expected.Expected`). A member sees only its own battery
and its own expected sharing; the coop's outlook is every battery together and the sum
of sharing, so no household can be read from it.
"""

from __future__ import annotations

import numpy as np

from controller.planning.expected import Expected

HOURS = 12


def outlook(solved_at: float, expected: Expected, index: int | None = None,
            hours: int = HOURS) -> dict[str, object]:
    """Hourly rows from ``solved_at``: ``at`` (Unix s, the hour's end), ``target_pct``
    (None without a battery), ``shared_kwh``; ``index``: one member's, None: the coop's."""
    per_hour = max(1, round(3600 / expected.step_s))
    steps = min(len(expected.target_wh), hours * per_hour) // per_hour * per_hour
    target, shared, cap = expected.target_wh, expected.shared_wh, expected.capacity_wh
    if index is None:
        stored, shared, cap_total = target.sum(axis=1), shared.sum(axis=1), cap.sum()
    else:
        stored, shared, cap_total = target[:, index], shared[:, index], cap[index]
    rows = []
    for h in range(steps // per_hour):
        end = (h + 1) * per_hour
        pct = None if cap_total <= 0 else round(float(stored[end - 1] / cap_total * 100), 1)
        rows.append({"at": solved_at + end * expected.step_s, "target_pct": pct,
                     "shared_kwh": round(float(np.sum(shared[end - per_hour:end])) / 1000, 3)})
    return {"solved_at": solved_at, "has_battery": bool(cap_total > 0), "hours": rows}
