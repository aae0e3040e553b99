"""Typed answers of the routes that build plain dicts: health, devices, the live view,
whoami, overrides and opt-outs, the audit log.

Like :class:`api.summary_model.CoopSummary`, these are the document's promise, declared
with :func:`api.contract.answers` (``responses=``), not a step of the response: the routes
keep sending what they sent (FastAPI's encoding of the dict, no re-validation on the
way out), and ``tests/test_openapi_contract.py`` holds every real answer to its model, field
by field. Where a part is open by nature (a device reading's driver fields, an audit
row's detail), the model says so with ``extra="allow"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """A shape whose documented fields are always there, and that may carry more."""

    model_config = ConfigDict(extra="allow")


# --- /api/v1/whoami -------------------------------------------------------------------


class WhoAmI(BaseModel):
    """The caller as the API sees it (``public`` without a token)."""

    role: Literal["public", "member", "installer", "coordinator"] = Field(
        description="what the token may do")
    member: str | None = Field(description="a member token's own member id")
    label: str | None = Field(description="the token's label")
    token_id: str | None = Field(description="the token's id (for `token revoke`)")
    expires_ts: float | None = Field(description="Unix seconds: when the token expires")


# --- overrides and opt-outs -------------------------------------------------------------


class OverrideShown(BaseModel):
    """One override (or opt-out), in force (``ended_ts`` null) or ended."""

    id: int = Field(description="its id, for DELETE")
    kind: Literal["battery_setpoint", "load_switch", "shed_optout"]
    member: str = Field(description="member id")
    start_ts: float = Field(description="Unix seconds, controller clock")
    end_ts: float = Field(description="Unix seconds, controller clock: it lapses then")
    end: str = Field(description="end_ts as ISO 8601, UTC")
    created_by: str = Field(description="the label of the token that started it")
    power_w: float | None = Field(description="battery_setpoint: W, discharge > 0 (the "
                                  "safety layer may still clamp it)")
    load_id: str | None = Field(description="load_switch and shed_optout: the load's "
                                "device name, member/loadN")
    on: bool | None = Field(description="load_switch: held on (true) or off (false)")
    ended_ts: float | None = Field(description="Unix seconds: ended early or lapsed; null "
                                   "while in force")
    ended_by: str | None = Field(description="the label that ended it early, or "
                                 "'lapsed'; null while in force")


# --- /api/v1/audit ----------------------------------------------------------------------


class AuditHead(BaseModel):
    """The chain's last row: note it to check later that nothing was cut off the end."""

    seq: int = Field(description="its seq (0: an empty log)")
    hash: str | None = Field(description="its SHA-256, hex")


class AuditRow(BaseModel):
    """An audit row (``source: audit``, chained by hash) or a grid transition from the
    ledger (``source: ledger``: no seq or hashes)."""

    source: Literal["audit", "ledger"]
    seq: int | None = Field(None, description="audit rows: position in the chain")
    ts: float = Field(description="Unix seconds, controller clock")
    who: str = Field(description="the token's label (a hidden member's: its pseudonym)")
    role: str
    action: str = Field(description="e.g. token.create, island.command, grid.transition")
    detail: Any = Field(description="what was asked: an object, or the text as written")
    outcome: str = Field(description="accepted, refused: the reasons, done, ...")
    prev_hash: str | None = Field(None, description="audit rows: the previous row's hash")
    hash: str | None = Field(None, description="audit rows: SHA-256 of this row")
    redacted: bool | None = Field(None, description="true where a hidden member was "
                                  "replaced by its pseudonym: check the hash on the raw "
                                  "log (/api/v1/audit/verify)")


class AuditLogPage(BaseModel):
    """Audit rows and grid transitions, oldest first."""

    head: AuditHead
    rows: list[AuditRow]


class AuditVerdict(BaseModel):
    """The hash chain recomputed."""

    ok: bool = Field(description="no row deleted or edited (and the head found, if given)")
    rows: int = Field(description="rows checked")
    head: str | None = Field(description="the last row's hash")
    problems: list[str] = Field(description="each deleted or edited row, named")


# --- /api/v1/devices --------------------------------------------------------------------


class MeterDrift(BaseModel):
    """A meter counter against what the ledger booked through it over the last 24 h."""

    metered_kwh: float | None = Field(description="kWh: the meter's own counter")
    booked_kwh: float | None = Field(description="kWh: what the ledger booked")
    drift_kwh: float | None = Field(description="kWh: metered - booked")
    limit_kwh: float | None = Field(description="kWh: the drift allowed")
    flagged: bool = Field(description="past the limit")


class DeviceCounters(BaseModel):
    """The device's energy counters since the controller started."""

    counted_wh: dict[str, float] = Field(description="Wh by counter, as the device counted")
    integrated_power_wh: dict[str, float] = Field(description="Wh by counter, from the "
                                                  "measured power over time")
    counter_resets: int = Field(description="times a counter went backwards")


class Device(_Open):
    """One configured device's health at the last cycle's end."""

    name: str = Field(description="member/device")
    kind: str = Field(description="meter, pv, battery, load, ...")
    endpoint: str = Field(description="where it is read: host:port/unit or an MQTT topic")
    state: Literal["ok", "unknown", "backoff"]
    last_good_age_s: float | None = Field(description="seconds since the last good read")
    last_error: str | None
    errors_total: int
    reads_total: int
    consecutive_failures: int
    backoff_remaining_s: float = Field(description="seconds before the next attempt")
    last_event: str | None = Field(description="the last change of state, in words")
    reading: dict[str, Any] | None = Field(description="the last good reading: the "
                                           "driver's fields, W, Wh and %; null before one")
    counters: DeviceCounters
    messages_refused: int | None = Field(description="MQTT only: messages on its topics "
                                         "not read (over a limit, malformed)")
    drift: dict[str, MeterDrift] | None = Field(None, description="meters only: by "
                                                "counter (import, export)")
    drift_flagged: bool | None = Field(None, description="meters only: any drift flagged")


# --- /healthz ---------------------------------------------------------------------------


class DeviceStates(BaseModel):
    """How many devices are in each state."""

    ok: int
    unknown: int
    backoff: int


class Health(_Open):
    """The controller's health; 200 while cycles run on time, else 503 with the same body."""

    status: Literal["ok", "degraded", "stale", "ledger-failing", "mqtt-reader-down",
                    "no-device-ok", "ledger-only"]
    ledger_intervals: int = Field(description="committed settlement intervals")
    ledger_last_end: int | None = Field(description="Unix seconds: the last one's end")
    checked_at: float = Field(description="Unix seconds, wall clock")
    ledger: str | None = Field(None, description="the ledger writer: ok or failing")
    ledger_detail: dict[str, Any] | None = Field(None, description="the writer's reason, "
                                                 "intervals waiting, committed this run")
    cycle_s: float | None = Field(None, description="seconds per cycle")
    last_cycle_age_s: float | None = Field(None, description="wall seconds since the last "
                                           "cycle ended")
    devices: DeviceStates | None = None
    mqtt_reader: dict[str, Any] | None = Field(None, description="the MQTT reader's state, "
                                               "since, reason, restarts and client id")
    timeseries: dict[str, Any] | None = Field(None, description="the time-series sender: "
                                              "state (ok, down, config-error), url, pending "
                                              "and dropped points, failures")
    rolling_plan: dict[str, Any] | None = Field(None, description="the rolling plan on the "
                                                "grid (when `[dispatch] plan` is on): status, "
                                                "the forecast it trusted and that forecast's "
                                                "skill, solves and errors")


# --- /api/v1/live -----------------------------------------------------------------------


class LiveCoop(BaseModel):
    """The coop's sums over the members read this cycle; null where none is known."""

    pv_w: float | None = Field(description="W")
    load_w: float | None = Field(description="W")
    grid_w: float | None = Field(description="W, import > 0")
    battery_w: float | None = Field(description="W, discharge > 0")
    soc_pct: float | None = Field(description="%, capacity-weighted")
    members_read: int
    members: int


def _flow(what: str) -> Any:
    return Field(description=f"W, average over the cycle: {what}")


class LiveFlows(BaseModel):
    """The dispatch's flows as average W over the cycle (null before a dispatch)."""

    own_pv_used: float | None = _flow("own PV used by own loads")
    to_peers: float | None = _flow("PV given to neighbours")
    from_grid: float | None = _flow("imported for the loads")
    to_grid: float | None = _flow("exported")
    to_battery: float | None = _flow("into batteries")
    from_battery: float | None = _flow("out of batteries")
    curtailed: float | None = _flow("PV curtailed")
    shed: float | None = _flow("load not served")


class LiveMember(BaseModel):
    """The caller's own household this cycle (a member token only)."""

    id: str
    pv_w: float | None = Field(None, description="W")
    load_w: float | None = Field(None, description="W")
    grid_w: float | None = Field(None, description="W, import > 0")
    battery_w: float | None = Field(None, description="W, discharge > 0")
    soc_pct: float | None = Field(None, description="%")


class LiveCycle(BaseModel):
    """The last cycle's coop-wide flows, SoC and grid state; the data of each ``cycle``
    event of the stream."""

    seq: int = Field(description="cycles since this controller started")
    event_id: int = Field(description="the cycle's end in ms on the controller's clock "
                          "(the stream's event id; grows across restarts)")
    ts: float = Field(description="Unix seconds, controller clock: the cycle's end")
    grid_state: str | None = Field(description="ON_GRID, OFF_GRID, ...; null without a "
                                   "grid supervisor")
    islanded: bool | None
    coop: LiveCoop
    flows_w: LiveFlows
    member: LiveMember | None = Field(None, description="a member token's own figures")
