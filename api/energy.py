"""Turn ledger sums (integer Wh) into the figures the API publishes (kWh)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dispatch.metrics import jain_index
from dispatch.rounding import LIBERATED_FIELDS


def kwh(wh: int) -> float:
    """Wh as kWh, rounded to the Wh."""
    return round(wh / 1000.0, 3)


def member_figures(t: dict[str, int]) -> dict[str, float | int | None]:
    """Every published figure of one member (or of the coop) from ledger sums."""
    served = (t["own_pv_used"] + t["from_battery"] + t["from_peers"] + t["from_coop_battery"]
              + t["from_grid"])
    liberated = sum(t[f] for f in LIBERATED_FIELDS) + (t.get("from_federation_liberated") or 0)
    pv = (t["own_pv_used"] + t["to_battery"] + t["to_peers"] + t["to_coop_battery"]
          + t["to_grid"] + t["curtailed"])
    return {
        "liberated_kwh": kwh(liberated),
        "served_kwh": kwh(served),
        "load_kwh": kwh(served + t["shed"]),
        "own_pv_used_kwh": kwh(t["own_pv_used"]),
        "from_battery_kwh": kwh(t["from_battery"]),
        "from_battery_coop_kwh": kwh(t["from_battery_coop"]),
        "from_peers_kwh": kwh(t["from_peers"]),
        "from_coop_battery_kwh": kwh(t["from_coop_battery"]),
        "from_grid_kwh": kwh(t["from_grid"]),
        "shed_kwh": kwh(t["shed"]),
        "pv_kwh": kwh(pv),
        "to_battery_kwh": kwh(t["to_battery"]),
        "to_peers_kwh": kwh(t["to_peers"]),
        "to_coop_battery_kwh": kwh(t["to_coop_battery"]),
        "to_grid_kwh": kwh(t["to_grid"]),
        "curtailed_kwh": kwh(t["curtailed"]),
        "battery_from_coop_kwh": kwh(t["battery_from_coop"]),
        "battery_to_coop_kwh": kwh(t["battery_to_coop"]),
        "grid_to_battery_kwh": kwh(t["grid_to_battery"]),
        "losses_kwh": kwh(t["losses"]),
        # Served out of load: shed load (islanded) counts against self-sufficiency.
        "self_sufficiency": round(liberated / (served + t["shed"]), 4)
        if served + t["shed"] else None,
        "intervals": t["intervals"],
        **gap_figures(t),
        "from_federation_kwh": kwh(t.get("from_federation") or 0),
        "to_federation_kwh": kwh(t.get("to_federation") or 0),
    }


def gap_figures(t: dict) -> dict[str, float | None]:
    """What the dispatch did not book: gap hours, and what the meters counted meanwhile."""
    return {
        "gap_hours": round((t.get("gap_s") or 0) / 3600.0, 3),
        "unknown_hours": round((t.get("unknown_s") or 0) / 3600.0, 3),
        "unallocated_import_kwh": kwh(t.get("unallocated_import") or 0),
        "unallocated_export_kwh": kwh(t.get("unallocated_export") or 0),
        "unallocated_pv_kwh": kwh(t.get("unallocated_pv") or 0),
    }



def _figure_columns(sums: np.ndarray, col: dict[str, int], intervals: int
                    ) -> dict[str, list]:
    """:func:`member_figures` for many rows at once: ``sums`` is members × fields (Wh)."""
    def c(name: str) -> np.ndarray:
        i = col.get(name)
        return sums[:, i] if i is not None else np.zeros(len(sums), dtype=np.int64)

    served = (c("own_pv_used") + c("from_battery") + c("from_peers") + c("from_coop_battery")
              + c("from_grid"))
    liberated = sum((c(f) for f in LIBERATED_FIELDS), c("from_federation_liberated"))
    pv = (c("own_pv_used") + c("to_battery") + c("to_peers") + c("to_coop_battery")
          + c("to_grid") + c("curtailed"))
    load = served + c("shed")
    # Integer Wh / 1000 is the float kwh() gives: its rounding to 3 places changes nothing.
    out: dict[str, list] = {
        "liberated_kwh": (liberated / 1000.0).tolist(),
        "served_kwh": (served / 1000.0).tolist(),
        "load_kwh": (load / 1000.0).tolist(),
    }
    for f in _KWH_FIELDS:
        out[f + "_kwh"] = (c(f) / 1000.0).tolist()
    out["pv_kwh"] = (pv / 1000.0).tolist()
    out["self_sufficiency"] = [round(a / b, 4) if b else None
                               for a, b in zip(liberated.tolist(), load.tolist(), strict=True)]
    out["intervals"] = [intervals] * len(sums)
    out["gap_hours"] = [round(g / 3600.0, 3) for g in c("gap_s").tolist()]
    out["unknown_hours"] = [round(g / 3600.0, 3) for g in c("unknown_s").tolist()]
    for f in ("unallocated_import", "unallocated_export", "unallocated_pv", "from_federation",
              "to_federation"):
        out[f + "_kwh"] = (c(f) / 1000.0).tolist()
    return out


#: Fields published as they are, in :func:`member_figures`' order.
_KWH_FIELDS = ("own_pv_used", "from_battery", "from_battery_coop", "from_peers",
               "from_coop_battery", "from_grid", "shed", "to_battery", "to_peers",
               "to_coop_battery", "to_grid", "curtailed", "battery_from_coop",
               "battery_to_coop", "grid_to_battery", "losses")
#: The order of :func:`member_figures`' keys.
_ORDER = ("liberated_kwh", "served_kwh", "load_kwh", "own_pv_used_kwh", "from_battery_kwh",
          "from_battery_coop_kwh", "from_peers_kwh", "from_coop_battery_kwh", "from_grid_kwh",
          "shed_kwh", "pv_kwh", "to_battery_kwh", "to_peers_kwh", "to_coop_battery_kwh",
          "to_grid_kwh", "curtailed_kwh", "battery_from_coop_kwh", "battery_to_coop_kwh",
          "grid_to_battery_kwh", "losses_kwh", "self_sufficiency", "intervals", "gap_hours",
          "unknown_hours", "unallocated_import_kwh", "unallocated_export_kwh",
          "unallocated_pv_kwh", "from_federation_kwh", "to_federation_kwh")


def running_figures(by_member: Mapping[str, Mapping[str, int | None]],
                    unwritten: Mapping[str, Mapping[str, int]], intervals: int,
                    ) -> tuple[dict[str, dict], dict]:
    """Each member's and the coop's figures from committed sums plus the Wh not on disk yet
    (``unwritten``: intervals waiting for the writer and the open interval), with Jain's
    index over the members' self-sufficiency in the coop's figures.

    The same figures as :func:`member_figures` per member (its reference; a test compares
    them), computed over every member at once.
    """
    members = list(by_member)
    names = sorted({k for sums in by_member.values() for k in sums}
                   | {k for extra in unwritten.values() for k in extra})
    col = {k: i for i, k in enumerate(names)}
    # The reader hands dicts: one pass to a members × fields matrix.
    sums = np.array([[committed.get(k) or 0 for k in names]
                     for committed in by_member.values()], dtype=np.int64
                    ).reshape(len(members), len(names))
    index = {m: row for row, m in enumerate(members)}
    for member, extra in unwritten.items():
        if member in index:
            for k, v in extra.items():
                sums[index[member], col[k]] += v
    columns = _figure_columns(sums, col, intervals)
    per_member = {m: dict(zip(_ORDER, values, strict=True))
                  for m, values in zip(members, zip(*(columns[k] for k in _ORDER), strict=True),
                                       strict=True)}
    total = _figure_columns(sums.sum(axis=0, keepdims=True), col, intervals)
    figures = {k: total[k][0] for k in _ORDER}
    figures["jain_fairness"] = jain_index(
        [x for x in columns["self_sufficiency"] if x is not None])
    return per_member, figures
