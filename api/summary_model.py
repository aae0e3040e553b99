"""The typed shape of ``GET /api/v1/coop/summary``.

The route builds plain numbers and sends them through orjson (bench/api_bench.py: FastAPI's
encoder cost more than the ledger read), so this model is the document's promise, not a
step of the response; ``tests/test_api_contract_models.py`` holds the two to each other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Figures(BaseModel):
    """A member's (or the coop's) running figures, kWh booked to the Wh, since the start."""

    liberated_kwh: float = Field(description="served load that came from coop generation")
    served_kwh: float
    load_kwh: float
    own_pv_used_kwh: float
    from_battery_kwh: float
    from_battery_coop_kwh: float
    from_peers_kwh: float
    from_coop_battery_kwh: float
    from_grid_kwh: float
    shed_kwh: float
    pv_kwh: float
    to_battery_kwh: float
    to_peers_kwh: float
    to_coop_battery_kwh: float
    to_grid_kwh: float
    curtailed_kwh: float
    curtailed_command_kwh: float = Field(0.0, description="part of curtailed held back by a "
                                         "cap Commonwatt set islanded (the island's surplus)")
    curtailed_export_cap_kwh: float = Field(0.0, description="part of curtailed held back by "
                                            "the export cap at the point of common coupling")
    curtailed_grid_former_kwh: float = Field(0.0, description="part of curtailed held back, "
                                             "islanded, by a full grid-former's frequency shift")
    battery_from_coop_kwh: float
    battery_to_coop_kwh: float
    grid_to_battery_kwh: float
    losses_kwh: float
    self_sufficiency: float | None = Field(description="liberated / load; null with no load")
    intervals: int
    gap_hours: float
    unknown_hours: float
    unallocated_import_kwh: float
    unallocated_export_kwh: float
    unallocated_pv_kwh: float
    from_federation_kwh: float = Field(description="received from other coops of the "
                                       "federation (liberated where the charter says so)")
    to_federation_kwh: float = Field(description="sent to other coops of the federation")


class CoopSummary(Figures):
    """Coop-wide totals, the sovereignty figures and each member's own (pseudonymous unless
    public or the caller's)."""

    members: int
    jain_fairness: float | None = Field(description="Jain's index of the members' "
                                        "self-sufficiency: 1 is perfectly even")
    shared_peer_to_peer_kwh: float
    unserved_kwh: float
    hours_islanded: float
    first_interval_start: int | None = Field(description="Unix seconds")
    last_interval_end: int | None = Field(description="Unix seconds")
    settlement_s: int
    provisional: bool = Field(description="includes the open settlement interval")
    committed_until: int | None = Field(description="Unix seconds; later figures are "
                                        "provisional")
    open_interval_start: float | None = Field(description="Unix seconds, while the "
                                              "controller runs")
    cycles: int | None
    controller_down_hours: float
    by_member: dict[str, Figures] = Field(description="by member id or pseudonym")
