"""Turn ledger sums (integer Wh) into the figures the API publishes (kWh)."""

from __future__ import annotations

from collections.abc import Mapping

from dispatch.metrics import jain_index
from dispatch.rounding import LEDGER_FIELDS, LIBERATED_FIELDS


def kwh(wh: int) -> float:
    """Wh as kWh, rounded to the Wh."""
    return round(wh / 1000.0, 3)


def member_figures(t: dict[str, int]) -> dict[str, float | int | None]:
    """Every published figure of one member (or of the coop) from ledger sums."""
    served = (t["own_pv_used"] + t["from_battery"] + t["from_peers"] + t["from_coop_battery"]
              + t["from_grid"])
    liberated = sum(t[f] for f in LIBERATED_FIELDS)
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



def running_figures(by_member: Mapping[str, Mapping[str, int | None]],
                    unwritten: Mapping[str, Mapping[str, int]], intervals: int,
                    ) -> tuple[dict[str, dict], dict]:
    """Each member's and the coop's figures from committed sums plus the Wh not on disk yet
    (``unwritten``: intervals waiting for the writer and the open interval), with Jain's
    index over the members' self-sufficiency in the coop's figures."""
    per_member: dict[str, dict] = {}
    coop: dict[str, int] = dict.fromkeys(LEDGER_FIELDS, 0)
    for member, committed in by_member.items():
        sums = {k: v or 0 for k, v in committed.items()}
        for k, v in unwritten.get(member, {}).items():
            sums[k] = sums.get(k, 0) + v
        for k, v in sums.items():
            coop[k] = coop.get(k, 0) + v
        per_member[member] = member_figures(sums | {"intervals": intervals})
    figures = member_figures(coop | {"intervals": intervals})
    figures["jain_fairness"] = jain_index(
        [f["self_sufficiency"] for f in per_member.values() if f["self_sufficiency"] is not None])
    return per_member, figures
