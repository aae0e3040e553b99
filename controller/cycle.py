"""The control cycle: poll, freeze, dispatch, write setpoints, commit the ledger."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from controller.config import CoopConfig
from controller.ledger import Ledger
from controller.polling import Poller
from controller.process_image import ProcessImage
from controller.safety import clamp_setpoints
from dispatch import Fleet, FleetState, TickResult, WhBook, dispatch_tick

log = logging.getLogger(__name__)
#: An interval longer than this many nominal cycles is not booked whole: the
#: controller was stopped or stalled, and the readings say nothing about the gap.
MAX_GAP_CYCLES = 5


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did, for the API's live view and for tests."""

    image: ProcessImage
    start_ts: float
    end_ts: float
    result: TickResult | None
    booked: dict[str, np.ndarray] | None
    setpoints_w: np.ndarray
    interval_id: int | None
    duration_s: float


class Controller:
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
        self.member_ids = [m.id for m in config.members]
        self.poller = Poller(config)
        self.ledger = Ledger(config.storage.ledger)
        self.ledger.register_members([(m.id, m.name) for m in config.members])
        state = self.ledger.load_state(self.member_ids)
        self.book = WhBook(len(self.member_ids), {k: np.array(v) for k, v in state.carries.items()})
        self.pools_wh = np.array([state.pools_wh.get(m, 0.0) for m in self.member_ids])
        self.last_end_ts = state.last_end_ts
        self.held = np.array([m in state.held for m in self.member_ids], dtype=bool)
        # On a sped-up clock a cycle spans more device time: keep at least 3 cycles of validity.
        self.setpoint_expiry_s = max(
            config.controller.setpoint_expiry_s, math.ceil(3 * self.nominal_dt_s)
        )
        self.last_report: CycleReport | None = None
        self.last_cycle_wall: float | None = None
        batteries = [m.device("battery") for m in config.members]
        self._reserve_pct = np.array([b.reserve_pct if b else 0.0 for b in batteries])
        self._efficiency = np.array([b.efficiency if b else 1.0 for b in batteries])
        self._limit_w = np.array(
            [b.max_power_w if b and b.max_power_w else np.inf for b in batteries]
        )

    def fleet(self, image: ProcessImage) -> Fleet:
        """Battery parameters for this cycle: device ratings capped by the configured limits."""
        usable = image.has_battery & np.isfinite(image.capacity_wh)
        capacity = np.where(usable, image.capacity_wh, 0.0)
        return Fleet(
            capacity_wh=capacity,
            soc_min_wh=capacity * self._reserve_pct / 100.0,
            max_charge_w=np.where(usable, np.minimum(image.max_charge_w, self._limit_w), 0.0),
            max_discharge_w=np.where(usable, np.minimum(image.max_discharge_w, self._limit_w), 0.0),
            efficiency=self._efficiency,
        )

    def _interval_start(self, now: float) -> float:
        if self.last_end_ts is None or now - self.last_end_ts > MAX_GAP_CYCLES * self.nominal_dt_s:
            return now - self.nominal_dt_s
        return self.last_end_ts

    async def cycle(self) -> CycleReport:
        """Run one full cycle and return what it did."""
        wall0 = time.perf_counter()
        await self.poller.poll()
        now = self.clock()
        image = self.poller.freeze(now)
        fleet = self.fleet(image)
        stored = np.nan_to_num(image.soc_pct, nan=0.0) / 100.0 * fleet.capacity_wh
        pools = np.clip(self.pools_wh, 0.0, stored)
        state = FleetState(stored, pools, self.held)
        start = self._interval_start(now)
        dt = now - start
        result = booked = interval_id = None
        setpoints = np.zeros(len(self.member_ids))
        if dt > 0:
            result = dispatch_tick(
                fleet, state, image.pv_production_w, image.load_w, image.valid, dt,
                self.config.policy.sharing,
            )
            setpoints = clamp_setpoints(
                np.where(image.valid, result.battery_w, 0.0),
                image.soc_pct,
                self._reserve_pct,
                fleet.max_charge_w,
                fleet.max_discharge_w,
            )
        await self.poller.write_setpoints(
            setpoints, image.has_battery & image.battery_ok, self.setpoint_expiry_s
        )
        if result is not None:
            booked = self.book.book(result)
            self.pools_wh = np.where(image.valid, result.pool_coop_wh, pools)
            self.held = result.state.held
            interval_id = self.ledger.commit_interval(
                start, now, self.member_ids, booked, self.book.carries,
                dict(zip(self.member_ids, self.pools_wh.tolist(), strict=True)), time.time(),
                held=[m for m, h in zip(self.member_ids, self.held.tolist(), strict=True) if h],
            )
            self.last_end_ts = now
        report = CycleReport(
            image, start, now, result, booked, setpoints, interval_id,
            time.perf_counter() - wall0,
        )
        self.last_report = report
        self.last_cycle_wall = time.monotonic()
        return report

    def close(self) -> None:
        """Close device connections and the ledger."""
        self.poller.close()
        self.ledger.close()
