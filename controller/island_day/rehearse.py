"""``commonwatt island rehearse``: the 24-hour energy island, rehearsed on the simulated coop.

Before islanding for real, the coop runs the whole day on the demo's simulated
coop (:mod:`simulators.coop`, SunSpec over real Modbus TCP on 127.0.0.1) with
the real controller (:class:`~controller.runtime.Runtime`, its API on a free
port) on a sped-up :class:`~simulators.clock.SimClock`, in about a minute:

1. the simulated coop starts (the first battery forms the grid, one member is
   ``critical``), with the day's events injected: a cloudy afternoon (PV × 0.3
   from 13:00 to 17:00) and the second battery dropping out at 14:00 (its gateway
   answers every request with a Modbus exception,
   :meth:`~simulators.coop.SimulatedCoop.add_dropout`), or a named scenario's
   (:mod:`controller.island_day.scenarios`; ``grid-loss`` is not commanded: the
   breaker opens by itself and the day runs to its end);
2. the island is planned from the simulator's own day without those events
   (:mod:`controller.island_day.rehearse_plan`) and the batteries are charged to the
   plan's required starting SoC; the plan is written to ``DIR/plan.json``;
3. the controller starts on a fresh ``DIR/ledger.sqlite`` with the simulated
   clock held at ``--start``; once it reports ``ON_GRID`` the island is asked
   for through its own API (``POST /api/v1/island/command`` on 127.0.0.1, for
   ``--hours``, with the plan's required SoC) and the clock is released;
4. after each cycle the rehearsal plays the coupling: it opens the simulated
   PCC breaker when the state is ``GOING_OFF_GRID`` and closes it when it is
   ``RETURNING`` (the command lapsing by itself); once ``ON_GRID`` again and the
   settlement interval holding the island's end is committed, the controller's
   API is asked for its shedding (reason codes) and the controller is stopped
   cleanly;
5. the island report (:mod:`controller.island_day.report`) is written into
   ``DIR`` beside ``rehearsal.json``: the run's own figures (wall time,
   cycles, cycles missed, cycle times, what the simulator could not serve,
   every battery's lowest SoC against its floor, the dispatch's tier order).

**Timing.** The controller's nominal cycle is ``cycle_s × speed`` simulated
seconds, as in the demo. At 1440× the config's 1 s cycle would stand for 24
simulated minutes, longer than a 15-minute settlement interval and coarse for
a day whose load and PV move within minutes; the rehearsal runs
``cycle_s`` = :data:`CYCLE_S` (0.05 s wall, 72 simulated seconds at 1440×):
measured on 10 households, a cycle (poll 28 devices, dispatch, setpoints,
ledger) takes ~15 ms median and ~25 ms p99, so 24 h run in ~60 s with about
1 % of the cycles missed (mostly the dropped battery's read timeouts).
Device timeouts are scaled with it: ``request_timeout_s`` 2 cycles of wall
time (network I/O), ``stale_after_s`` written as 10 wall cycles, which the
controller scales to its clock (:func:`controller.health.scaled_stale_after_s`).
Device back-off runs on the controller's clock (:class:`controller.health.DeviceClock`),
so a failed read is retried within a few cycles, not after seconds of wall time.
The price on a fast clock: a battery that stays dead is retried every few cycles
(its back-off caps at 300 simulated seconds) and each retry waits out a wall-clock
request timeout, so more cycles run long. Measured at 2000x, 6 h, 4 households,
one battery dead from 18:00: 90 of 162 cycles missed (47 retries), against 6 to 13
of ~210 with the wall-clock back-off, which in 1 of 3 runs kept the grid-former out
and never islanded. The garbage collector's objects are frozen once started, so a full collection
does not stall a cycle.

**Config.** The demo's TOML (:func:`simulators.demo_config.coop_toml`) with
every battery ``offered``: the plan pools the coop's batteries, so the island
must too. An embedded MQTT broker (amqtt, on 127.0.0.1) carries every third
house's smart plug (a simulated Shelly Plug with a 2 kW flexible appliance),
which the controller switches off when the plan or the dispatch sheds, and every
house that is not critical a household contactor (switched off last, when the
house's own tier is shed), so the plan's shed can be realised and the critical
house kept on.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.config import CoopConfig, parse_config
from controller.cycle import CycleReport
from controller.demo import start_embedded_broker
from controller.files import write_private
from controller.island.grid_model import GridState
from controller.island_day import scenarios
from controller.island_day.rehearse_plan import (
    Preparation,
    day_start,
    inject_events,
    plan_json,
    prepare,
)
from controller.island_day.rehearse_progress import ProgressLines
from controller.island_day.rehearse_report import finish
from controller.island_day.rehearse_setup import (
    CYCLE_S,
    HeldClock,
    RehearsalError,
    fresh_ledger,
    get_local,
    post_local,
    rehearsal_toml,
)
from controller.ledger import LedgerReader
from controller.runtime import Runtime
from simulators.coop import SimulatedCoop, free_port
from simulators.household import demo_households

REQUESTED_BY = "commonwatt island rehearse"


@dataclass(frozen=True, slots=True)
class RehearsalOptions:
    """What ``commonwatt island rehearse`` was asked for.

    ``cloud`` is (from hour, to hour, PV factor) on the simulated clock, ``dropout_hour``
    when the second battery stops answering; each at its first occurrence at or after
    ``start``. None leaves the event out. ``scenario`` names one of the library's
    (:mod:`controller.island_day.scenarios`) instead: its events replace those two.
    """

    hours: float = 24.0
    speed: float = 1440.0
    start: str = "00:00"
    out: Path = Path("var/rehearsal")
    households: int = 10
    cycle_s: float = CYCLE_S
    cloud: tuple[float, float, float] | None = (13.0, 17.0, 0.3)
    dropout_hour: float | None = 14.0
    progress: bool = True
    scenario: str | None = None


@dataclass
class CycleLog:
    """What every cycle after the start did (dispatch arrays are copies, Wh per member)."""

    end_ts: list[float] = field(default_factory=list)
    duration_s: list[float] = field(default_factory=list)
    missed: int = 0
    shed: list[np.ndarray] = field(default_factory=list)
    received: list[np.ndarray] = field(default_factory=list)  # from peers + coop batteries
    islanded: list[bool] = field(default_factory=list)
    #: Whether the plan in force (the latest re-plan) held the critical tier; None
    #: before the first re-plan.
    plan_critical_holds: list[bool | None] = field(default_factory=list)
    #: Per tier, whether the plan in force held it (None before the first re-plan).
    plan_holds: list[dict[str, bool] | None] = field(default_factory=list)
    #: PV the controller estimated held back, per cause, Wh per member (summed).
    held_back_wh: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Rehearsal:
    """A finished rehearsal: where it wrote, and what it measured."""

    options: RehearsalOptions
    out: Path
    config_path: Path
    ledger: Path
    plan_path: Path
    prep: Preparation
    member_ids: list[str]
    tiers: list[str]
    events: list[dict]
    wall_s: float
    start_ts: float
    end_ts: float
    cycles: CycleLog
    soc_t: np.ndarray  # simulator's SoC history: times
    soc_pct: np.ndarray  # … and SoC, times × households
    served_cum_wh: np.ndarray  # … and the load the houses had drawn by then, Wh
    floor_pct: np.ndarray
    has_battery: np.ndarray
    unserved_wh: np.ndarray
    island_curtailed_wh: np.ndarray
    served_wh: np.ndarray
    notes: list[str] = field(default_factory=list)
    device_errors: dict[str, int] = field(default_factory=dict)
    #: What the controller's plan follower did islanded (controller/island/follow.py).
    plan_followed: dict = field(default_factory=dict)
    #: Per household, demand a plug or contactor held off on the simulator, Wh.
    switched_off_wh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    report_files: list[Path] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    #: The simulator's load not served by then per tier (critical, essential, flexible),
    #: Wh, at the times of ``soc_t``.
    shed_tier_cum_wh: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    #: The grid-forming battery's household (index), None without one.
    former: int | None = None
    #: The simulator's PV per household, Wh: what the panels could give, what a cap held
    #: back, what the island held back (a full grid-former's frequency shift).
    pv_available_wh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    limit_curtailed_wh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The shedding's record: the guard's passes and alerts, events with reason codes.
    shedding: dict = field(default_factory=dict)

    #: The simulator's load not served by then per household (dropped by the island or
    #: held off by a switch), Wh, at the times of ``soc_t``.
    shed_cum_wh: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def served_between_wh(self, start_ts: float, end_ts: float) -> np.ndarray:
        """Load each house drew between two simulated times, from the simulator's history."""
        return _between(self.soc_t, self.served_cum_wh, start_ts, end_ts)

    def shed_between_wh(self, start_ts: float, end_ts: float) -> np.ndarray:
        """Load each house was not served between two simulated times (the island dropped
        it or a switch held it off), from the simulator's history."""
        return _between(self.soc_t, self.shed_cum_wh, start_ts, end_ts)

    def cycle_ms(self) -> dict[str, float]:
        """Median, p99 and max of the controller's cycle durations, ms."""
        d = np.asarray(self.cycles.duration_s) * 1000.0
        if d.size == 0:
            return {"median": 0.0, "p99": 0.0, "max": 0.0}
        return {"median": round(float(np.median(d)), 2),
                "p99": round(float(np.percentile(d, 99)), 2), "max": round(float(d.max()), 2)}


def _between(t: np.ndarray, cumulative: np.ndarray, start_ts: float,
             end_ts: float) -> np.ndarray:
    return np.array([np.interp(end_ts, t, c) - np.interp(start_ts, t, c)
                     for c in cumulative.T])


class _ObservedRuntime(Runtime):
    """The controller's runtime, with every cycle's report handed to an observer."""

    def __init__(self, config: CoopConfig, clock: Callable[[], float], nominal_dt_s: float,
                 observe: Callable[[CycleReport], None], before: Callable[[], None]) -> None:
        super().__init__(config, clock, nominal_dt_s)
        self._observe = observe
        self._before = before
        #: A cycle is in flight: the simulator holds still until it is done (see tick).
        self.in_cycle = False

    async def cycle_once(self) -> CycleReport | None:
        """The simulator's step, one cycle of the controller, then the observer."""
        self._before()
        self.in_cycle = True
        try:
            report = await super().cycle_once()
        finally:
            self.in_cycle = False
        if report is not None:
            self._observe(report)
        return report


class _Session:
    """One rehearsal in flight: the coop, the controller, the breaker and the log."""

    def __init__(self, options: RehearsalOptions, coop: SimulatedCoop, clock: HeldClock,
                 progress: ProgressLines | None) -> None:
        self.options, self.coop, self.clock, self.progress = options, coop, clock, progress
        self.log = CycleLog()
        self.done = asyncio.Event()
        self.state = GridState.UNDEFINED
        self.seen: list[GridState] = []
        self.soc_t: list[float] = []
        self.soc: list[np.ndarray] = []
        self.served: list[np.ndarray] = []
        self.shed_tier: list[np.ndarray] = []
        self.shed: list[np.ndarray] = []
        self.runtime: _ObservedRuntime | None = None
        self.islanded_s = 0.0  # for the progress lines
        self.shed_wh = 0.0
        self.deadline = math.inf
        self.settle_at: float | None = None
        self.device_errors: dict[str, int] = {}
        self.plan_followed: dict = {}
        #: The breaker's own schedule (simulated time, closed): a grid lost by itself.
        self.breaker: list[tuple[float, bool]] = []
        #: Whether the rehearsal commands the island (False: the grid goes by itself).
        self.commanded = True
        #: The shedding's record at the end (controller/island/shed_log.py).
        self.shedding: dict = {}

    def observe(self, report: CycleReport) -> None:
        """After each cycle: record it, and play the PCC breaker to the grid state."""
        assert self.runtime is not None
        self.state = state = self.runtime.controller.grid.machine.state
        if not self.seen or self.seen[-1] is not state:
            self.seen.append(state)
        if self.clock.held:
            return
        if self.settle_at is not None:  # back on the grid: waiting for the ledger, not logged
            if report.end_ts >= self.settle_at:
                self.done.set()
            return
        log = self.log
        nominal = self.runtime.controller.nominal_dt_s
        log.end_ts.append(report.end_ts)
        log.duration_s.append(report.duration_s)
        pilot = self.runtime.controller.follower.pilot
        in_force = pilot.plan if pilot is not None else None
        log.plan_holds.append(None if in_force is None else dict(in_force.feasible))
        log.missed += max(0, round((report.end_ts - report.start_ts) / nominal) - 1)
        if report.result is not None:
            r = report.result
            # The dispatch's own shed: the load an overloaded grid-former dropped is booked
            # as shed too, but the island dropped it, not the dispatch.
            dropped = report.dropped_wh if report.dropped_wh is not None else 0.0
            log.shed.append(r.shed - dropped)
            log.received.append(r.from_peers + r.from_coop_battery)
            for cause, wh in (report.held_back_wh or {}).items():
                log.held_back_wh[cause] = log.held_back_wh.get(cause, 0.0) + wh
            log.islanded.append(self.runtime.controller.islanded)
            self.shed_wh += float(r.shed.sum())
            if self.runtime.controller.islanded:
                self.islanded_s += report.end_ts - report.start_ts
            pilot = self.runtime.controller.follower.pilot
            followed = pilot.plan if pilot is not None else None
            log.plan_critical_holds.append(
                None if followed is None else bool(followed.feasible["critical"]))
        if state is GridState.GOING_OFF_GRID and self.coop.grid_connected:
            self.coop.grid_connected = False  # the grid-former opens the coupling
            self.coop.step()  # its registers say so before the next cycle reads them
        elif state is GridState.RETURNING and not self.coop.grid_connected:
            self.coop.grid_connected = True  # resynchronised: the breaker closes
            self.coop.step()
        elif state is GridState.ON_GRID and GridState.RETURNING in self.seen:
            # Reconnected: run on until the settlement interval holding the island's end is
            # committed, so the ledger books its islanded seconds (a 5-minute test island
            # ends inside its interval).
            if self.settle_at is None:
                step = self.runtime.controller.config.ledger.settlement_s
                self.settle_at = (report.end_ts // step + 1) * step + nominal
            if report.end_ts >= self.settle_at:
                self.done.set()
        elif report.end_ts > self.deadline:
            self.done.set()
        if self.progress is not None:
            self.progress.cycle(report.end_ts, state.name, self.islanded_s, self.shed_wh,
                                log.missed)

    def step(self) -> None:
        """The simulated coop's physics to now (the utility's own breaker schedule first:
        a grid lost by itself), and its history (SoC, drawn, shed)."""
        while self.breaker and not self.clock.held and self.breaker[0][0] <= self.clock.now():
            self.coop.grid_connected = self.breaker.pop(0)[1]  # the utility, not us
        self.coop.step()
        physics_t = self.coop.physics.time_s
        if not self.clock.held and physics_t is not None:
            # the history's time is the physics' own (what it integrated up to)
            self.soc_t.append(physics_t)
            self.soc.append(self.coop.physics.soc_pct())
            self.served.append(self.coop.physics.served_wh.copy())
            self.shed_tier.append(self.coop.physics.shed_by_tier_wh())
            self.shed.append(self.coop.physics.unserved_wh + self.coop.physics.switched_off_wh)

    async def tick(self, interval_s: float) -> None:
        """:meth:`step` every ``interval_s`` wall, and before every cycle, never during one.

        A step moves the simulated world by a minute or more at once (at 2000x, tens of
        ms of wall time; more on a loaded machine), so a step between two of a cycle's
        reads gave the controller the meter of one minute and the battery of the next:
        a skew no real process image has, which the books then carried (measured: single
        intervals off by 100-200 Wh). The physics catches up at the next step,
        integrating the whole span, so nothing is lost."""
        while True:
            if self.runtime is None or not self.runtime.in_cycle:
                self.step()
            await asyncio.sleep(interval_s)

    async def wait_for_state(self, state: GridState, timeout_s: float) -> None:
        """Wait (wall time) until the controller reports ``state``."""
        deadline = time.monotonic() + timeout_s
        while self.state is not state:
            if time.monotonic() > deadline:
                raise RehearsalError(f"the controller did not reach {state.name} within "
                                     f"{timeout_s:g} s (it is {self.state.name})")
            await asyncio.sleep(0.02)


async def _run(options: RehearsalOptions, session: _Session, config_path: Path,
               required_pct: float) -> tuple[float, list[str]]:
    """Start the controller, command the island, run the day; wall seconds and notes."""
    config = parse_config(config_path.read_text(encoding="utf-8"), str(config_path))
    runtime = _ObservedRuntime(config, session.clock.now, options.cycle_s * options.speed,
                               session.observe, session.step)
    session.runtime = runtime
    stop = asyncio.Event()
    ticker = asyncio.create_task(session.tick(min(options.cycle_s / 2, 0.05)))
    task = asyncio.create_task(runtime.run(stop))
    notes: list[str] = []
    began = time.monotonic()
    try:
        await runtime.wait_until_serving()
        await session.wait_for_state(GridState.ON_GRID, 30.0)
        if session.commanded:
            url = f"http://127.0.0.1:{config.api.port}/api/v1/island/command"
            status, body = await asyncio.to_thread(post_local, url, {
                "requested_by": REQUESTED_BY, "hours": options.hours,
                "required_soc_pct": math.floor(required_pct * 10) / 10}, config.storage.ledger)
            if status != 202:
                raise RehearsalError(f"the island command was refused ({status}): {body}")
            if session.progress is not None:
                session.progress.phase(f"island commanded for {options.hours:g} h; the day "
                                       f"runs at {options.speed:g}× on the simulated clock")
            session.deadline = float(body["end_ts"]) + max(
                3600.0, 20 * runtime.controller.nominal_dt_s)
        else:  # the grid goes by itself: the day runs to its end, on the grid or not
            if session.progress is not None:
                session.progress.phase(f"no island command: the grid goes by itself; the day "
                                       f"runs at {options.speed:g}× on the simulated clock")
            session.deadline = session.clock.now() + options.hours * 3600.0
        gc.collect()
        gc.freeze()  # a full collection of the imports' objects stalls a cycle ~0.2 s
        began = time.monotonic()
        session.clock.release()
        waiter = asyncio.create_task(session.done.wait())
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            raise RehearsalError("the controller stopped before the rehearsal ended")
        if GridState.RETURNING not in session.seen and session.commanded:
            notes.append(f"the island did not end by its deadline (last state "
                         f"{session.state.name})")
    finally:
        wall_s = time.monotonic() - began
        session.device_errors = {d["name"]: int(d["errors_total"]) for d in runtime.devices()
                                 if d["errors_total"]}
        session.plan_followed = runtime.controller.follower.status(session.clock.now())
        # The shedding as the controller's own API serves it (reason codes; #21).
        status, body = await asyncio.to_thread(
            get_local, f"http://127.0.0.1:{config.api.port}/api/v1/island",
            config.storage.ledger)
        session.shedding = body.get("shedding") or {} if status == 200 else {}
        stop.set()
        try:
            await task
        finally:
            ticker.cancel()
            gc.unfreeze()
    if GridState.OFF_GRID not in session.seen:
        notes.append("the grid-former never confirmed the island: nothing ran islanded")
    return wall_s, notes


async def rehearse(options: RehearsalOptions) -> Rehearsal:
    """Run the whole rehearsal and write ``DIR`` (see the module's docstring)."""
    if not 0 < options.hours <= 48:
        raise ValueError(f"--hours = {options.hours:g}: expected more than 0, at most 48")
    if options.households < 2:
        raise ValueError("--households: expected at least 2 (a grid-former and a neighbour)")
    out = options.out
    ledger = fresh_ledger(out)
    start_ts = day_start(options.start)
    clock = HeldClock(start_s=start_ts, speed=options.speed)
    broker_port = free_port()
    broker = await start_embedded_broker(broker_port, out)
    coop = SimulatedCoop(demo_households(options.households, plugs=True, contactors=True),
                         clock, mqtt=("127.0.0.1", broker_port), mqtt_access=broker.access)
    events, breaker = inject_events(coop, start_ts, options)
    progress = ProgressLines(sys.stderr, options.speed) if options.progress else None
    if progress is not None:
        progress.phase(f"planning a {options.hours:g} h island for {options.households} "
                       "simulated households (forecast and linear program)")
    prep = await asyncio.to_thread(prepare, coop, start_ts, options.hours)
    config_path, plan_path = out / "coop.toml", out / "plan.json"
    write_private(plan_path, json.dumps(plan_json(prep, "Commonwatt rehearsal coop")) + "\n")
    session = _Session(options, coop, clock, progress)
    session.breaker = breaker
    session.commanded = options.scenario is None or scenarios.get(options.scenario).commanded
    try:
        await coop.start()
        config_path.write_text(rehearsal_toml(coop, ledger.absolute(), free_port(), options.cycle_s,
                                              ("127.0.0.1", broker_port), broker.access,
                                              options.speed),
                               encoding="utf-8")
        if progress is not None:
            progress.phase("starting the simulated coop (Modbus TCP, MQTT) and the controller")
        wall_s, notes = await _run(options, session, config_path, prep.required_soc_pct)
    finally:
        await coop.stop()
        await broker.shutdown()
    physics = coop.physics
    specs = physics.specs
    result = Rehearsal(
        options, out, config_path, ledger, plan_path, prep,
        [s.member_id for s in specs], [s.tier for s in specs], events, wall_s, start_ts,
        clock.now(), session.log,
        np.asarray(session.soc_t), np.asarray(session.soc).reshape(-1, len(specs)),
        np.asarray(session.served).reshape(-1, len(specs)),
        np.array([s.soc_min_pct for s in specs]), physics.capacity_wh > 0,
        physics.unserved_wh.copy(), physics.island_curtailed_wh.copy(),
        physics.served_wh.copy(), notes, session.device_errors, session.plan_followed,
        physics.switched_off_wh.copy())
    result.shed_tier_cum_wh = np.asarray(session.shed_tier).reshape(-1, 3)
    result.shed_cum_wh = np.asarray(session.shed).reshape(-1, len(specs))
    result.former = physics.former
    result.pv_available_wh = physics.pv_available_wh.copy()
    result.limit_curtailed_wh = physics.limit_curtailed_wh.copy()
    result.shedding = session.shedding
    if progress is not None:
        progress.phase(f"writing the report to {out}")
    await asyncio.to_thread(finish, result, LedgerReader(ledger))
    return result
