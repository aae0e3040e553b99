"""The rehearsal's library of named scenarios (``island rehearse --scenario NAME``).

Each scenario is a list of simulator events, each at its first occurrence at or
after the rehearsal's start (simulated clock, UTC), and a suggested start and
length that show it (``--start`` and ``--hours`` override them). The plan never
knows the events: the rehearsal shows what they do to a day planned without them.

========================  ===================================================
``clear``                 a clear day, every device answering
``cloudy-afternoon``      PV × 0.3 from 13:00 to 17:00
``lost-battery``          the second battery stops answering at 14:00
``former-trip``           the grid-forming inverter trips at 20:00 (the island
                          goes dark; its gateway answers with exceptions)
``unmanaged-load``        an unmanaged 7 kW load (an EV charger behind no plug)
                          in the last essential house from 19:00 for 2 h
``lost-comms``            one house (its inverter, meter and battery) stops
                          answering at 19:00 (timeouts, as a dead router)
``grid-loss``             the utility goes at 19:00 without warning or command
                          and comes back at 20:00 (the coop is not islanded
                          beforehand: the controller must notice by itself)
``default``               the cloudy afternoon and the lost battery (what
                          ``island rehearse`` without ``--scenario`` runs)
========================  ===================================================

The events are data (:class:`Cloud`, :class:`Dropout`, ...) put into a
:class:`~simulators.coop.SimulatedCoop` by :func:`inject`; a breaker that opens
by itself (the grid loss) is returned as a schedule for the rehearsal to play.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulators.modbus_server import Fault

if TYPE_CHECKING:
    from simulators.coop import SimulatedCoop

#: Modbus units of a simulated household (simulators/coop.py).
UNITS = ("inverter", "meter", "battery")


@dataclass(frozen=True, slots=True)
class Cloud:
    """PV at ``factor`` of the clear day from ``hour`` for ``hours``."""

    hour: float
    hours: float
    factor: float


@dataclass(frozen=True, slots=True)
class Dropout:
    """From ``hour`` on, the ``which`` battery owner's ``units`` fail with ``fault``.

    ``which`` counts battery owners (0 is the grid-former's house, 1 the second
    battery's); ``-1`` is the last house of all (with or without a battery).
    """

    hour: float
    which: int
    units: tuple[str, ...] = ("battery",)
    fault: Fault = Fault.EXCEPTION
    kind: str = "battery_dropout"


@dataclass(frozen=True, slots=True)
class FormerTrip:
    """The grid-forming inverter trips at ``hour``: the island goes dark."""

    hour: float


@dataclass(frozen=True, slots=True)
class UnmanagedLoad:
    """``power_w`` in the last essential house from ``hour`` for ``hours``."""

    hour: float
    hours: float
    power_w: float


@dataclass(frozen=True, slots=True)
class GridLoss:
    """The utility goes at ``hour`` (the breaker opens by itself) for ``hours``."""

    hour: float
    hours: float


Event = Cloud | Dropout | FormerTrip | UnmanagedLoad | GridLoss


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named list of events, what it shows, and when to start to see it."""

    name: str
    about: str
    events: tuple[Event, ...] = ()
    start: str = "00:00"
    hours: float = 24.0
    #: Whether the rehearsal commands the island (False: the grid goes by itself).
    commanded: bool = True
    notes: tuple[str, ...] = field(default=())


_CLOUD = Cloud(13.0, 4.0, 0.3)
_LOST_BATTERY = Dropout(14.0, 1)

#: The library, by name.
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("clear", "a clear day, every device answering"),
    Scenario("cloudy-afternoon", "PV x 0.3 from 13:00 to 17:00", (_CLOUD,)),
    Scenario("lost-battery", "the second battery stops answering at 14:00", (_LOST_BATTERY,),
             start="12:00", hours=6.0),
    Scenario("former-trip", "the grid-forming inverter trips at 20:00: the island goes dark",
             (FormerTrip(20.0),), start="18:00", hours=4.0),
    Scenario("unmanaged-load", "an unmanaged 7 kW load in the last essential house from "
             "19:00 for 2 h", (UnmanagedLoad(19.0, 2.0, 7000.0),), start="18:30", hours=2.0),
    Scenario("lost-comms", "the last house stops answering (inverter, meter, battery) at "
             "19:00", (Dropout(19.0, -1, UNITS, Fault.TIMEOUT, "lost_comms"),),
             start="18:00", hours=3.0),
    Scenario("grid-loss", "the grid goes at 19:00 without warning, back at 20:00",
             (GridLoss(19.0, 1.0),), start="18:30", hours=2.0, commanded=False),
    Scenario("default", "the cloudy afternoon and the lost battery", (_CLOUD, _LOST_BATTERY)),
)}


def get(name: str) -> Scenario:
    """The scenario called ``name``; :class:`ValueError` naming the choices otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"--scenario = {name!r}: expected one of "
                         f"{', '.join(SCENARIOS)} (or 'list')") from None


def listing() -> str:
    """``--scenario list``: one line per scenario."""
    width = max(len(n) for n in SCENARIOS)
    return "".join(f"{s.name:<{width}}  {s.about} (start {s.start}, {s.hours:g} h"
                   f"{', not commanded' if not s.commanded else ''})\n"
                   for s in SCENARIOS.values())


def at_or_after(start_ts: float, hour: float) -> float:
    """``hour`` (UTC) on the start's day, or the next day's if it is before the start."""
    t = start_ts // 86400 * 86400 + hour * 3600.0
    return t if t >= start_ts else t + 86400.0


def inject(coop: SimulatedCoop, start_ts: float, events: tuple[Event, ...],
           ) -> tuple[list[dict], list[tuple[float, bool]]]:
    """Put ``events`` into ``coop``; their descriptions, and the breaker's schedule
    ((simulated time, closed) pairs) for the rehearsal to play."""
    from simulators.coop import BATTERY_UNIT, INVERTER_UNIT, METER_UNIT

    unit_no = {"inverter": INVERTER_UNIT, "meter": METER_UNIT, "battery": BATTERY_UNIT}
    houses = coop.households
    owners = [h.index for h in houses if h.battery is not None]
    out: list[dict] = []
    breaker: list[tuple[float, bool]] = []
    for e in events:
        if isinstance(e, Cloud):
            a = at_or_after(start_ts, e.hour)
            b = a + e.hours * 3600.0
            coop.physics.add_cloud(a, b, e.factor)
            out.append({"kind": "cloud", "from_ts": a, "to_ts": b, "pv_factor": e.factor})
        elif isinstance(e, Dropout):
            index = houses[-1].index if e.which < 0 else (
                owners[e.which] if e.which < len(owners) else None)
            if index is None:
                continue  # a coop without that many batteries: nothing to drop
            at = at_or_after(start_ts, e.hour)
            units = [u for u in e.units if unit_no[u] in houses[index].server.images]
            for u in units:
                coop.add_dropout(index, at, unit_no[u], fault=e.fault)
            out.append({"kind": e.kind, "at_ts": at, "member": houses[index].spec.member_id,
                        "units": units, "how": f"stops answering Modbus ({e.fault.value})"})
        elif isinstance(e, FormerTrip):
            former = coop.physics.former
            if former is None:
                continue
            at = at_or_after(start_ts, e.hour)
            coop.physics.former_trip_s = at
            coop.add_dropout(former, at, BATTERY_UNIT, fault=Fault.EXCEPTION)
            out.append({"kind": "former_trip", "at_ts": at,
                        "member": houses[former].spec.member_id})
        elif isinstance(e, UnmanagedLoad):
            essential = [h.index for h in houses if h.spec.tier == "essential"]
            index = essential[-1] if essential else houses[-1].index
            a = at_or_after(start_ts, e.hour)
            b = a + e.hours * 3600.0
            coop.physics.add_load(index, a, b, e.power_w)
            out.append({"kind": "unmanaged_load", "from_ts": a, "to_ts": b,
                        "power_w": e.power_w, "member": houses[index].spec.member_id})
        elif isinstance(e, GridLoss):
            a = at_or_after(start_ts, e.hour)
            b = a + e.hours * 3600.0
            breaker += [(a, False), (b, True)]
            out.append({"kind": "grid_loss", "from_ts": a, "to_ts": b,
                        "how": "the breaker opens without a command"})
    return out, sorted(breaker)
