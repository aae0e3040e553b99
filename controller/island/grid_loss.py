"""Unplanned grid loss: seen within one cycle, flexible loads off in that same cycle.

Two sources of evidence, each read every cycle:

* the grid-forming inverter's own status (SunSpec 701 ``ConnSt``, via
  :meth:`controller.polling.Poller.grid_view`);
* the meters' voltage and frequency: a grid that is going or gone shows an
  out-of-range voltage or frequency at the households' meters before (or
  without) a grid-former that says so. The bounds are EN 50549-1's, where a
  generator must stay connected: 0.85–1.10 Un (195.5–253 V at 230 V) and
  47.5–51.5 Hz. A majority of the meters that report a value must see it out of
  range, so one meter at the end of a long feeder does not island the coop.

Meter evidence counts only while the coop is on the grid (or the state is
undefined): islanded, the meters read the grid-former's own voltage, which
may leave 50 Hz on purpose (frequency-shift curtailment pushes it towards
52 Hz), and that is no news about the utility.

**Why flexible loads go off at once** (ha-ev-smart-charger #36): a charger that
follows the meter sees 0 W import when the grid is lost and takes it for a
sunny surplus, and drains the batteries the night depends on. So in the cycle
that sees an unplanned loss every flexible plug (EV chargers first) is switched
off, whatever the dispatch thinks of the batteries; they stay off, their
mandate renewed, until the grid is back, then go back on. A planned island
does not need this: its plan and the shedding decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.config import CoopConfig
from controller.governance.overrides import LoadCommand
from controller.island.grid_model import GridState

#: Where a coop may treat the utility as present (EN 50549-1 operating range).
NOMINAL_V = 230.0
V_LOW_PU, V_HIGH_PU = 0.85, 1.10
F_LOW_HZ, F_HIGH_HZ = 47.5, 51.5


@dataclass(frozen=True, slots=True)
class GridBounds:
    """Voltage and frequency inside which the utility is taken to be there."""

    nominal_v: float = NOMINAL_V
    v_low_pu: float = V_LOW_PU
    v_high_pu: float = V_HIGH_PU
    f_low_hz: float = F_LOW_HZ
    f_high_hz: float = F_HIGH_HZ

    def __post_init__(self) -> None:
        if not (self.nominal_v > 0 and 0 < self.v_low_pu < 1 < self.v_high_pu):
            raise ValueError("grid bounds: expected nominal_v > 0 and v_low_pu < 1 < v_high_pu")
        if not 0 < self.f_low_hz < self.f_high_hz:
            raise ValueError("grid bounds: expected 0 < f_low_hz < f_high_hz")


@dataclass(frozen=True, slots=True)
class MeterGrid:
    """What one meter says of the grid: its phase voltage and frequency (None: not read)."""

    name: str
    voltage_v: float | None = None
    frequency_hz: float | None = None


def out_of_range(m: MeterGrid, b: GridBounds) -> str | None:
    """Why ``m`` shows no utility (``None``: in range, or nothing to judge)."""
    v, f = m.voltage_v, m.frequency_hz
    low_v, high_v = b.v_low_pu * b.nominal_v, b.v_high_pu * b.nominal_v
    if v is not None and math.isfinite(v) and not low_v <= v <= high_v:
        return f"{m.name} voltage {v:.1f} V outside {low_v:.1f}-{high_v:.1f} V"
    if f is not None and math.isfinite(f) and not b.f_low_hz <= f <= b.f_high_hz:
        return f"{m.name} frequency {f:.2f} Hz outside {b.f_low_hz:g}-{b.f_high_hz:g} Hz"
    return None


def meter_verdict(meters: Iterable[MeterGrid], bounds: GridBounds = GridBounds()) -> str | None:
    """The cause of a grid loss the meters show, or ``None``.

    A loss needs a strict majority of the meters that report a voltage or a
    frequency; the cause names the first of them (and how many agree).
    """
    judged = [m for m in meters if any(x is not None and math.isfinite(x)
                                       for x in (m.voltage_v, m.frequency_hz))]
    causes = [c for c in (out_of_range(m, bounds) for m in judged) if c is not None]
    if not causes or 2 * len(causes) <= len(judged):
        return None
    more = f" (and {len(causes) - 1} of {len(judged)} meters more)" if len(causes) > 1 else ""
    return causes[0] + more


def grid_evidence(state: GridState, device_grid: str, meter_cause: str | None
                  ) -> tuple[str, str | None]:
    """The grid status the state machine gets this cycle, and its cause.

    The meters can only report a loss, never the grid's return (islanded, they see the
    grid-former), and only while the coop is on the grid or undefined.
    """
    if meter_cause is not None and state in (GridState.ON_GRID, GridState.UNDEFINED):
        return "off", f"grid lost (meters: {meter_cause})"
    if device_grid == "off":
        return "off", "grid lost (grid-former reports the utility disconnected)"
    return device_grid, None


def unplanned(state: GridState, in_force: bool) -> bool:
    """Off the grid without an island command: the grid was lost."""
    return state is GridState.OFF_GRID and not in_force


@dataclass(frozen=True, slots=True)
class FlexibleLoad:
    """A plug that a grid loss switches off; ``ev`` ones go first."""

    load_id: str
    ev: bool = False
    rated_w: float = 0.0


def flexible_loads(config: CoopConfig) -> list[FlexibleLoad]:
    """The flexible plugs of ``config`` (named as the poller names them), EV chargers
    first, then the largest: never a contactor, an infrastructure or a medical load."""
    from controller.load_ids import load_devices

    out = [FlexibleLoad(lid, dev.ev_charger, dev.rated_w or 0.0)
           for _, _, lid, dev in load_devices(config)
           if not (dev.contactor or dev.infrastructure or dev.medical)
           and (dev.tier or "flexible") == "flexible"]
    return sorted(out, key=lambda ld: (not ld.ev, -ld.rated_w))


@dataclass(slots=True)
class GridLossLoads:
    """Holds the flexible plugs off through an unplanned grid loss (see the module).

    :meth:`step` returns this cycle's commands: every flexible plug off in the
    cycle the loss is first seen (EV chargers first), renewed each half mandate
    while the coop is not confirmed back on the grid, and back on when it is.
    """

    loads: Sequence[FlexibleLoad]
    mandate_s: float
    held: set[str] = field(default_factory=set)
    sent_at: float = -math.inf
    _sent: set[str] = field(default_factory=set)

    def step(self, now: float, state: GridState, in_force: bool,
             skip: Mapping[str, bool] | frozenset[str] = frozenset()) -> list[LoadCommand]:
        """Commands for this cycle; ``skip``: loads a coordinator's override holds."""
        if state is GridState.ON_GRID:  # the grid is back: the plugs go back on
            back, self.held, self.sent_at = sorted(self.held), set(), -math.inf
            self._sent = set()
            return [LoadCommand(i, True) for i in back if i not in skip]
        if unplanned(state, in_force):  # every flexible plug, the new ones at once
            self.held.update(ld.load_id for ld in self.loads if ld.load_id not in skip)
        elif not self.held:
            return []
        # Held until the grid is confirmed (undefined or returning is not yet the grid).
        if now - self.sent_at < self.mandate_s / 2 and not self._new():
            return []
        self.sent_at = now
        self._sent = set(self.held)
        return [LoadCommand(ld.load_id, False) for ld in self.loads
                if ld.load_id in self.held and ld.load_id not in skip]

    def _new(self) -> bool:
        return bool(self.held - self._sent)

    def release_all(self) -> list[LoadCommand]:
        """On stop: every plug held off back on (as the shedding planner's are)."""
        back, self.held, self.sent_at, self._sent = sorted(self.held), set(), -math.inf, set()
        return [LoadCommand(i, True) for i in back]

    def holds(self, load_id: str) -> bool:
        """Whether ``load_id`` is held off by the grid loss now."""
        return load_id in self.held


def evidence(state: GridState, device_grid: str,
             meters: Iterable[tuple[str, float | None, float | None]],
             bounds: GridBounds = GridBounds()) -> tuple[str, str | None]:
    """:func:`grid_evidence` from the poller's ``meter_grid()`` rows (name, V, Hz)."""
    return grid_evidence(state, device_grid, meter_verdict(
        (MeterGrid(*m) for m in meters), bounds))
