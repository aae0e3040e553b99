"""Physics of a simulated coop's households, vectorized over households.

PV follows a pvlib typical-year day, load follows the BDEW H25 profile with a
per-household shift and ripple, and each battery follows its last setpoint
within its power ratings, SoC limits and efficiency, reverting to idle when
the setpoint expires. PV can be curtailed: a per-household cap on AC output
(the inverter's active-power limit) that lapses at its expiry, like a real
inverter's revert timer.

**Islanded** (``grid_connected`` False: the coop's breaker at the point of
common coupling is open) there is no utility. The grid-forming battery covers
each instant's imbalance, Σ over households of load − PV − the other
batteries' output, within its power rating and its SoC. Beyond that, as a
real island's frequency would make them: a deficit first holds back the other
batteries' charging, then drops load (:meth:`HouseholdPhysics.island_split`:
flexible, essential, critical households in that order, pro rata within a
tier), counted per household in ``unserved_wh``; a surplus first holds back
the other batteries' discharging, then curtails PV pro rata (``island_curtailed_wh``).
Both through the island's frequency (:mod:`simulators.frequency`): the grid-former
raises it as its battery nears full and as the PV exceeds what it can take, and
every (AC-coupled) PV inverter derates on it; ``frequency_hz`` is what the
inverters and meters report.
No battery goes below its floor (``soc_min_pct``). The meters measure what the
houses actually drew and fed in.

Events: :meth:`HouseholdPhysics.add_cloud` scales PV by a factor over a window
of simulated time (on-grid or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch.sharing import drop_by_tier
from simulators.frequency import F0_HZ, derate, frequency_for, soc_shift_hz
from simulators.profiles import at_minute, load_w_per_mwh_year, pv_w_per_kwp, sunny_day

FloatArray = NDArray[np.float64]
#: Islanded load drop order: higher first.
TIER_RANK = {"critical": 0, "essential": 1, "flexible": 2}


@dataclass(frozen=True, slots=True)
class HouseholdSpec:
    """One simulated household."""

    member_id: str
    name: str
    pv_kwp: float
    annual_kwh: float
    battery_wh: float = 0.0
    battery_max_w: float = 0.0
    efficiency: float = 0.92
    soc_start_pct: float = 50.0
    soc_min_pct: float = 5.0
    load_shift_min: float = 0.0
    #: The battery's inverter forms the grid when the coop is islanded (reports its
    #: grid connection in SunSpec 701 ``ConnSt``).
    grid_forming: bool = False
    #: Load priority (as ``[[members]] tier``): islanded, unserved power is dropped
    #: from flexible households first and from critical ones last.
    tier: str = "essential"
    #: A flexible appliance behind a smart plug (a Shelly Plug over MQTT), W while it
    #: runs (see :data:`APPLIANCE_HOURS`); 0: none. Part of :meth:`HouseholdPhysics.load_w`.
    plug_w: float = 0.0
    #: A household contactor (a relay on the house's main circuit, over MQTT): switched
    #: off, the whole house draws nothing. Its own PV and battery stay connected.
    contactor: bool = False


#: When a plugged appliance runs (a washing machine, a water heater), UTC hours of the
#: simulated day, shifted per household like its load.
APPLIANCE_HOURS = ((7.0, 8.5), (18.0, 21.0))


DEMO_NAMES = (
    "Ada", "Bram", "Chloé", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ines", "Jun",
    "Kofi", "Lena", "Mateo", "Nia", "Oskar", "Priya",
)


def demo_households(n: int = 10, seed: int = 7, plugs: bool = False,
                    contactors: bool = False) -> list[HouseholdSpec]:
    """A varied neighbourhood: PV from 0 to 9 kWp, most households with a battery; with
    ``plugs``, every third house has a 2 kW flexible appliance behind a smart plug; with
    ``contactors``, every house that is not critical has a household contactor."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n):
        # Six in ten own a battery; every seventh house has no PV (a flat, a shaded roof).
        has_battery = i % 10 not in (1, 4, 6, 9)
        kwp = 0.0 if i % 7 == 6 else float(rng.choice([3.0, 4.5, 6.0, 7.5, 9.0]))
        specs.append(
            HouseholdSpec(
                member_id=f"h{i + 1:02d}",
                name=f"{DEMO_NAMES[i % len(DEMO_NAMES)]}'s house",
                pv_kwp=kwp,
                annual_kwh=float(rng.uniform(2200, 5500)),
                battery_wh=float(rng.choice([5000, 7700, 10000, 13500])) if has_battery else 0.0,
                battery_max_w=float(rng.choice([2500, 3300, 5000])) if has_battery else 0.0,
                soc_start_pct=float(rng.uniform(20, 80)),
                load_shift_min=float(rng.uniform(-50, 50)),
                grid_forming=i == 0,  # the first house's battery inverter forms the island
                tier="critical" if i == 1 else "essential",  # a medical device at home
                plug_w=2000.0 if plugs and i % 3 == 2 else 0.0,
                contactor=contactors and i != 1,
            )
        )
    return specs


class HouseholdPhysics:
    """State of every simulated household, advanced in simulated time."""

    def __init__(self, specs: list[HouseholdSpec], day: int | None = None, seed: int = 11) -> None:
        self.specs = specs
        day = sunny_day() if day is None else day
        self._pv_profile = pv_w_per_kwp(day)
        self._load_profile = load_w_per_mwh_year(day)
        rng = np.random.default_rng(seed)
        arr = np.array
        self.kwp = arr([s.pv_kwp for s in specs])
        self.annual_mwh = arr([s.annual_kwh for s in specs]) / 1000.0
        self.shift_min = arr([s.load_shift_min for s in specs])
        self.capacity_wh = arr([s.battery_wh for s in specs])
        self.max_w = arr([s.battery_max_w for s in specs])
        self.leg_eta = np.sqrt(arr([s.efficiency for s in specs]))
        self.soc_min_wh = arr([s.soc_min_pct for s in specs]) / 100.0 * self.capacity_wh
        self.stored_wh = arr([s.soc_start_pct for s in specs]) / 100.0 * self.capacity_wh
        self.ripple_phase = rng.uniform(0, 2 * np.pi, size=(len(specs), 3))
        self.setpoint_w = np.zeros(len(specs))
        self.setpoint_expiry_s = np.full(len(specs), -np.inf)
        self.pv_limit_w = np.full(len(specs), np.inf)
        self.pv_limit_expiry_s = np.full(len(specs), -np.inf)
        self.battery_w = np.zeros(len(specs))
        self.pv_wh = np.zeros(len(specs))
        self.import_wh = np.zeros(len(specs))
        self.export_wh = np.zeros(len(specs))
        self.time_s: float | None = None
        #: The island's frequency (the grid's, f0, while connected), Hz.
        self.frequency_hz = F0_HZ
        #: Whether the point of common coupling is closed (the utility is there).
        self.grid_connected = True
        former = [i for i, sp in enumerate(specs) if sp.grid_forming and sp.battery_wh > 0]
        #: Index of the grid-forming battery's household, None without one.
        self.former: int | None = former[0] if former else None
        self.tier_rank = arr([TIER_RANK.get(s.tier, 1) for s in specs], dtype=np.int64)
        self.clouds: list[tuple[float, float, float]] = []
        #: Unmanaged loads (an EV charger no plug switches): (household, from, to, W).
        self.extra_loads: list[tuple[int, float, float, float]] = []
        #: When the grid-forming inverter trips: islanded from then on, nothing forms the
        #: grid and every house is dark (rehearsal scenario ``former-trip``).
        self.former_trip_s = float("inf")
        n = len(specs)
        self.unserved_w = np.zeros(n)  # islanded: load dropped at the last step, W
        self.island_curtailed_w = np.zeros(n)  # islanded: PV the island could not take, W
        self.unserved_wh = np.zeros(n)
        self.island_curtailed_wh = np.zeros(n)
        #: PV a cap (the inverter's active-power limit) held back, Wh.
        self.limit_curtailed_wh = np.zeros(n)
        #: PV the panels could have given (clouds included, no cap), Wh.
        self.pv_available_wh = np.zeros(n)
        self.served_wh = np.zeros(n)  # load the houses drew
        self.plug_w = arr([s.plug_w for s in specs])
        #: Each smart plug's relay (True where there is none): an appliance runs only if on.
        self.plug_on = np.ones(n, dtype=bool)
        self.plug_wh = np.zeros(n)  # what the plugged appliances drew (the plug's counter)
        #: Each household contactor (True where there is none): off, the house draws nothing.
        self.house_on = np.ones(n, dtype=bool)
        self.house_wh = np.zeros(n)  # what each house drew through its contactor
        #: Demand that a relay (plug or contactor) held off: shed by a switch, Wh.
        self.switched_off_wh = np.zeros(n)
        #: … of which plugged appliances held off by their plug (the flexible tier), Wh.
        self.plug_off_wh = np.zeros(n)

    def add_cloud(self, start_s: float, end_s: float, factor: float) -> None:
        """PV at ``factor`` (0-1) of its clear-day output from ``start_s`` to ``end_s``."""
        if not 0.0 <= factor <= 1.0 or end_s <= start_s:
            raise ValueError(f"cloud ({start_s}, {end_s}, {factor}): expected start < end and "
                             "a factor from 0 to 1")
        self.clouds.append((start_s, end_s, factor))

    def add_load(self, index: int, start_s: float, end_s: float, power_w: float) -> None:
        """An unmanaged load of ``power_w`` in household ``index`` from ``start_s`` to
        ``end_s``: part of the house's load (its contactor cuts it), behind no plug."""
        if not 0 <= index < len(self.specs) or power_w < 0 or end_s <= start_s:
            raise ValueError(f"load ({index}, {start_s}, {end_s}, {power_w}): expected a "
                             "household index, start < end and a power ≥ 0")
        self.extra_loads.append((index, start_s, end_s, power_w))

    def extra_load_w(self, t_s: float) -> FloatArray:
        """What the unmanaged loads draw at ``t_s`` (contactor on or not), W per household."""
        out = np.zeros(len(self.specs))
        for index, start, end, power in self.extra_loads:
            if start <= t_s < end:
                out[index] += power
        return out

    def cloud_factor(self, t_s: float) -> float:
        """The product of the cloud factors in force at ``t_s`` (1 in clear sky)."""
        factor = 1.0
        for start, end, f in self.clouds:
            if start <= t_s < end:
                factor *= f
        return factor

    def pv_clear_w(self, t_s: float) -> FloatArray:
        """PV AC power of the day's profile at ``t_s``, without injected clouds."""
        return self.kwp * at_minute(self._pv_profile, np.full(len(self.kwp), t_s / 60.0))

    def pv_available_w(self, t_s: float) -> FloatArray:
        """PV AC power the panels could give at ``t_s`` (clouds included), before any
        curtailment."""
        clear = self.pv_clear_w(t_s)
        return clear * self.cloud_factor(t_s) if self.clouds else clear

    def pv_w(self, t_s: float) -> FloatArray:
        """PV AC power of every household at ``t_s``: available power, capped by any
        PV limit that has not expired."""
        available = self.pv_available_w(t_s)
        cap = np.where(self.pv_limit_expiry_s >= t_s, self.pv_limit_w, np.inf)
        return np.minimum(available, cap)

    def pv_out_w(self, t_s: float) -> FloatArray:
        """PV AC power the inverters deliver at ``t_s``: :meth:`pv_w` less what the island
        could not take at the last step."""
        return self.pv_w(t_s) - self.island_curtailed_w

    def pv_limited(self, t_s: float) -> NDArray[np.bool_]:
        """Which households have a PV limit in force at ``t_s``."""
        return (self.pv_limit_expiry_s >= t_s) & np.isfinite(self.pv_limit_w)

    def limit_pv(self, index: int, limit_w: float | None, expires_at_s: float) -> None:
        """Cap household ``index``'s PV at ``limit_w`` until ``expires_at_s``; ``None`` lifts it."""
        if limit_w is None:
            self.pv_limit_w[index] = np.inf
            self.pv_limit_expiry_s[index] = -np.inf
            return
        self.pv_limit_w[index] = max(limit_w, 0.0)
        self.pv_limit_expiry_s[index] = expires_at_s

    def base_load_w(self, t_s: float) -> FloatArray:
        """Household load at ``t_s`` without plugged appliances: H25 shifted per household,
        with a slow ripple."""
        minutes = t_s / 60.0 - self.shift_min
        base = self.annual_mwh * at_minute(self._load_profile, minutes)
        periods = np.array([7.0, 23.0, 61.0])  # minutes: appliances cycling on and off
        ripple = np.sin(2 * np.pi * minutes[:, None] / periods + self.ripple_phase).sum(axis=1)
        return np.maximum(base * (1.0 + 0.15 * ripple), 30.0)

    def appliance_w(self, t_s: float) -> FloatArray:
        """What each plugged appliance would draw at ``t_s`` with its plug on, W."""
        hour = ((t_s / 60.0 - self.shift_min) / 60.0) % 24.0
        running = np.zeros(len(self.plug_w), dtype=bool)
        for start, end in APPLIANCE_HOURS:
            running |= (hour >= start) & (hour < end)
        return np.where(running, self.plug_w, 0.0)

    def load_w(self, t_s: float) -> FloatArray:
        """Household load at ``t_s``: the base load and the appliances whose plug is on;
        nothing where the household contactor is off."""
        load = self.base_load_w(t_s) + np.where(self.plug_on, self.appliance_w(t_s), 0.0)
        if self.extra_loads:
            load = load + self.extra_load_w(t_s)
        return np.where(self.house_on, load, 0.0)

    def command(self, index: int, power_w: float, expires_at_s: float) -> None:
        """A battery setpoint (discharge > 0) valid until ``expires_at_s``."""
        self.setpoint_w[index] = power_w
        self.setpoint_expiry_s[index] = expires_at_s

    def advance_to(self, t_s: float) -> None:
        """Integrate batteries and energy counters up to ``t_s``."""
        if self.time_s is None:
            self.time_s = t_s
        dt_h = max(t_s - self.time_s, 0.0) / 3600.0
        active = np.where(self.setpoint_expiry_s >= t_s, self.setpoint_w, 0.0)
        power = np.clip(active, -self.max_w, self.max_w)
        load, pv = self.load_w(t_s), self.pv_w(t_s)
        available = self.pv_available_w(t_s)
        max_out, max_in = self._power_room(dt_h)
        if dt_h > 0:
            power = np.clip(power, -max_in, max_out)
        if self.grid_connected:
            self.unserved_w = np.zeros_like(load)
            self.island_curtailed_w = np.zeros_like(load)
            self.frequency_hz = F0_HZ
        else:
            # The grid-former's frequency for its SoC derates the PV first; whatever it
            # still cannot take raises the frequency further (pro rata over the PV).
            shift = F0_HZ if self.former is None else soc_shift_hz(
                float(self.soc_pct()[self.former]))
            pv_bus = pv * float(derate(shift))
            power, self.unserved_w, extra = self.island_split(
                load, pv_bus, power, max_out, max_in)
            self.island_curtailed_w = pv - pv_bus + extra
            total = float(pv.sum())
            delivered = total - float(self.island_curtailed_w.sum())
            self.frequency_hz = max(shift, frequency_for(delivered / total)) if total > 0 \
                else shift
            if t_s >= self.former_trip_s:  # nothing forms the grid: every house is dark
                power, self.unserved_w, self.island_curtailed_w = (
                    np.zeros_like(load), load.copy(), pv.copy())
        if dt_h > 0:
            self.stored_wh += np.where(
                power > 0, -power / self.leg_eta, -power * self.leg_eta
            ) * dt_h
            pv_out = pv - self.island_curtailed_w
            served = load - self.unserved_w
            net = served - pv_out - power
            self.pv_wh += pv_out * dt_h
            self.import_wh += np.maximum(net, 0.0) * dt_h
            self.export_wh += np.maximum(-net, 0.0) * dt_h
            self.served_wh += served * dt_h
            self.plug_wh += np.where(self.plug_on & self.house_on, self.appliance_w(t_s),
                                     0.0) * dt_h
            self.house_wh += served * dt_h
            demand = self.base_load_w(t_s) + self.appliance_w(t_s)
            if self.extra_loads:
                demand = demand + self.extra_load_w(t_s)
            self.switched_off_wh += (demand - load) * dt_h
            self.plug_off_wh += np.where(self.plug_on, 0.0, self.appliance_w(t_s)) * dt_h
            self.unserved_wh += self.unserved_w * dt_h
            self.island_curtailed_wh += self.island_curtailed_w * dt_h
            self.limit_curtailed_wh += (available - pv) * dt_h
            self.pv_available_wh += available * dt_h
        self.battery_w = power
        self.time_s = t_s

    def _power_room(self, dt_h: float) -> tuple[FloatArray, FloatArray]:
        """How far each battery may discharge and charge now (W): its rating, and over
        ``dt_h`` its content above the floor and its room below full."""
        if dt_h <= 0:
            out = np.where(self.stored_wh > self.soc_min_wh, self.max_w, 0.0)
            return out, np.where(self.stored_wh < self.capacity_wh, self.max_w, 0.0)
        max_out = np.maximum(self.stored_wh - self.soc_min_wh, 0.0) * self.leg_eta / dt_h
        max_in = np.maximum(self.capacity_wh - self.stored_wh, 0.0) / self.leg_eta / dt_h
        return np.minimum(max_out, self.max_w), np.minimum(max_in, self.max_w)

    def island_split(self, load: FloatArray, pv: FloatArray, power: FloatArray,
                     max_out: FloatArray, max_in: FloatArray,
                     ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Balance the island at one instant: battery power (the grid-former's is the
        slack), unserved load and curtailed PV, W per household.

        ``power`` holds the batteries' setpoints within their limits; ``max_out`` and
        ``max_in`` how far each may discharge and charge now.
        """
        power = power.copy()
        g = self.former
        if g is not None:
            power[g] = 0.0
        imbalance = float(load.sum() - pv.sum() - power.sum())
        slack = 0.0
        if g is not None:
            slack = min(max(imbalance, -float(max_in[g])), float(max_out[g]))
            power[g] = slack
        unserved, curtailed = np.zeros_like(load), np.zeros_like(pv)
        rest = imbalance - slack
        if rest > 0:  # short: the others stop charging, then load is dropped
            charging = np.where(power < 0, -power, 0.0)
            if g is not None:
                charging[g] = 0.0
            held = min(rest, float(charging.sum()))
            if held > 0:
                power += charging * (held / float(charging.sum()))
            unserved = drop_by_tier(load, rest - held, self.tier_rank)
        elif rest < 0:  # long: the others stop discharging, then PV is curtailed
            discharging = np.where(power > 0, power, 0.0)
            if g is not None:
                discharging[g] = 0.0
            held = min(-rest, float(discharging.sum()))
            if held > 0:
                power -= discharging * (held / float(discharging.sum()))
            excess = -rest - held
            total_pv = float(pv.sum())
            if excess > 0 and total_pv > 0:
                curtailed = pv * min(excess / total_pv, 1.0)
        return power, unserved, curtailed

    def held_back_wh(self) -> FloatArray:
        """PV held back so far per household, Wh: by a cap, and by the island (a full
        grid-former's frequency shift)."""
        return self.limit_curtailed_wh + self.island_curtailed_wh

    def shed_by_tier_wh(self) -> FloatArray:
        """Load not served so far per tier (critical, essential, flexible), Wh: what the
        island dropped and a contactor held off, in its household's tier, and what a plug
        held off, in the flexible tier."""
        house = self.unserved_wh + self.switched_off_wh - self.plug_off_wh
        out = np.bincount(self.tier_rank, weights=house, minlength=3)[:3]
        out[TIER_RANK["flexible"]] += float(self.plug_off_wh.sum())
        return out

    def meter_w(self, t_s: float) -> FloatArray:
        """Net power at each household's grid connection, import > 0: what the house drew
        (load less any dropped islanded) less PV delivered and battery output."""
        return (self.load_w(t_s) - self.unserved_w) - self.pv_out_w(t_s) - self.battery_w

    def soc_pct(self) -> FloatArray:
        """State of charge of each battery in % (0 where there is none)."""
        return np.divide(
            self.stored_wh * 100.0,
            self.capacity_wh,
            out=np.zeros_like(self.stored_wh),
            where=self.capacity_wh > 0,
        )
