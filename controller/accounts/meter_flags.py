"""Meters whose counters and measured power disagreed, for the installer's health view.

Settling an interval on a meter's counters (:mod:`controller.ledger.settle`) names the
meter in the interval's ``flagged`` column when its counter and what its measured power
estimated differ beyond the threshold, and keeps the difference per member
(``meter_import_drift``, ``meter_export_drift``, signed Wh). Here both are read back
for a recent window: which meters, in how many intervals, by how many Wh.
"""

from __future__ import annotations

import json

from controller.ledger import LedgerReader
from controller.ledger.schema import DRIFT_FIELDS, MEMBER_COLUMNS

#: The health view looks back this far from the newest committed interval.
WINDOW_S = 86400


def flagged_meters(reader: LedgerReader, window_s: int = WINDOW_S) -> dict[str, dict]:
    """``<member>/meter`` → ``intervals`` flagged in the window, the ``last_flagged_ts``
    (start of the newest such interval), and ``import_drift_wh`` / ``export_drift_wh``:
    the counter less the measured-power estimate, summed over the flagged intervals.

    The window ends at the ledger's newest committed interval (the controller's clock,
    simulated in the demo), not at the wall clock.
    """
    end = reader.span()[1]
    if end is None:
        return {}
    out: dict[str, dict] = {}
    for row in reader.intervals(end - window_s, end):
        if not row["flagged"]:
            continue
        meters = json.loads(str(row["flagged"]))
        members = {name.split("/")[0]: name for name in meters}
        for start_ts, member, *values in reader.raw_rows(row["start_ts"], row["end_ts"]):
            if member not in members:
                continue
            entry = out.setdefault(members[member], {"intervals": 0, "last_flagged_ts": None,
                                                     "import_drift_wh": 0,
                                                     "export_drift_wh": 0})
            entry["intervals"] += 1
            entry["last_flagged_ts"] = start_ts
            drift = dict(zip(MEMBER_COLUMNS, values, strict=True))
            for name, key in zip(DRIFT_FIELDS, ("import_drift_wh", "export_drift_wh"),
                                 strict=True):
                entry[key] += int(drift[name] or 0)
    return out
