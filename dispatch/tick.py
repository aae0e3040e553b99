"""One dispatch tick: where every household's energy goes over one interval.

Order of use, all households at once:

* deficit: own PV, own battery, peers, coop (offered) batteries, the grid;
* surplus: own load, own battery, peers, coop batteries, grid export, or
  curtailment when islanded or at the export cap.

Surplus left after peers first replaces own-battery discharge (so batteries
keep their charge while the coop has energy to spare), then charges offered
batteries, and only then leaves the coop.

What cannot be imported (islanded, or over the import cap) is shed, tier by
tier, critical loads last. :class:`DispatchEngine` keeps preallocated buffers
and works in place, so a tick allocates no per-household temporaries on its
main path; stages a fleet does not use (coop batteries, caps, grid charging,
hysteresis) are skipped. Nothing here does I/O.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch import island, kernel
from dispatch.fleet import POLICIES, BoolArray, CoopLimits, Fleet, FleetState
from dispatch.measured import measured_tick
from dispatch.pcc import pcc_limits
from dispatch.result import TickResult
from dispatch.sharing import allocate, capped_fraction

FloatArray = NDArray[np.float64]
NO_LIMITS = CoopLimits()
_TINY = 1e-300
#: Households per block on the blocked path: a block's working set stays in cache.
BLOCK = 32_768


def _coop_shares(surplus: float, deficit: float,
                 discharging: float) -> tuple[float, float, float, float]:
    """Pro-rata shares of the coop sums: what each surplus gives to and each deficit takes
    from peers, then what surplus left over gives to and spares of own-battery discharge."""
    shared = min(surplus, deficit)
    spare_left = surplus - shared
    moved = min(spare_left, discharging)
    return (capped_fraction(surplus, deficit), capped_fraction(deficit, shared),
            capped_fraction(spare_left, moved), capped_fraction(discharging, moved))


#: Flows of stages a tick may skip (coop batteries, caps, grid charging).
_OPTIONAL_FLOWS = ("to_coop_battery", "from_coop_battery", "from_coop_battery_coop",
                   "battery_from_coop", "battery_to_coop", "grid_to_battery", "curtailed",
                   "shed", "battery_to_grid", "battery_to_batteries", "battery_from_batteries")


_BUFFERS = (
    "pv", "load", "stored", "own", "surplus", "deficit", "charge_room", "to_battery", "room",
    "from_battery", "to_peers", "from_peers", "charged", "drawn", "stored_after", "pool",
    "fraction", "from_battery_coop", "pool_after", "tmp", "zeros",
)
#: Intermediates that never leave a block on the blocked path: block-sized, so they stay
#: in cache instead of streaming a whole-fleet array through memory each tick.
_SCRATCH = ("stored", "charge_room", "room", "tmp", "charged", "drawn", "pool", "fraction",
            "pv", "load", "surplus", "deficit", "from_battery")


class DispatchEngine:
    """Dispatches ticks for one fleet, reusing its buffers from tick to tick."""

    def __init__(self, fleet: Fleet, policy: str = "prorata",
                 limits: CoopLimits = NO_LIMITS, fused: bool | None = None) -> None:
        """``fused``: use the numba kernel on the common path (default: when installed)."""
        if fused and not kernel.AVAILABLE:
            raise ValueError("fused=True needs numba, which is not installed")
        self.fused = kernel.AVAILABLE if fused is None else fused
        #: Keep each tick's PV and load energy in :attr:`pv_wh` / :attr:`load_wh` (batched runs
        #: need them; a single tick can skip writing two fleet-sized arrays).
        self.keep_inputs = False
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.fleet, self.policy, self.limits = fleet, policy, limits
        self.tiered = limits.islanded or policy == "tiers"
        n = fleet.size
        self._b = {name: np.zeros(n) for name in _BUFFERS}
        self._scratch = {name: np.zeros(min(n, BLOCK)) for name in _SCRATCH}
        #: The shared all-zero array returned for flows of stages that did not run.
        self.zeros = self._b["zeros"]
        self._held = np.zeros(n, dtype=bool)
        self.reserve = np.maximum(fleet.soc_min_wh, fleet.reserve_wh)
        self._hysteresis = bool((fleet.hysteresis_wh > 0).any())
        self._floor_base = (island.own_floor(fleet.soc_min_wh, fleet.capacity_wh,
                                             fleet.grid_forming)
                            if limits.islanded else self.reserve)
        #: Islanded with AC-coupled PV: the grid-formers' charge ceiling (None: full).
        self._ceiling = (island.charge_ceiling_wh(fleet.capacity_wh, fleet.grid_forming,
                                                  limits.charge_ceiling_pct)
                         if limits.islanded and limits.charge_ceiling_pct < 100 else None)
        self._capped = limits.islanded or np.isfinite(limits.import_cap_w) or np.isfinite(
            limits.export_cap_w)
        self._hours = -1.0
        self._blocks = tuple(slice(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK)) or (
            slice(0, 0),)
        self._charge_power = np.zeros(n)
        self._discharge_power = np.zeros(n)
        self._shares = np.zeros(4)

    @property
    def pv_wh(self) -> FloatArray:
        """PV energy of the last tick as dispatched (negative readings and invalid as 0).

        Kept on every path only when :attr:`keep_inputs` is set.
        """
        return self._b["pv"]

    @property
    def load_wh(self) -> FloatArray:
        """Load energy of the last tick as dispatched (negative readings and invalid as 0)."""
        return self._b["load"]

    def _set_hours(self, hours: float) -> None:
        if hours != self._hours:
            np.multiply(self.fleet.max_charge_w, hours, out=self._charge_power)
            np.multiply(self.fleet.max_discharge_w, hours, out=self._discharge_power)
            self._hours = hours

    def tick(self, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
             valid: BoolArray | None, dt_s: float,
             battery_w: FloatArray | None = None) -> TickResult:
        """Balance one tick of ``dt_s`` seconds; ``valid=None`` means every household is valid.

        Households whose readings are not valid take no part: their flows are
        zero and their battery holds. ``state`` is not modified. With
        ``battery_w`` (measured, W, discharge > 0) the tick books what the
        batteries did instead of deciding it (:mod:`dispatch.measured`, numpy).
        """
        if battery_w is not None:
            return measured_tick(self, state, pv_w, load_w, battery_w, valid, dt_s)
        f, b = self.fleet, self._b
        h, charge_power, discharge_power, valid, floor_own = self._begin(state, valid, dt_s)
        simple = self._simple(valid)
        if simple and self.fused:
            shares = self._fused_shares(state, pv_w, load_w, h, floor_own)
            kernel.tick_pass(pv_w, load_w, state.stored_wh, state.pool_coop_wh, f.capacity_wh,
                             f.leg_efficiency, charge_power, discharge_power, floor_own, h,
                             shares, _TINY, b["own"], b["to_battery"], b["from_battery"],
                             b["to_peers"], b["from_peers"], b["surplus"], b["deficit"],
                             b["from_battery_coop"], b["stored_after"], b["pool_after"])
            if self.keep_inputs:
                self._inputs_wh(slice(None), pv_w, load_w, None, h, b["pv"], b["load"])
            return self._result(state, h)
        # Simple fleets run in cache-sized blocks; extra stages need whole arrays.
        blocks = self._blocks if simple else (slice(None),)
        sums = np.zeros(3)
        for sl in blocks:
            self._own_stage(sl, state, pv_w, load_w, valid, h, charge_power, discharge_power,
                            floor_own, sums, simple)
        give, take, give_spare, take_spare = _coop_shares(*sums)
        shared = min(sums[0], sums[1])
        if self.policy != "prorata" or self.tiered:
            b["from_peers"][:] = allocate(shared, b["deficit"], self.policy, f.key, f.tier,
                                          self.tiered)
            take = -1.0
        spare = (give_spare, take_spare)
        if simple:  # nothing between peers and battery state: one pass while a block is hot
            for sl in blocks:
                self._peer_stage(sl, give, take, spare, True)
                self._state_stage(sl, state, None, True)
        else:
            self._peer_stage(slice(None), give, take, spare, False)

        surplus, deficit, zeros = b["surplus"], b["deficit"], self.zeros
        coop = (zeros, zeros, zeros, zeros)
        if f.any_offered:
            coop = self._coop_batteries(surplus, deficit, b["stored"], charge_power,
                                        discharge_power, floor_own)
        to_coop_battery, battery_from_coop, from_coop_battery, battery_to_coop = coop
        from_grid, shed, to_grid, curtailed = deficit, zeros, surplus, zeros
        import_capped = export_capped = 0.0
        import_left = float("inf")
        if self._capped:
            from_grid, shed, to_grid, curtailed, import_capped, export_capped, import_left = (
                pcc_limits(deficit, surplus, h, self.limits, self.policy, f))
        grid_to_battery = zeros
        if f.any_grid_charge and not self.limits.islanded and import_left > 0.0:
            grid_to_battery = self._grid_charge(b["stored"], b["charge_room"], import_left, coop)
        if not simple:
            extra = (battery_from_coop, battery_to_coop, grid_to_battery)
            self._state_stage(slice(None), state, extra, False)

        from_coop_battery_coop = zeros
        if f.any_offered:
            delivered = float(battery_to_coop.sum())
            delivered_coop = float(np.dot(battery_to_coop, b["fraction"]))
            from_coop_battery_coop = from_coop_battery * capped_fraction(delivered, delivered_coop)
        return self._result(
            state, h, to_coop_battery=to_coop_battery, from_coop_battery=from_coop_battery,
            from_coop_battery_coop=from_coop_battery_coop, battery_from_coop=battery_from_coop,
            battery_to_coop=battery_to_coop, grid_to_battery=grid_to_battery, to_grid=to_grid,
            from_grid=from_grid, curtailed=curtailed, shed=shed,
            import_capped_wh=import_capped, export_capped_wh=export_capped)

    def tick_totals(self, state: FleetState, pv_w: FloatArray, load_w: FloatArray,
                    dt_s: float, totals: FloatArray, after: FleetState) -> bool:
        """Add one tick's flows to ``totals`` (rows :data:`kernel.SERIES_ROWS`), state to ``after``.

        Only the fused kernel does this, and only for fleets on its path; returns False
        (and does nothing) otherwise. ``after`` must not share memory with ``state``.
        """
        h, charge_power, discharge_power, valid, floor_own = self._begin(state, None, dt_s)
        if not (self.fused and self._simple(valid)):
            return False
        f = self.fleet
        shares = self._fused_shares(state, pv_w, load_w, h, floor_own)
        kernel.series_pass(pv_w, load_w, state.stored_wh, state.pool_coop_wh, f.capacity_wh,
                           f.leg_efficiency, charge_power, discharge_power, floor_own, h, shares,
                           _TINY, totals, after.stored_wh, after.pool_coop_wh)
        after.held[:] = self._held_after(after.stored_wh, state)
        return True

    def _begin(self, state: FleetState, valid: BoolArray | None, dt_s: float):  # noqa: ANN202
        """Hours, the power limits as energy, ``valid`` (None when all are) and the own floor."""
        h = dt_s / 3600.0
        self._set_hours(h)
        charge_power, discharge_power = self._charge_power, self._discharge_power
        if valid is not None and not valid.all():
            charge_power, discharge_power = charge_power * valid, discharge_power * valid
        else:
            valid = None
        if self._ceiling is not None:  # islanded only: never the fused path
            charge_power = island.below_ceiling(charge_power, state.stored_wh, self._ceiling,
                                                self.fleet.inverse_leg_efficiency)
        floor_own = self._floor_base
        if self._hysteresis and not self.limits.islanded:
            floor_own = self.reserve + np.where(state.held, self.fleet.hysteresis_wh, 0.0)
        return h, charge_power, discharge_power, valid, floor_own

    def _simple(self, valid: BoolArray | None) -> bool:
        """Whether the tick needs only own use, pro-rata peers and own batteries."""
        f = self.fleet
        return (valid is None and self.policy == "prorata" and not self.tiered
                and not f.any_offered and not self._capped and not f.any_grid_charge)

    def _fused_shares(self, state: FleetState, pv_w: FloatArray, load_w: FloatArray, h: float,
                      floor_own: FloatArray) -> FloatArray:
        """The coop-wide shares from block sums taken exactly as on the numpy path."""
        f, s = self.fleet, self._scratch
        sums = np.zeros(3)
        for sl in self._blocks:
            m = sl.stop - sl.start
            surplus, deficit, from_battery = (s[name][:m] for name in
                                              ("surplus", "deficit", "from_battery"))
            kernel.own_block(pv_w[sl], load_w[sl], state.stored_wh[sl], f.capacity_wh[sl],
                             f.leg_efficiency[sl], self._charge_power[sl],
                             self._discharge_power[sl], floor_own[sl], h, surplus, deficit,
                             from_battery)
            sums += (surplus.sum(), deficit.sum(), from_battery.sum())
        self._shares[:] = _coop_shares(*sums)
        return self._shares

    def _held_after(self, stored_after: FloatArray, state: FleetState) -> BoolArray:
        """The reserve latch: set at the reserve, released ``hysteresis_wh`` above it."""
        if not self._hysteresis:
            return self._held
        f = self.fleet
        return np.where(stored_after <= self.reserve * (1 + 1e-12), True,
                        np.where(stored_after >= self.reserve + f.hysteresis_wh, False,
                                 state.held)) & (f.capacity_wh > 0)

    def _result(self, state: FleetState, h: float, **extra: FloatArray | float) -> TickResult:
        """The tick's flows from the buffers; stages that did not run give :attr:`zeros`."""
        b, zeros = self._b, self.zeros
        flows = dict.fromkeys(_OPTIONAL_FLOWS, zeros) | {"to_grid": b["surplus"],
                                                          "from_grid": b["deficit"]}
        flows |= extra
        stored_after = b["stored_after"]
        return TickResult(
            own_pv_used=b["own"], to_battery=b["to_battery"], from_battery=b["from_battery"],
            from_battery_coop=b["from_battery_coop"], to_peers=b["to_peers"],
            from_peers=b["from_peers"], state=FleetState(
                stored_after, b["pool_after"], self._held_after(stored_after, state)),
            leg_efficiency=self.fleet.leg_efficiency, hours=h, **flows)

    def _tmp(self, name: str, sl: slice, scratch: bool) -> FloatArray:
        """A working array for ``sl``: block-sized scratch (blocked path, whose slices are
        bounded), or a slice of the fleet buffer."""
        if scratch:
            return self._scratch[name][: sl.stop - sl.start]
        return self._b[name][sl]

    def _own_stage(self, sl, state, pv_w, load_w, valid, h, charge_power, discharge_power,
                   floor_own, sums, scratch) -> None:  # noqa: ANN001 - arrays and a slice
        """Own PV, then own battery, for the households in ``sl``; adds to the three sums."""
        f, b = self.fleet, self._b
        keep = self.keep_inputs or not scratch
        pv, load = self._tmp("pv", sl, not keep), self._tmp("load", sl, not keep)
        self._inputs_wh(sl, pv_w, load_w, valid, h, pv, load)
        stored = self._tmp("stored", sl, scratch)
        cap = f.capacity_wh[sl]
        self._clip_stored(state, sl, stored)
        own, surplus, deficit = b["own"][sl], b["surplus"][sl], b["deficit"][sl]
        np.minimum(pv, load, out=own)
        np.subtract(pv, own, out=surplus)
        np.subtract(load, own, out=deficit)
        charge_room, to_battery = self._tmp("charge_room", sl, scratch), b["to_battery"][sl]
        np.subtract(cap, stored, out=charge_room)
        charge_room *= f.inverse_leg_efficiency[sl]
        np.minimum(charge_room, charge_power[sl], out=charge_room)
        np.minimum(surplus, charge_room, out=to_battery)
        surplus -= to_battery
        room, from_battery = self._tmp("room", sl, scratch), b["from_battery"][sl]
        np.subtract(stored, floor_own[sl], out=room)
        np.maximum(room, 0.0, out=room)
        room *= f.leg_efficiency[sl]
        np.minimum(room, discharge_power[sl], out=room)
        np.minimum(deficit, room, out=from_battery)
        deficit -= from_battery
        sums += (surplus.sum(), deficit.sum(), from_battery.sum())

    @staticmethod
    def _inputs_wh(sl: slice, pv_w: FloatArray, load_w: FloatArray, valid: BoolArray | None,
                   h: float, pv: FloatArray, load: FloatArray) -> None:
        """PV and load energy; negative readings and invalid households count as 0."""
        np.maximum(pv_w[sl], 0.0, out=pv)
        pv *= h
        np.maximum(load_w[sl], 0.0, out=load)
        load *= h
        if valid is not None:
            pv *= valid[sl]
            load *= valid[sl]

    def _clip_stored(self, state: FleetState, sl: slice, out: FloatArray) -> None:
        # Two ufuncs: np.clip costs about three times as much per element.
        np.maximum(state.stored_wh[sl], 0.0, out=out)
        np.minimum(out, self.fleet.capacity_wh[sl], out=out)

    def _peer_stage(self, sl, give, take, spare, scratch) -> None:  # noqa: ANN001
        """Peers pro-rata; then surplus that would leave the coop spares discharging batteries.

        A battery does not empty itself at noon while neighbours export: its
        owner draws that energy from peers instead and keeps the charge.
        """
        b = self._b
        surplus, deficit = b["surplus"][sl], b["deficit"][sl]
        to_peers, from_peers = b["to_peers"][sl], b["from_peers"][sl]
        np.multiply(surplus, give, out=to_peers)
        surplus -= to_peers
        if take >= 0.0:
            np.multiply(deficit, take, out=from_peers)
        deficit -= from_peers
        give_spare, take_spare = spare
        if give_spare > 0.0:
            tmp, from_battery = self._tmp("tmp", sl, scratch), b["from_battery"][sl]
            np.multiply(surplus, give_spare, out=tmp)
            to_peers += tmp
            surplus -= tmp
            np.multiply(from_battery, take_spare, out=tmp)
            from_peers += tmp
            from_battery -= tmp

    def _state_stage(self, sl, state, extra, scratch) -> None:  # noqa: ANN001
        """Battery content and the two origin pools after the tick.

        Coop-origin energy leaves in proportion to the content; only coop
        surplus adds to it, never grid charging.
        """
        f, b = self.fleet, self._b
        eta, inv_eta = f.leg_efficiency[sl], f.inverse_leg_efficiency[sl]
        stored = self._tmp("stored", sl, scratch)
        if scratch:  # recomputing is cheaper than keeping a fleet-sized copy
            self._clip_stored(state, sl, stored)
        charged, drawn = self._tmp("charged", sl, scratch), self._tmp("drawn", sl, scratch)
        from_battery = b["from_battery"][sl]
        np.multiply(b["to_battery"][sl], eta, out=charged)
        np.multiply(from_battery, inv_eta, out=drawn)
        if extra is not None:
            battery_from_coop, battery_to_coop, grid_to_battery = extra
            charged += battery_from_coop[sl] * eta
            drawn += battery_to_coop[sl] * inv_eta
        stored_after = b["stored_after"][sl]
        np.add(stored, charged, out=stored_after)
        stored_after -= drawn
        if extra is not None:
            stored_after += grid_to_battery[sl] * eta
        pool, tmp = self._tmp("pool", sl, scratch), self._tmp("tmp", sl, scratch)
        fraction = self._tmp("fraction", sl, scratch)
        np.minimum(state.pool_coop_wh[sl], stored, out=pool)
        np.maximum(pool, 0.0, out=pool)
        np.maximum(stored, _TINY, out=tmp)
        np.divide(pool, tmp, out=fraction)
        np.multiply(from_battery, fraction, out=b["from_battery_coop"][sl])
        pool_after = b["pool_after"][sl]
        np.multiply(drawn, fraction, out=tmp)
        np.subtract(pool, tmp, out=pool_after)
        pool_after += charged

    def _coop_batteries(self, surplus, deficit, stored, charge_power, discharge_power,
                        floor_own):  # noqa: ANN001, ANN202 - internal stage, arrays throughout
        """Offered batteries take the surplus left after peers and serve the deficit left."""
        f, b = self.fleet, self._b
        to_battery, from_battery = b["to_battery"], b["from_battery"]
        floor_coop = np.maximum(floor_own, self.reserve)
        if self.limits.islanded:  # the grid-former serves the coop last, to its hard floor
            floor_coop = np.where(f.grid_forming, self.reserve, floor_coop)
            self._surplus_to_neighbours(deficit)
        # A battery does not charge and discharge in the same tick.
        room = np.where(f.offered & (from_battery == 0.0), b["charge_room"] - to_battery, 0.0)
        spare = np.minimum(discharge_power - from_battery,
                           (stored - floor_coop) * f.leg_efficiency - from_battery)
        spare = np.where(f.offered & (to_battery == 0.0), np.maximum(spare, 0.0), 0.0)
        left_surplus, total_room = float(surplus.sum()), float(room.sum())
        charged = min(left_surplus, total_room)
        to_coop_battery = surplus * capped_fraction(left_surplus, charged)
        battery_from_coop = room * capped_fraction(total_room, charged)
        surplus -= to_coop_battery
        left_deficit, total_spare = float(deficit.sum()), float(spare.sum())
        delivered = min(left_deficit, total_spare)
        from_coop_battery = allocate(delivered, deficit, self.policy, f.key, f.tier, self.tiered)
        if self.limits.islanded:
            battery_to_coop = allocate(delivered, spare, "prorata", f.key,
                                       island.coop_rank(f.grid_forming), True)
        else:
            battery_to_coop = spare * capped_fraction(total_spare, delivered)
        deficit -= from_coop_battery
        return to_coop_battery, battery_from_coop, from_coop_battery, battery_to_coop

    def _surplus_to_neighbours(self, deficit: FloatArray) -> None:
        """Islanded, neighbours short of energy would be shed: an offered battery charging
        from its owner's surplus gives that surplus to them (as peers' energy) instead, which
        also leaves the battery free to serve them (it never charges and discharges at once).
        """
        f, b = self.fleet, self._b
        charging = np.where(f.offered, b["to_battery"], 0.0)
        total, short = float(charging.sum()), float(deficit.sum())
        moved = min(total, short)
        if moved <= 0.0:
            return
        give = charging * capped_fraction(total, moved)
        take = allocate(moved, deficit, self.policy, f.key, f.tier, self.tiered)
        b["to_battery"] -= give
        b["to_peers"] += give
        b["from_peers"] += take
        deficit -= take

    def _grid_charge(self, stored, charge_room, import_left, coop):  # noqa: ANN001, ANN202
        """Batteries allowed to, and below their reserve, charge from the grid's spare import."""
        f, b = self.fleet, self._b
        _, battery_from_coop, _, battery_to_coop = coop
        to_battery, from_battery = b["to_battery"], b["from_battery"]
        eta, inv_eta = f.leg_efficiency, f.inverse_leg_efficiency
        after = stored + (to_battery + battery_from_coop) * eta - from_battery * inv_eta
        want = np.minimum(np.maximum(self.reserve - after, 0.0) * inv_eta,
                          charge_room - to_battery - battery_from_coop)
        want = np.where(f.grid_charge & (from_battery == 0.0) & (battery_to_coop == 0.0),
                        np.maximum(want, 0.0), 0.0)
        return want * capped_fraction(float(want.sum()), import_left)


def dispatch_tick(
    fleet: Fleet,
    state: FleetState,
    pv_w: FloatArray,
    load_w: FloatArray,
    valid: BoolArray | None,
    dt_s: float,
    policy: str = "prorata",
    limits: CoopLimits = NO_LIMITS,
    battery_w: FloatArray | None = None,
) -> TickResult:
    """Balance one tick of ``dt_s`` seconds for every household (a fresh result each call);
    with measured ``battery_w``, book what the batteries did (:mod:`dispatch.measured`)."""
    return DispatchEngine(fleet, policy, limits).tick(state, pv_w, load_w, valid, dt_s,
                                                      battery_w)
