"""Static description of a fleet of households as a struct of arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(slots=True)
class Fleet:
    """Battery parameters of N households, one array element per household.

    A household without a battery has ``capacity_wh == 0`` and zero power
    limits; the dispatch then never books battery flows for it.

    Attributes:
        capacity_wh: usable energy content at 100 % SoC, in Wh.
        soc_min_wh: energy that must stay in the battery (SoC floor), in Wh.
        max_charge_w: charge power rating on the AC side, in W.
        max_discharge_w: discharge power rating on the AC side, in W.
        efficiency: round-trip efficiency in (0, 1]; losses are split evenly
            between charge and discharge (sqrt on each leg).
    """

    capacity_wh: FloatArray
    soc_min_wh: FloatArray
    max_charge_w: FloatArray
    max_discharge_w: FloatArray
    efficiency: FloatArray

    def __post_init__(self) -> None:
        n = len(self.capacity_wh)
        for name in ("soc_min_wh", "max_charge_w", "max_discharge_w", "efficiency"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (n,):
                raise ValueError(f"Fleet.{name}: expected shape ({n},), got {value.shape}")
            setattr(self, name, value)
        self.capacity_wh = np.asarray(self.capacity_wh, dtype=np.float64)
        bad = ~((self.efficiency > 0) & (self.efficiency <= 1))
        if bad.any():
            raise ValueError(
                f"Fleet.efficiency[{int(np.argmax(bad))}]: round-trip efficiency must be in (0, 1]"
            )
        if (self.soc_min_wh > self.capacity_wh).any() or (self.soc_min_wh < 0).any():
            raise ValueError("Fleet.soc_min_wh: must lie between 0 and capacity_wh")

    @property
    def size(self) -> int:
        """Number of households."""
        return len(self.capacity_wh)

    @property
    def leg_efficiency(self) -> FloatArray:
        """One-way efficiency of each leg (charge or discharge)."""
        return np.sqrt(self.efficiency)

    @classmethod
    def without_batteries(cls, n: int) -> Fleet:
        """A fleet of ``n`` households that own no battery."""
        zeros = np.zeros(n)
        return cls(zeros, zeros.copy(), zeros.copy(), zeros.copy(), np.ones(n))
