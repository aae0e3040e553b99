"""The control cycle: poll, freeze, dispatch, write setpoints, commit the ledger."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from controller.agent.inbox import inbox_for
from controller.config import CoopConfig
from controller.cycle_booking import CycleBooking
from controller.cycle_loads import LoadSwitching
from controller.fleet_dispatch import EngineKeeper, FleetParams, detached
from controller.governance.overrides import (
    OverrideStore,
    battery_overrides,
    load_states,
    opted_out,
)
from controller.health import DeviceClock, scaled_backoff_max_s, scaled_stale_after_s
from controller.island.ac_coupling import coupling, standing_refusals
from controller.island.curtail import pv_limits
from controller.island.curtail_estimate import (
    CurtailEstimator,
)
from controller.island.eve_run import IslandEve
from controller.island.follow import PlanFollower
from controller.island.grid_loss import GridLossLoads, evidence, flexible_loads
from controller.island.grid_model import (
    DEFAULT_TIMEOUTS,
    GridState,
    GridTimeouts,
    IslandCommand,
    TransitionRecord,
)
from controller.island.guard import ShedGuard, protected_loads
from controller.island.live import GridSupervisor
from controller.island.pilot import Readings
from controller.island.reasons import shed_causes, transition_reason
from controller.island.shed_log import ShedLog
from controller.island.shedding import ShedPlanner
from controller.island.transition import island_ready_battery_w
from controller.ledger import CommittedInterval, IntervalBook, LedgerWriter
from controller.ledger.accumulator import unpack_state
from controller.ledger.measured import (
    stored_from_soc,
)
from controller.planning.hook import RollingPlan
from controller.polling import Poller
from controller.process_image import ProcessImage
from controller.safety import clamp_setpoints
from dispatch import CoopLimits, Fleet, FleetState, TickResult

if TYPE_CHECKING:
    from controller.federation.booking import CoopFederation

#: How long a load switched off by Commonwatt stays off unless the mandate is renewed.
SHED_MANDATE_S = 300
#: A cycle longer than this many nominal cycles is not dispatched whole: the
#: controller was stopped or stalled, and the readings say nothing about the
#: time before. That time is booked from what the devices counted meanwhile (the
#: meters' counters, the batteries' SoC: controller/ledger/gap.py), else as a gap.
MAX_GAP_CYCLES = 5


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the API's live view and for tests."""

    image: ProcessImage
    start_ts: float
    end_ts: float
    result: TickResult | None
    setpoints_w: np.ndarray
    committed: list[CommittedInterval]
    duration_s: float
    #: Per member, load an overloaded grid-former dropped (estimated), Wh: part of
    #: ``result.shed``, but not a decision of the dispatch.
    dropped_wh: np.ndarray | None = None
    #: Per cause, PV held back as estimated (controller/island/curtail_estimate.py), Wh.
    held_back_wh: dict[str, np.ndarray] | None = None
    #: What the ledger booked: the cycle as measured (battery flows from the measured
    #: battery power), split by origin. ``result`` is the dispatch's plan (setpoints).
    booked: TickResult | None = None


class Controller(CycleBooking, LoadSwitching):
    """Runs cycles for one coop against its devices and its ledger.

    Args:
        config: the validated configuration.
        clock: returns the timestamp (s) used for intervals; wall time in
            production, simulated time in the demo and tests.
        nominal_dt_s: the interval one cycle stands for on that clock.
    """

    def __init__(
        self, config: CoopConfig, clock: Callable[[], float], nominal_dt_s: float | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.nominal_dt_s = nominal_dt_s or config.controller.cycle_s
        self.member_ids = tuple(m.id for m in config.members)
        # The ledger first: a second controller on the same ledger stops here.
        self.writer = LedgerWriter(config.storage.ledger, config.ledger.settlement_s,
                                   [(m.id, m.name) for m in config.members])
        try:
            # Device health on this clock, not the wall's: at 2000x a wall-clock back-off
            # keeps a device (the grid-former's confirmation) out for dozens of cycles.
            self.poller = Poller(config, clock=DeviceClock(clock), stale_after_s=(
                scaled_stale_after_s(config.controller.stale_after_s, config.controller.cycle_s,
                                     self.nominal_dt_s)),
                backoff_max_s=scaled_backoff_max_s(config.controller.cycle_s, self.nominal_dt_s))
        except BaseException:
            self.writer.close()
            raise
        parts, last_committed = self.writer.saved_parts()
        acc, carry = unpack_state(parts.get("acc"), parts.get("carry"), self.member_ids)
        if last_committed is not None and (acc is None or acc.start_ts < last_committed):
            acc = None  # the saved accumulators were committed already
            carry.end_ts = max(carry.end_ts or last_committed, last_committed)
        self.book = IntervalBook(self.member_ids, config.ledger.settlement_s, acc, carry)
        # The configured expiry on the real clock. On a sped-up or stepped clock a cycle
        # spans nominal_dt_s / cycle_s times more device time, and so does the expiry: the
        # same number of cycles (config check refuses an expiry shorter than one cycle).
        self.setpoint_expiry_s = math.ceil(scaled_stale_after_s(
            config.controller.setpoint_expiry_s, config.controller.cycle_s, self.nominal_dt_s))
        self.last_report: CycleReport | None = None
        self.last_cycle_wall: float | None = None
        batteries = [m.device("battery") for m in config.members]
        self._reserve_pct = np.array([b.reserve_pct if b else 0.0 for b in batteries])
        self._hysteresis_pct = np.array([b.reserve_hysteresis_pct if b else 0.0
                                         for b in batteries])
        self._floor_pct = np.array([b.soc_floor_pct if b else 0.0 for b in batteries])
        self._offered = np.array([bool(b and b.offered) for b in batteries])
        self._grid_forming = np.array([bool(b and b.grid_forming) for b in batteries])
        self._grid_charge = np.array([bool(b and b.grid_charging) for b in batteries])
        self._efficiency = np.array([b.efficiency if b else 1.0 for b in batteries])
        self._limit_w = np.array(
            [b.max_power_w if b and b.max_power_w else np.inf for b in batteries]
        )
        tiers = {"critical": 0, "essential": 1, "flexible": 2}
        self._tier = np.array([tiers[m.tier] for m in config.members], dtype=np.int64)
        self._key = np.array([m.key for m in config.members])
        #: One fleet and dispatch engine, kept until the devices' ratings or the islanded
        #: flag change (controller/fleet_dispatch.py).
        self.engines = EngineKeeper(FleetParams(
            self._floor_pct, self._reserve_pct, self._hysteresis_pct, self._offered,
            self._grid_forming, self._grid_charge, self._efficiency, self._limit_w, self._tier,
            self._key), config.policy.sharing)
        grid = config.grid
        # The grid's timeouts span at least 3 cycles, as the setpoints' do: on a sped-up
        # clock a cycle can be longer than the time a grid-former gets to confirm.
        dt3 = 3 * self.nominal_dt_s
        self.grid = GridSupervisor(self._record_transition, GridTimeouts(
            max(DEFAULT_TIMEOUTS.unknown_s, dt3), max(DEFAULT_TIMEOUTS.confirm_s, dt3),
            max(DEFAULT_TIMEOUTS.return_s, dt3)))
        self.islanded = False
        self.grid.standing_refusals = standing_refusals(config)  # factor-1.0 rule (#21)
        #: Islanded, grid-formers charge from AC-coupled PV only to this SoC (#21.3).
        self._ceiling_pct = (config.island.ac_charge_ceiling_pct
                             if coupling(config).pv_va > 0 else 100.0)
        pvs = [m.device("pv") for m in config.members]
        self._pv_rated_w = np.array([(p.params.get("rated_w") if p else None) or np.inf
                                     for p in pvs])
        self.pv_caps_w = np.full(len(config.members), np.nan)  # caps in force
        has_loads = any(d.kind == "load" for m in config.members for d in m.devices)
        self.mandate_s = max(SHED_MANDATE_S, math.ceil(3 * self.nominal_dt_s))
        self.shedder = (ShedPlanner.from_config(config, mandate_s=self.mandate_s)
                        if has_loads else None)
        #: The island eve (#21): batteries to the plan's starting SoC before the island day.
        self.eve = IslandEve(self.member_ids, np.array([b is not None for b in batteries]),
                             config.plan_path, config.storage.ledger, config.island.eve_h)
        #: Unplanned grid loss (#21): every flexible plug off in the cycle that sees it.
        self.grid_loss = GridLossLoads(flexible_loads(config), self.mandate_s)
        #: Guard rails on shedding islanded (#21): one plug tier per pass, stop and alert.
        self.shed_guard = ShedGuard(settle_s=max(60.0, 2 * self.nominal_dt_s))
        self._protected_loads = protected_loads(config)  # infrastructure and medical
        self.shed_alert: str | None = None  # the guard's last alert, until the island is whole
        self.shed_log = ShedLog(self.member_ids, self.writer.record)  # with reason codes
        #: Each member's demand before the grid-former last reported an overload, W.
        self._demand_before_w = np.zeros(len(config.members))
        #: … and its ratio to the plan's demand forecast then (NaN: none).
        self._demand_ratio = np.full(len(config.members), np.nan)
        #: PV held back by a cap or the grid-former, estimated each cycle.
        self.curtail_estimator = CurtailEstimator(len(config.members))
        #: Islanded, the plan followed and re-planned (controller/island/pilot.py).
        self.follower = PlanFollower(config.plan_path, list(self.member_ids),
                                     config.island.replan_min * 60.0)
        #: On-grid, the rolling plan's battery targets ([dispatch] plan; None: greedy alone).
        self.plan = RollingPlan.from_config(config) if config.dispatch.plan else None
        #: A coordinator's overrides (controller/governance/overrides.py), applied before the
        #: safety layer.
        self.overrides = OverrideStore()
        self._override_loads: dict[str, bool] = {}  # load id → on, held by an override now
        self._override_off: set[str] = set()  # loads an override switched off
        self._opted_out: frozenset[str] = frozenset()  # loads members keep from shedding
        self._caps = (grid.import_cap_w or float("inf"), grid.export_cap_w
                      if grid.export_cap_w is not None else float("inf"))
        #: Surplus shared with other coops over bridged brokers ([federation] in the config).
        self.federation = self._open_federation() if config.federation else None
        #: Each battery's content at the end of the last cycle this process booked, Wh
        #: (NaN: unknown): a stall after it is booked from the SoC's change
        #: (controller/ledger/gap.py). None until then: time the controller was down is
        #: a gap, as the readings of a controller that was not running never were.
        self._stored_mark: np.ndarray | None = None
        #: Each agent-fed member's newest reading (ts, counters): where a gap began.
        self._last_agent_reading: dict[str, tuple[float, np.ndarray]] = {}
        #: Numbered readings from households' edge agents, each booked once.
        self.agents = inbox_for(config, lambda: self.book.acc.start_ts if self.book.acc
                                else None)

    def _open_federation(self) -> CoopFederation:
        from controller.federation.booking import CoopFederation
        from controller.federation.charter import load_charter

        assert self.config.federation is not None
        fed = CoopFederation(load_charter(self.config.federation.charter), self.writer,
                             self.member_ids, self.config.ledger.settlement_s,
                             self.config.policy.sharing, self._key, self._tier,
                             clock=self.clock)
        fed.start()
        return fed

    def _record_transition(self, record: TransitionRecord) -> None:
        self.writer.record((record.ts, record.from_state.name, record.to_state.name,
                            record.cause, record.requested_by, int(record.refused),
                            transition_reason(record.cause).value))

    @property
    def last_end_ts(self) -> float | None:
        """Time up to which the ledger has booked."""
        return self.book.carry.end_ts

    def fleet(self, image: ProcessImage, islanded: bool | None = None) -> Fleet:
        """Battery parameters for this cycle: device ratings capped by the configured limits
        (as islanded when ``islanded``, default: whether the coop is)."""
        return self.engines.params.fleet(image, self.islanded if islanded is None else islanded)

    def limits(self) -> CoopLimits:
        """The point of common coupling's caps, and whether the coop is islanded now."""
        export = 0.0 if self.eve.no_export else self._caps[1]  # the island eve exports nothing
        return CoopLimits(self._caps[0], export, islanded=self.islanded,
                          charge_ceiling_pct=self._ceiling_pct)

    def _cycle_start(self, now: float) -> float:
        end = self.last_end_ts
        if end is None or now - end > MAX_GAP_CYCLES * self.nominal_dt_s:
            return now - self.nominal_dt_s
        return end

    async def cycle(self) -> CycleReport:
        """Run one full cycle and return what it did."""
        wall0 = time.perf_counter()
        await self.poller.poll()
        now = self.clock()
        image = self.poller.freeze(now)
        device_grid, former_ok = self.poller.grid_view()
        # The grid-former's status, or the meters' voltage and frequency (island/grid_loss.py).
        device_grid, cause = evidence(self.grid.machine.state, device_grid,
                                      self.poller.meter_grid())
        unknown = tuple(self.poller.unknown_devices())
        stale = tuple(n for n in unknown if n.endswith("/meter"))
        self.islanded = self.grid.update(replace(
            self.grid.inputs_from(image, device_grid, former_ok, stale), grid_cause=cause), now)
        await self.eve.step(now, self.grid.machine, self.grid.command, image.soc_pct, self.poller)
        fleet = self.engines.fleet(image, self.islanded)
        carry = self.book.carry
        stored = stored_from_soc(image.soc_pct, fleet.capacity_wh)
        pools_before = np.asarray(carry.pools_wh, dtype=float).copy()
        pools = np.clip(carry.pools_wh, 0.0, stored)
        start = self._cycle_start(now)
        result = booked = None
        committed: list[CommittedInterval] = []
        setpoints = np.zeros(len(self.member_ids))
        # Plugs Commonwatt holds off still belong to the demand: the dispatch sees them,
        # books them as shed, and so knows when there is room to bring them back.
        held = self.shedder.held_w() if self.shedder is not None else np.zeros(len(stored))
        demand = np.where(image.valid, image.load_w + held, 0.0)
        self._follow_plan(image, now, stored, demand)
        planned = self.follower.shed_w(now, self.islanded)
        # What the plan sheds and a plug already holds off is not served: booked as shed
        # before the dispatch shares what is left.
        pre_shed = np.where(image.valid, np.minimum(held, planned), 0.0)
        dropped = self._dropped_w(demand, np.where(image.valid, held, 0.0), image.valid, now)
        need_w = held_back = causes = None
        caps_w = self.pv_caps_w.copy()  # the caps in force during this cycle
        if now > start and (self.last_end_ts is None or now > self.last_end_ts):
            limits = self.limits()
            hours = (now - start) / 3600.0

            targets = self.plan.targets(now, fleet, limits) if self.plan else None

            def tick(load_w: np.ndarray) -> TickResult:
                if targets is not None and self.plan is not None:
                    return self.plan.tick(fleet, FleetState(stored, pools, carry.held),
                                          image.pv_production_w, load_w, image.valid,
                                          now - start, self.config.policy.sharing, limits,
                                          targets)
                return self.engines.tick(fleet, FleetState(stored, pools, carry.held),
                                         image.pv_production_w, load_w, image.valid, now - start,
                                         limits)

            result = tick(demand - pre_shed)
            # What the coop must shed, held plugs counted as demand (so the planner knows
            # when there is room to bring them back) ...
            need_w = result.shed / hours + np.maximum(planned - pre_shed, 0.0) + dropped
            causes = shed_causes(result.shed / hours, np.maximum(planned - pre_shed, 0.0),
                                 dropped, self.islanded and not self.grid.machine.in_force)
            held_off = np.where(image.valid, held, 0.0)
            if held_off.any():
                # ... but what is booked and set is what happens: a load held off is off.
                result = tick(demand - held_off)
                pre_shed = held_off
            # A new array: flows of stages that did not run share one zeros buffer.
            result.shed = result.shed + (pre_shed + dropped) * hours
            book_start, book_image, book_state = self._booking(
                image, start, fleet, FleetState(stored, pools, carry.held))
            # Held off, what the loads would have drawn, not what they drew when switched off.
            held_demand = np.where(pre_shed > 0, self._held_demand_w(held, now), 0.0)
            # Safety wins over the dispatch and over an override: the reserve on-grid, the
            # hard floor islanded.
            active = self.overrides.active(now)
            self._override_loads = load_states(active)
            self._opted_out = opted_out(active)
            battery_w = result.battery_w
            if self.grid.machine.state is GridState.GOING_OFF_GRID:  # island/transition.py
                battery_w = island_ready_battery_w(
                    self.fleet(image, True), FleetState(stored, pools, carry.held),
                    image.pv_production_w, demand - pre_shed, image.valid, now - start,
                    self.config.policy.sharing, self._caps)
            battery_w = self.eve.orders_w(battery_w, fleet.max_charge_w, image.soc_pct,
                                          image.capacity_wh, now - start)
            setpoints = clamp_setpoints(
                battery_overrides(np.where(image.valid, battery_w, 0.0),
                                  self.member_ids, active),
                image.soc_pct,
                self._floor_pct if limits.islanded else self._reserve_pct,
                fleet.max_charge_w,
                fleet.max_discharge_w,
            )
        await self.poller.write_setpoints(
            setpoints, image.has_battery & image.battery_ok, self.setpoint_expiry_s
        )
        await self._hold_for_grid_loss(now)
        if result is not None:
            await self._curtail(image, result, now - start)
            await self._shed(need_w, now, causes)
            await self._switch_overridden_loads()
            # The booked cycle ends once its commands are out: what this cycle read stands
            # until then (a battery holds its last setpoint until the new one), and what the
            # next reads from then on. On a sped-up clock the commands go out many
            # simulated seconds after the reads; ending at the reads booked each new
            # setpoint from before it was written. Unless they took long (a stalled machine):
            # then the reading stands for nothing beyond its own time, and the next cycle
            # (or the stall, controller/ledger/gap.py) books the rest.
            booked, held_back = self._book(
                start, now, image, fleet, limits, (book_start, book_image, book_state),
                held_demand + dropped, (pools_before, pools, stored), caps_w, unknown,
                committed)
            if self.plan is not None:
                self.plan.after_cycle(now, fleet, stored, image.pv_production_w, demand,
                                      image.valid, limits)
            if self.agents is not None:
                self.agents.heartbeat()
            self.writer.save(self.book.open_parts())
        report = CycleReport(image, start, now, None if result is None else detached(result),
                             setpoints, committed,
                             time.perf_counter() - wall0, dropped * ((now - start) / 3600.0),
                             held_back, booked)
        self.last_report = report
        self.last_cycle_wall = time.monotonic()
        return report

    async def _curtail(self, image: ProcessImage, result: TickResult, dt_s: float) -> None:
        """Cap inverters whose PV nothing can absorb (islanded, or past the export cap)."""
        curtailed_w = np.where(image.valid, result.curtailed / (dt_s / 3600.0), 0.0)
        caps = pv_limits(image.pv_w, curtailed_w, self.pv_caps_w, self._pv_rated_w)
        if np.isfinite(caps).any() or np.isfinite(self.pv_caps_w).any():
            await self.poller.write_pv_limits(caps, self.pv_caps_w, self.setpoint_expiry_s)
        self.pv_caps_w = caps

    def _follow_plan(self, image: ProcessImage, now: float, stored: np.ndarray,
                     demand: np.ndarray) -> None:
        """Islanded, keep the island plan current (re-planned from these readings)."""
        command = self.grid.command
        end_ts = command.end_ts if isinstance(command, IslandCommand) else None
        readings = Readings(np.where(image.has_battery, stored, np.nan),
                            image.has_battery & image.battery_ok,
                            np.where(image.valid, image.pv_production_w, 0.0), demand)
        # Loads within their minimum on/off times are given to the re-plan (issue 21.8).
        locks = (self.shedder.locks(now, self.poller.load_readings())
                 if self.islanded and self.shedder is not None else ())
        self.follower.step(now, self.islanded, readings, end_ts, locks)

    def close(self) -> None:
        """Close device connections; write what the ledger still holds, then release it."""
        self.follower.close()
        if self.plan is not None:
            self.plan.close()
        self.poller.close()
        if self.federation is not None:
            self.federation.close()
        if self.agents is not None:
            self.agents.stop()
        self.writer.close()
