"""The typed shape of ``GET /api/v1/coop/summary`` and of a member's running figures.

The summary route builds plain numbers and sends them through orjson (bench/api_bench.py:
FastAPI's encoder cost more than the ledger read), so :class:`CoopSummary` is the
document's promise, not a step of the response; ``tests/test_api_contract_models.py``
holds the two to each other. :class:`RunningFigures` is also the base of a member's
``/energy`` answer (``api.app.Energy``): one set of fields and descriptions for both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from controller.accounts.figures import ENERGY_DOCS


def _kwh(name: str, default: Any = ...) -> Any:
    """A kWh figure, described by :data:`controller.accounts.figures.ENERGY_DOCS`."""
    return Field(default, description=f"kWh, booked to the Wh: {ENERGY_DOCS[name]}")


class RunningFigures(BaseModel):
    """A member's (or the coop's) figures in kWh, booked to the Wh, since the start (or
    over the period asked)."""

    liberated_kwh: float = _kwh("liberated")
    served_kwh: float = _kwh("served")
    load_kwh: float = _kwh("load")
    own_pv_used_kwh: float = _kwh("own_pv_used")
    from_battery_kwh: float = _kwh("from_battery")
    from_battery_coop_kwh: float = _kwh("from_battery_coop")
    from_peers_kwh: float = _kwh("from_peers")
    from_coop_battery_kwh: float = _kwh("from_coop_battery")
    from_grid_kwh: float = _kwh("from_grid")
    shed_kwh: float = _kwh("shed")
    pv_kwh: float = _kwh("pv")
    to_battery_kwh: float = _kwh("to_battery")
    to_peers_kwh: float = _kwh("to_peers")
    to_coop_battery_kwh: float = _kwh("to_coop_battery")
    to_grid_kwh: float = _kwh("to_grid")
    curtailed_kwh: float = _kwh("curtailed")
    battery_from_coop_kwh: float = _kwh("battery_from_coop")
    battery_to_coop_kwh: float = _kwh("battery_to_coop")
    grid_to_battery_kwh: float = _kwh("grid_to_battery")
    losses_kwh: float = _kwh("losses")
    self_sufficiency: float | None = Field(
        description="ratio 0..1: liberated / load (shed load counts against it); null "
                    "with no load")
    intervals: int = Field(description="settlement intervals booked")
    gap_hours: float = Field(description="hours the dispatch did not book this member "
                             "(controller down, or a device unknown)")
    unknown_hours: float = Field(description="hours, part of the gap with no meter "
                                 "counter: energy unknown, never taken as zero")
    unallocated_import_kwh: float = _kwh("unallocated_import")
    unallocated_export_kwh: float = _kwh("unallocated_export")
    unallocated_pv_kwh: float = _kwh("unallocated_pv")
    from_federation_kwh: float = _kwh("from_federation")
    to_federation_kwh: float = _kwh("to_federation")


class CoopSummary(RunningFigures):
    """Coop-wide totals, the sovereignty figures and each member's own (pseudonymous unless
    public or the caller's)."""

    members: int = Field(description="members in the ledger")
    jain_fairness: float | None = Field(description="Jain's index of the members' "
                                        "self-sufficiency: 1 is perfectly even")
    shared_peer_to_peer_kwh: float = Field(description="kWh: PV given between members "
                                           "(to_peers_kwh)")
    unserved_kwh: float = Field(description="kWh: load not served (shed_kwh)")
    hours_islanded: float = Field(description="hours the coop ran as an island")
    first_interval_start: int | None = Field(description="Unix seconds")
    last_interval_end: int | None = Field(description="Unix seconds")
    settlement_s: int = Field(description="seconds per settlement interval")
    provisional: bool = Field(description="includes the open settlement interval")
    committed_until: int | None = Field(description="Unix seconds; later figures are "
                                        "provisional")
    open_interval_start: float | None = Field(description="Unix seconds, while the "
                                              "controller runs")
    cycles: int | None = Field(description="dispatch cycles booked")
    controller_down_hours: float = Field(description="hours no controller booked the coop")
    by_member: dict[str, RunningFigures] = Field(description="by member id or pseudonym")
