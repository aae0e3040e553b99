"""What a cycle switches: plugs shed islanded (with the guard's rails and reason codes),
flexible loads held off on a grid lost without warning, loads a coordinator's override
holds, and load the grid-former dropped (estimated). The switching half of
:class:`controller.cycle.Controller`; the rules live in :mod:`controller.island`
(shedding, guard, grid_loss, outage) and :mod:`controller.governance.overrides`.
"""

from __future__ import annotations

import logging

import numpy as np

from controller.governance.overrides import load_commands
from controller.island.guard import limiting_measure
from controller.island.outage import (
    anchor,
    connected_w,
    demand_before_w,
    dropped_load_w,
    held_demand_w,
    smooth_anchor,
)

log = logging.getLogger("controller.cycle")


class LoadSwitching:
    """The controller's load switching: mixed into :class:`controller.cycle.Controller`."""

    def _held_demand_w(self, held: np.ndarray, now: float) -> np.ndarray:
        """Per member, the demand the loads Commonwatt holds off would draw now, W."""
        if self.shedder is None:
            return held
        forecast = self.follower.tier_forecast_w(now) if self.islanded else None
        return held_demand_w(*self.shedder.held_by_kind(), held, forecast)

    def _dropped_w(self, demand: np.ndarray, held: np.ndarray, valid: np.ndarray,
                   now: float) -> np.ndarray:
        """Islanded, load the grid-former drops (an outage), estimated from the connected
        demand (``demand`` less the ``held`` plugs) before it reported the overload
        (:mod:`controller.island.outage`)."""
        overloaded = self.poller.grid_overloaded()
        forecast = self.follower.demand_forecast_w(now) if self.islanded else None
        held_forecast = self._held_demand_w(held, now) if forecast is not None else held
        on, forecast = connected_w(demand, held, forecast, held_forecast)
        if self.islanded and overloaded:
            before = demand_before_w(self._demand_before_w, self._demand_ratio, forecast)
            return dropped_load_w(before, on, valid, self._tier)
        if overloaded is not None or not self.islanded:  # a silent grid-former says nothing
            self._demand_before_w = np.where(valid, on, self._demand_before_w)
            self._demand_ratio = smooth_anchor(self._demand_ratio, anchor(on, forecast),
                                               valid, self.nominal_dt_s)
        return np.zeros_like(demand)

    async def _shed(self, need_w: np.ndarray | None, now: float, causes: list | None) -> None:
        """Switch plugs (flexible first) so that what is held off covers ``need_w``: the
        dispatch's shed, what the island plan sheds beyond it, and dropped load; islanded,
        each shed and refusal is logged with its reason code (``causes`` per member)."""
        if self.shedder is None or need_w is None:
            return
        allowed = decision = None
        if self.islanded:  # the limiting measure: what the shed needs beyond what is off
            over = limiting_measure(float(np.nansum(need_w) - self.shedder.held_w().sum()),
                                    self.poller.grid_overloaded())
            rows = np.zeros((3, len(need_w)))
            decision = self.shed_guard.step(now, over, rows)
            allowed = decision.allowed
            if decision.alert:
                self.shed_alert = decision.alert
                log.warning("shedding: %s", decision.alert)
            elif not self.shed_guard.stopped:
                self.shed_alert = None
        plan = self.shedder.plan(now, need_w, self.poller.load_readings(), self._opted_out,
                                 self._protected_loads, allowed)
        if self.islanded:
            self.shed_log.cycle(now, self.grid.machine.state.name, plan, causes or [],
                                decision, self.shed_guard.passes)
        actions = [a for a in plan.actions if a.load_id not in self._override_loads
                   and not self.grid_loss.holds(a.load_id)]
        if actions:  # a load an override holds is the coordinator's, not the shedder's
            await self.poller.switch_loads(actions, self.mandate_s)

    async def _hold_for_grid_loss(self, now: float) -> None:
        """Unplanned off-grid: the flexible plugs off in this very cycle, EV chargers first
        (0 W import is no sunshine); back on when the grid is."""
        machine = self.grid.machine
        actions = self.grid_loss.step(now, machine.state, machine.in_force, self._override_loads)
        if actions:
            await self.poller.switch_loads(actions, self.mandate_s)

    async def _switch_overridden_loads(self) -> None:
        """Hold the loads overrides hold; switch back on those an override no longer holds."""
        actions = load_commands(self._override_loads, self._override_off)
        self._override_off = {lid for lid, on in self._override_loads.items() if not on}
        if actions:
            await self.poller.switch_loads(actions, self.mandate_s)

    async def release_loads(self) -> None:
        """On stop: switch back on every load Commonwatt switched off, by shedding or by an
        override."""
        self._override_loads = {}
        await self._switch_overridden_loads()
        if back := self.grid_loss.release_all():
            await self.poller.switch_loads(back, self.mandate_s)
        if self.shedder is not None:
            actions = self.shedder.release_all(self.clock())
            if actions:
                await self.poller.switch_loads(actions, self.mandate_s)
