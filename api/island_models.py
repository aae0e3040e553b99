"""The requests and typed answers of ``/api/v1/island``: the grid state, the plan and its
progress, the transitions, and what a command answers.

Declared with :func:`api.contract.answers` like :mod:`api.route_models` (the routes keep
sending their dicts; ``tests/test_openapi_contract.py`` holds the answers to these). Times are
Unix seconds on the controller's clock (simulated in the demo), energies kWh, powers W.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.island.grid_model import MAX_ISLAND_S


class IslandRequest(BaseModel):
    """A coordinator's request to run the coop as an island."""

    requested_by: str = Field(min_length=1, max_length=80, description=(
        "a note of who asks, kept in the audit row's detail; the row's who is the token's "
        "label"))
    start: datetime | None = Field(None, description="when to start; now if absent")
    hours: float = Field(gt=0, le=MAX_ISLAND_S / 3600, description="how long; it lapses then")
    required_soc_pct: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False, description=(
            "the required starting coop SoC; by default the saved plan's (for every tier "
            "to hold where it can, else critical and essential)"))


class ReturnRequest(BaseModel):
    """A coordinator's request to end the island early."""

    requested_by: str = Field(min_length=1, max_length=80)


GridState = Literal["UNDEFINED", "ON_GRID", "GOING_OFF_GRID", "OFF_GRID", "RETURNING"]


class GridTransition(BaseModel):
    """A change of grid state, or a refused command."""

    time: str = Field(description="ISO 8601, UTC")
    ts: float | None = Field(None, description="Unix seconds (/transitions only)")
    from_: str = Field(alias="from", description="the state before")
    to: str = Field(description="the state after (the same one when refused)")
    cause: str | None = Field(description="why, in words")
    requested_by: str | None = Field(description="who asked, for a command")
    refused: bool
    reason: str | None = Field(None, description=(
        "reason code (controller/island/reasons.py): why the state changed, the command was "
        "refused, a load was shed or kept on; /transitions only, null in rows written before"))

    model_config = ConfigDict(populate_by_name=True)


class ShedEvent(BaseModel):
    """A load shed or kept on islanded, or the guard rails' alert, with its reason code."""

    ts: float = Field(description="Unix seconds, the controller's clock")
    kind: Literal["shed", "refused", "alert"] = Field(
        description="shed; refused: kept on; alert: the guard stopped shedding")
    load: str | None = Field(description="the load (member/loadN); null for an alert")
    member: str | None
    reason: str = Field(description="reason code (controller/island/reasons.py)")
    detail: str


class ProtectedLoad(BaseModel):
    """A load never shed, and why (``medical`` only for its member and coordinators)."""

    load: str
    member: str
    reason: str


class Shedding(BaseModel):
    """Islanded shedding: the guard rails' passes and alert, recent events, protected loads."""

    model_config = ConfigDict(extra="allow")

    passes: int | None = Field(None, description="guard passes that opened a tier, this episode")
    max_passes: int | None = Field(None, description="the most passes in one episode")
    alerts: int | None = Field(None, description="alerts raised since the controller started")
    alert: str | None = Field(None, description="the guard's alert in force")
    events: list[ShedEvent] = Field(description="the last 50, oldest first")
    protected: list[ProtectedLoad] = Field(default_factory=list)


class IslandCommandShown(BaseModel):
    """The command in force: an island planned (start and end) or an early return (ts)."""

    kind: Literal["island", "return"]
    requested_by: str
    start_ts: float | None = Field(None, description="island: Unix seconds")
    end_ts: float | None = Field(None, description="island: Unix seconds; it lapses then")
    required_soc_pct: float | None = Field(None, description="island: %, required at start")
    ts: float | None = Field(None, description="return: Unix seconds")


class Autonomy(BaseModel):
    """Hours of autonomy at the current net load: capacity × (SoC − floor) / net load."""

    capacity_kwh: float = Field(description="kWh of the batteries known")
    floor_kwh: float = Field(description="kWh kept as the batteries' floors")
    above_floor_kwh: float = Field(description="kWh usable above the floors")
    net_load_w: float = Field(description="W: load less PV of the members read")
    battery_w: float = Field(description="W the batteries deliver now, discharge > 0")
    batteries_known: int
    members_read: int
    hours: float | None = Field(description="null while the sun covers the load")


class PlanFollowed(BaseModel):
    """The plan the controller re-plans and follows while islanded."""

    model_config = ConfigDict(extra="allow")

    plan_file: str | None = Field(None, description="where the saved plan is read from")
    problem: str | None = Field(None, description="why the plan cannot be followed, if so")
    replanning: bool | None = Field(None, description="a re-plan is running")
    planned_at: float | None = Field(None, description="Unix seconds; null before a plan")
    plans_made: int | None = None
    replan_s: float | None = Field(None, description="seconds between re-plans")
    feasible: dict[str, bool] | None = Field(None, description="per tier: whether nothing "
                                             "of it is shed")
    autonomy_h: dict[str, float | None] | None = Field(None, description="hours, as "
                                                       "planned")
    shed_now_w: float | None = Field(None, description="W the plan sheds now")
    shed_tiers_kwh: dict[str, float] | None = Field(None, description="kWh shed by tier")


class IslandStatus(BaseModel):
    """The grid state, the command in force, the grid-former's view and the coop's SoC."""

    model_config = ConfigDict(extra="allow")

    state: GridState
    since: float | None = Field(description="Unix seconds: in this state since")
    islanded: bool
    command: IslandCommandShown | None
    device_grid: Literal["on", "off", "unknown"] | None = Field(
        description="the grid as the grid-forming inverter or the PCC meter sees it")
    coop_soc_pct: float | None = Field(description="%, capacity-weighted")
    recent: list[GridTransition] = Field(description="the last 20 transitions")
    now: float = Field(description="Unix seconds, the controller's clock")
    autonomy: Autonomy | None = Field(description="null before the first cycle")
    plan_followed: PlanFollowed | None
    shedding: Shedding | None = Field(None, description=(
        "reason codes of the shedding (a running controller's; #21)"))


class IslandAccepted(BaseModel):
    """A command accepted: the grid state machine takes it from the next cycle."""

    accepted: Literal[True]
    start_ts: float | None = Field(None, description="island: Unix seconds")
    end_ts: float | None = Field(None, description="island: Unix seconds; it lapses then")


class IslandPlan(BaseModel):
    """The saved plan as ``commonwatt island plan --json`` wrote it (the main keys here;
    the file carries more)."""

    model_config = ConfigDict(extra="allow")

    coop: str | None = None
    start: str = Field(description="ISO 8601")
    end: str = Field(description="ISO 8601")
    tz: str | None = Field(None, description="the coop's time zone")
    step_s: float = Field(description="seconds per step")
    steps: int | None = None
    scenario: str | None = Field(None, description="the weather scenario planned for")
    forecast: dict[str, Any] = Field(description="pv_kwh, and load_kwh by tier")
    feasible: dict[str, bool] = Field(description="per tier: whether nothing of it is shed")
    shed_kwh: dict[str, float] = Field(description="kWh shed by tier")
    curtailed_kwh: float = Field(description="kWh of PV curtailed")
    required_start: dict[str, Any] = Field(description="by tier: the coop and battery SoC "
                                           "required at start (coop_pct, coop_kwh, ...)")
    autonomy_h: dict[str, float | None] = Field(description="hours, by case")
    batteries: list[dict[str, Any]] = Field(description="each battery's capacity_kwh and "
                                            "planned soc_pct per step boundary")
    shed_schedule: list[dict[str, Any]] = Field(description="planned sheds: tier, start, "
                                                "end, kwh, members")


class PlanBooked(BaseModel):
    """What the ledger booked since the plan's start (committed intervals only)."""

    until: float | None = Field(description="Unix seconds; null before an interval")
    liberated_kwh: float | None = None
    load_kwh: float | None = None
    served_kwh: float | None = None
    shed_kwh: float | None = None
    curtailed_kwh: float | None = None
    pv_kwh: float | None = None
    from_grid_kwh: float | None = None
    intervals: int | None = None
    hours_islanded: float | None = Field(None, description="hours islanded")


class PlanPlanned(BaseModel):
    """What the plan planned: up to now, and over the day."""

    coop_soc_pct_now: float | None = Field(description="%")
    shed_kwh_so_far: float = Field(description="kWh planned to be shed by now")
    shed_kwh: dict[str, float | None] = Field(description="kWh by tier, the whole day")
    curtailed_kwh: float | None
    pv_kwh: float | None = Field(description="kWh forecast")
    load_kwh: float | None = Field(description="kWh forecast")


class NextShed(BaseModel):
    """The next planned shed."""

    tier: str
    start_ts: float
    end_ts: float
    kwh: float | None = Field(description="kWh planned to be shed")
    members: dict[str, Any] = Field(description="by member id or pseudonym")


class PlanOdds(BaseModel):
    """The odds the plan gave before the day."""

    p_held: dict[str, float] = Field(description="probability each tier holds")
    robust: bool
    not_robust_because: list[str]
    weak_points: list[dict[str, Any]] = Field(description="component and costs_p")
    weather_days: int
    reserve_met: bool
    capacity_shortage_kwh: float
    verdict: dict[str, str]


class PlanProgress(BaseModel):
    """The plan against the day so far."""

    coop: str | None
    start_ts: float
    end_ts: float
    now: float = Field(description="Unix seconds, the controller's clock")
    step_s: float
    scenario: str | None = None
    feasible: dict[str, bool] = Field(description="per tier: whether nothing of it is shed")
    required_start_pct: dict[str, float | None] = Field(description="coop SoC % required "
                                                        "at start, by tier")
    autonomy_h: dict[str, float | None] = Field(description="hours, as planned")
    planned: PlanPlanned
    booked: PlanBooked
    next_shed: NextShed | None
    coop_soc_pct: list[float | None] = Field(description="% at each step boundary")
    survival: PlanOdds | None
