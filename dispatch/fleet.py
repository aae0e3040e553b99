"""A fleet of households as a struct of arrays: static parameters, state, and coop limits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: Sharing policies a coop can choose.
POLICIES = ("prorata", "equal", "static", "tiers")


@dataclass(slots=True)
class Fleet:
    """Battery and membership parameters of N households, one element per household.

    A household without a battery has ``capacity_wh == 0`` and zero power
    limits. Energies are in Wh, powers in W (AC side).

    Attributes:
        capacity_wh: usable energy content at 100 % SoC.
        soc_min_wh: hard floor (device safety); nothing discharges below it.
        max_charge_w, max_discharge_w: power ratings.
        efficiency: round trip in (0, 1]; losses split evenly over both legs.
        reserve_wh: emergency reserve kept for islanding. On-grid the battery
            does not discharge below it; neighbours never take it below it.
            Defaults to ``soc_min_wh``.
        hysteresis_wh: once a battery falls to its reserve on-grid it holds
            until it is charged ``hysteresis_wh`` above it again. Default 0.
        offered: the member offers the battery to the coop (charge from the
            peer pool, discharge to neighbours). Default False.
        grid_charge: the battery may charge from the grid, on-grid, to restore
            its reserve. Default False.
        tier: load priority, 0 = critical (served first, shed last).
        key: static sharing key (policy ``static``), >= 0. Default 1.
        grid_forming: the battery forms the grid islanded (the island's slack): the
            dispatch spends it last (:mod:`dispatch.island`). Default False.
    """

    capacity_wh: FloatArray
    soc_min_wh: FloatArray
    max_charge_w: FloatArray
    max_discharge_w: FloatArray
    efficiency: FloatArray
    reserve_wh: FloatArray | None = None
    hysteresis_wh: FloatArray | None = None
    offered: BoolArray | None = None
    grid_charge: BoolArray | None = None
    tier: IntArray | None = None
    key: FloatArray | None = None
    grid_forming: BoolArray | None = None
    leg_efficiency: FloatArray = field(init=False)
    inverse_leg_efficiency: FloatArray = field(init=False)
    any_offered: bool = field(init=False)
    any_grid_charge: bool = field(init=False)

    def __post_init__(self) -> None:
        self.capacity_wh = np.asarray(self.capacity_wh, dtype=np.float64)
        n = len(self.capacity_wh)
        defaults = {
            "reserve_wh": (self.soc_min_wh, np.float64),
            "hysteresis_wh": (np.zeros(n), np.float64),
            "offered": (np.zeros(n, bool), np.bool_),
            "grid_charge": (np.zeros(n, bool), np.bool_),
            "tier": (np.zeros(n, np.int64), np.int64),
            "key": (np.ones(n), np.float64),
            "grid_forming": (np.zeros(n, bool), np.bool_),
        }
        for name in ("soc_min_wh", "max_charge_w", "max_discharge_w", "efficiency", *defaults):
            value = getattr(self, name)
            if value is None:
                value = defaults[name][0]
            dtype = defaults.get(name, (None, np.float64))[1]
            value = np.array(value, dtype=dtype)
            if value.shape != (n,):
                raise ValueError(f"Fleet.{name}: expected shape ({n},), got {value.shape}")
            setattr(self, name, value)
        self._check()
        self.leg_efficiency = np.sqrt(self.efficiency)
        self.inverse_leg_efficiency = 1.0 / self.leg_efficiency
        self.any_offered = bool(self.offered.any())
        self.any_grid_charge = bool(self.grid_charge.any())

    def _check(self) -> None:
        def fail(name: str, mask: BoolArray, expected: str) -> None:
            if mask.any():
                i = int(np.argmax(mask))
                value = getattr(self, name)[i]
                raise ValueError(f"Fleet.{name}[{i}] = {value!r}: expected {expected}")

        for name in ("capacity_wh", "soc_min_wh", "max_charge_w", "max_discharge_w",
                     "reserve_wh", "hysteresis_wh", "key"):
            fail(name, ~(getattr(self, name) >= 0), "a finite number >= 0")
            fail(name, ~np.isfinite(getattr(self, name)), "a finite number >= 0")
        fail("efficiency", ~((self.efficiency > 0) & (self.efficiency <= 1)), "0 < value <= 1")
        fail("soc_min_wh", self.soc_min_wh > self.capacity_wh, "at most capacity_wh")
        fail("reserve_wh", self.reserve_wh > self.capacity_wh, "at most capacity_wh")
        fail("tier", self.tier < 0, "a tier >= 0 (0 is critical)")

    @property
    def size(self) -> int:
        """Number of households."""
        return len(self.capacity_wh)

    @classmethod
    def without_batteries(cls, n: int) -> Fleet:
        """A fleet of ``n`` households that own no battery."""
        zeros = np.zeros(n)
        return cls(zeros, zeros.copy(), zeros.copy(), zeros.copy(), np.ones(n))


@dataclass(slots=True)
class FleetState:
    """What changes from tick to tick: battery content, its coop-origin part, reserve latch."""

    stored_wh: FloatArray
    pool_coop_wh: FloatArray
    held: BoolArray

    @classmethod
    def start(cls, stored_wh: FloatArray, pool_coop_wh: FloatArray | None = None) -> FleetState:
        """Initial state; energy of unknown origin counts as not liberated by default."""
        stored = np.array(stored_wh, dtype=np.float64)
        pool = np.zeros_like(stored) if pool_coop_wh is None else np.array(pool_coop_wh, float)
        return cls(stored, pool, np.zeros(len(stored), dtype=bool))

    def copy(self) -> FleetState:
        """An independent copy."""
        return FleetState(self.stored_wh.copy(), self.pool_coop_wh.copy(), self.held.copy())


@dataclass(frozen=True, slots=True)
class CoopLimits:
    """Limits at the point of common coupling, in W, and whether the coop is islanded.

    ``charge_ceiling_pct``: islanded, a grid-forming battery charges only up to this
    SoC (AC-coupled PV: see :func:`dispatch.island.charge_ceiling_wh`); 100: none.
    """

    import_cap_w: float = float("inf")
    export_cap_w: float = float("inf")
    islanded: bool = False
    charge_ceiling_pct: float = 100.0
