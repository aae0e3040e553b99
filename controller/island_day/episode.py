"""An island episode as the ledger's grid transitions tell it: when and why.

:func:`island_times` gives when the island was asked for, confirmed, left and
the grid reconnected; :func:`reason_counts` how many rows carry each reason code
(:mod:`controller.island.reasons`): sheds, refusals, alerts and state changes.
Used by ``rehearsal.json``, the rehearsal's printout and the island report.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def island_times(transitions: list[dict]) -> dict:
    """When the island was asked for (``GOING_OFF_GRID``), confirmed (``OFF_GRID``), left
    (``RETURNING``) and the grid reconnected (``ON_GRID`` after it), ISO UTC or None where
    it did not happen, and the seconds islanded between confirmation and reconnection.
    Only changes of state count (refusals and sheds keep the state)."""
    changes = [t for t in transitions if not t["refused"] and t["from"] != t["to"]]

    def first(to: str, after: float = -math.inf) -> float | None:
        return next((float(t["ts"]) for t in changes
                     if t["to"] == to and float(t["ts"]) >= after), None)

    off = first("OFF_GRID")
    on = None if off is None else first("ON_GRID", off)
    return {"commanded_at": _iso(first("GOING_OFF_GRID")), "islanded_at": _iso(off),
            "returning_at": _iso(None if off is None else first("RETURNING", off)),
            "reconnected_at": _iso(on),
            "islanded_for_s": None if off is None or on is None else round(on - off, 1)}


def reason_counts(transitions: list[dict], kind: str | None = None) -> dict[str, int]:
    """Rows per reason code; ``kind`` ``shed`` or ``refused`` keeps the shedding's rows
    of that kind only (their cause starts with it)."""
    out: dict[str, int] = {}
    for t in transitions:
        code = t.get("reason")
        if not code or (kind is not None and not str(t.get("cause", "")).startswith(kind + " ")):
            continue
        out[code] = out.get(code, 0) + 1
    return out
