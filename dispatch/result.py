"""What one dispatch tick decided: every household's energy split, in Wh."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import FleetState

FloatArray = NDArray[np.float64]


@dataclass(slots=True)
class TickResult:
    """Energy split of one tick, in Wh per household; every flow is >= 0.

    Per household::

        load   = own_pv_used + from_battery + from_peers + from_coop_battery + from_grid + shed
        pv     = own_pv_used + to_battery + to_peers + to_coop_battery + to_grid + curtailed
        stored_after - stored_before = to_battery + battery_from_coop + grid_to_battery
                                       + battery_from_batteries - from_battery
                                       - battery_to_coop - battery_to_grid
                                       - battery_to_batteries - losses

    Per coop: ``sum(to_peers) == sum(from_peers)``,
    ``sum(to_coop_battery) == sum(battery_from_coop)`` and
    ``sum(battery_to_coop) == sum(from_coop_battery)``.

    ``battery_to_grid`` is battery discharge that left the coop across its owner's
    meter, ``battery_to_batteries`` discharge that charged other batteries (their
    ``battery_from_batteries``; the sums match): only a tick booked from measured battery
    power (:mod:`dispatch.measured`) has any; a dispatched tick never plans them (zeros).

    ``*_coop`` fields are the coop-origin parts of battery energy: the only
    battery energy that counts as liberated. Arrays of a result from a
    :class:`DispatchEngine` are its buffers: valid until its next tick.
    """

    own_pv_used: FloatArray
    to_battery: FloatArray
    from_battery: FloatArray
    from_battery_coop: FloatArray
    to_peers: FloatArray
    from_peers: FloatArray
    to_coop_battery: FloatArray
    from_coop_battery: FloatArray
    from_coop_battery_coop: FloatArray
    battery_from_coop: FloatArray
    battery_to_coop: FloatArray
    grid_to_battery: FloatArray
    to_grid: FloatArray
    from_grid: FloatArray
    curtailed: FloatArray
    shed: FloatArray
    state: FleetState
    leg_efficiency: FloatArray
    hours: float
    import_capped_wh: float = 0.0
    export_capped_wh: float = 0.0
    battery_to_grid: FloatArray | None = None  # None: zero (results built by hand)
    battery_to_batteries: FloatArray | None = None
    battery_from_batteries: FloatArray | None = None

    @property
    def charged_in(self) -> FloatArray:
        """AC energy into each battery, from any source."""
        into = self.to_battery + self.battery_from_coop + self.grid_to_battery
        return into if self.battery_from_batteries is None else (
            into + self.battery_from_batteries)

    @property
    def drawn_out(self) -> FloatArray:
        """AC energy out of each battery, to anyone."""
        out = self.from_battery + self.battery_to_coop
        if self.battery_to_batteries is not None:
            out = out + self.battery_to_batteries
        return out if self.battery_to_grid is None else out + self.battery_to_grid

    @property
    def losses(self) -> FloatArray:
        """Battery conversion losses, booked on the battery's owner."""
        eta = self.leg_efficiency
        return self.charged_in * (1.0 - eta) + self.drawn_out * (1.0 / eta - 1.0)

    @property
    def battery_w(self) -> FloatArray:
        """Battery setpoint for the tick, W: positive discharges, negative charges."""
        return (self.drawn_out - self.charged_in) / self.hours

    @property
    def stored_wh(self) -> FloatArray:
        """Battery content after the tick."""
        return self.state.stored_wh

    @property
    def pool_coop_wh(self) -> FloatArray:
        """Coop-origin part of the battery content after the tick."""
        return self.state.pool_coop_wh

    @property
    def served(self) -> FloatArray:
        """Load that was supplied, from any source."""
        return (self.own_pv_used + self.from_battery + self.from_peers + self.from_coop_battery
                + self.from_grid)

    @property
    def load(self) -> FloatArray:
        """Load that was asked for: served plus shed."""
        return self.served + self.shed

    @property
    def pv(self) -> FloatArray:
        """PV generation, wherever it went."""
        return (self.own_pv_used + self.to_battery + self.to_peers + self.to_coop_battery
                + self.to_grid + self.curtailed)

    @property
    def liberated(self) -> FloatArray:
        """Served load that came from coop generation rather than the grid."""
        return (self.own_pv_used + self.from_peers + self.from_battery_coop
                + self.from_coop_battery_coop)
