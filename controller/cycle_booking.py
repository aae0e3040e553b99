"""Where a cycle's Wh is booked: the measured cycle (battery flows from measured power,
split by the dispatch's intent), curtailment by cause, agents' late readings, and a stall
booked from what the devices counted meanwhile. The booking half of
:class:`controller.cycle.Controller`; the rules themselves live in :mod:`controller.ledger`.
"""

from __future__ import annotations

import math

import numpy as np

from controller.island.curtail_estimate import booked_causes, former_saturated
from controller.ledger import CommittedInterval, CycleEnergy
from controller.ledger.gap import averaged_image
from controller.ledger.late import book_late_reading
from controller.ledger.measured import booked_tick, for_booking, ledger_flows
from controller.process_image import ProcessImage
from dispatch import CoopLimits, Fleet, FleetState, TickResult

#: A cycle's booking span: where it starts, the image it books from, the batteries then.
Span = tuple[float, ProcessImage, FleetState]


class CycleBooking:
    """The controller's booking: mixed into :class:`controller.cycle.Controller`."""

    def _book(self, start: float, now: float, image: ProcessImage, fleet: Fleet,
              limits: CoopLimits, span: Span, shed_w: np.ndarray,
              pools: tuple[np.ndarray, np.ndarray, np.ndarray], caps_w: np.ndarray,
              unknown: tuple[str, ...], committed: list[CommittedInterval],
              ) -> tuple[TickResult, dict[str, np.ndarray]]:
        """Book the cycle as measured, once its commands are out; commit what closes.

        ``shed_w``: load held off or dropped (not measured by any meter), W. ``pools``: the
        coop-origin pools before this cycle, as carried into it, and the batteries' content.
        Returns what was booked and the PV held back per cause (Wh)."""
        book_start, book_image, book_state = span
        pools_before, pools_now, stored = pools
        carry = self.book.carry
        hours = (now - start) / 3600.0
        # The booked cycle ends once its commands are out: what this cycle read stands
        # until then (a battery holds its last setpoint until the new one), and what the
        # next reads from then on. On a sped-up clock the commands go out many
        # simulated seconds after the reads; ending at the reads booked each new
        # setpoint from before it was written. Unless they took long (a stalled machine):
        # then the reading stands for nothing beyond its own time, and the next cycle
        # (or the stall, controller/ledger/gap.py) books the rest.
        end = self.clock()
        end = end if now <= end <= now + 0.5 * self.nominal_dt_s else now
        book_hours = (end - book_start) / 3600.0
        booked = booked_tick(self.engines.engine(fleet, limits), book_state, book_image,
                             end - book_start)
        booked.shed = booked.shed + shed_w * book_hours
        # An idling battery that does not answer keeps its coop-origin pool for its return.
        idle = image.battery_assumed_idle
        if idle is None:
            idle = np.zeros(len(pools_now), dtype=bool)
        carry.pools_wh = np.where(image.valid & ~idle, booked.pool_coop_wh,
                                  np.where(idle, pools_before, pools_now))
        carry.held = booked.state.held.copy()
        flows, unallocated = ledger_flows(booked, limits.islanded)
        est = self.curtail_estimator.step(
            now - start, image.pv_w, image.valid & image.has_pv,
            self.follower.pv_forecast_w(now), np.isfinite(caps_w),
            former_saturated(limits.islanded, self._grid_forming, image.battery_w,
                             image.soc_pct, fleet.max_charge_w), caps_w, limits.islanded,
            image.pv_hz if limits.islanded else None)
        held_back = {c: w * hours for c, w in est.by_cause_w.items()}
        flows |= booked_causes(flows["curtailed"], est, book_hours, limits.islanded,
                               math.isfinite(self._caps[1]))
        self._book_late_readings()
        closed = self.book.add_cycle(CycleEnergy(
            book_start, end, flows, book_image.valid.copy(), image.counters,
            islanded=limits.islanded, missing=unknown, unallocated=unallocated))
        self._stored_mark = np.where(image.has_battery & np.isfinite(image.soc_pct),
                                     stored, np.nan)
        for interval, parts in closed:
            self.writer.commit(interval, parts)
            committed.append(interval)
            if self.federation is not None:
                self.federation.committed(interval)
        return booked, held_back

    def _booking(self, image: ProcessImage, start: float, fleet: Fleet, state: FleetState,
                 ) -> tuple[float, ProcessImage, FleetState]:
        """Where the booked cycle starts, what it books from, and the batteries before it:
        after a stall, from the last booked cycle's end with the stall's averages (the
        counters' and the SoC's changes), else the cycle as sampled."""
        end = self.last_end_ts
        image = for_booking(image)
        if end is None or start <= end or self._stored_mark is None:
            return start, image, state
        carry = self.book.carry
        now_wh = np.where(np.isfinite(image.soc_pct), state.stored_wh, np.nan)
        averaged = averaged_image(image, end, carry.counters, carry.counters_ts,
                                  self._stored_mark, now_wh, fleet.leg_efficiency)
        stored = np.where(np.isfinite(self._stored_mark), self._stored_mark, state.stored_wh)
        return end, averaged, FleetState(stored, np.clip(carry.pools_wh, 0.0, stored),
                                         state.held)

    def _book_late_readings(self) -> None:
        """Book the counters the agents' late readings bring (before this cycle's own)."""
        if self.agents is None:
            return
        index = {m: i for i, m in enumerate(self.member_ids)}
        for member, ts, values in self.agents.drain():
            if member not in index:
                continue
            counters, previous = np.array(values), self._last_agent_reading.get(member)
            book_late_reading(self.book, index[member], ts, counters, previous)
            if previous is None or ts > previous[0]:
                self._last_agent_reading[member] = (ts, counters)
