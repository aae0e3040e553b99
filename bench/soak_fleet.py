"""The soak's simulated fleet: who has which devices, their power over time, and the faults.

Everything here is a pure function of a seed and an epoch, so the device
servers (in their own processes) and the benchmark agree on what was produced
and on which device misbehaved when, without talking to each other. Power is a
slow sine around a per-household base, so its integral over any time range is
exact (:func:`produced_wh`) and can be held against the ledger.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

PV_PERIOD_S, LOAD_PERIOD_S, SWING = 600.0, 420.0, 0.3
#: Fault kinds per protocol: (name, shortest, longest duration in s).
MODBUS_FAULTS = (("timeout", 3, 12), ("exception", 3, 12), ("garbage", 3, 12),
                 ("dropout", 20, 60))
MQTT_FAULTS = (("stale", 5, 30), ("garbage", 3, 12), ("dropout", 20, 60))
#: Fault starts per device and minute.
FAULT_RATE_PER_MIN = 0.02


@dataclass(frozen=True)
class FaultEvent:
    """Household ``household``'s ``device`` ("meter" or "pv") shows ``kind`` from
    ``start_s`` (after the epoch) for ``duration_s``."""

    household: int
    device: str
    kind: str
    start_s: float
    duration_s: float


@dataclass
class FleetSpec:
    """Households ``0..modbus-1`` speak Modbus (SunSpec inverter and meter on one
    port), the rest MQTT (an OpenDTU inverter and a Shelly Pro 3EM meter)."""

    households: int
    modbus: int
    epoch: float
    seed: int = 0
    faults: list[FaultEvent] = field(default_factory=list)

    @property
    def member_ids(self) -> list[str]:
        """One member per household."""
        return [f"h{i:04d}" for i in range(self.households)]

    def bases(self) -> tuple[NDArray[np.float64], NDArray[np.float64],
                             NDArray[np.float64], NDArray[np.float64]]:
        """Per household: PV base (W), load base (W) and their phases."""
        rng = np.random.default_rng(self.seed)
        n = self.households
        pv = rng.choice([0.0, 1500.0, 3000.0, 4500.0], n, p=[0.2, 0.3, 0.3, 0.2])
        load = rng.uniform(300.0, 2000.0, n)
        return pv, load, rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)

    def power_w(self, t: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """PV and load power of every household at wall time ``t``."""
        pv, load, phi, psi = self.bases()
        s = t - self.epoch
        return (pv * (1 + SWING * np.sin(2 * np.pi * s / PV_PERIOD_S + phi)),
                load * (1 + SWING * np.sin(2 * np.pi * s / LOAD_PERIOD_S + psi)))

    def produced_wh(self, a: float, b: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """PV and load energy of every household over wall times ``[a, b]``, exactly."""
        pv, load, phi, psi = self.bases()

        def integral(base: NDArray, period: float, phase: NDArray) -> NDArray:
            w = 2 * np.pi / period
            sa, sb = a - self.epoch, b - self.epoch
            return base * ((b - a) - SWING / w * (np.cos(w * sb + phase) - np.cos(w * sa + phase)))

        return integral(pv, PV_PERIOD_S, phi) / 3600, integral(load, LOAD_PERIOD_S, psi) / 3600

    def active(self, household: int, device: str, t: float) -> str | None:
        """The fault ``device`` of ``household`` shows at wall time ``t``, if any."""
        s = t - self.epoch
        for f in self.faults:
            if (f.household == household and f.device == device
                    and f.start_s <= s < f.start_s + f.duration_s):
                return f.kind
        return None

    def faulted(self) -> NDArray[np.bool_]:
        """Households that had a fault at any time."""
        out = np.zeros(self.households, dtype=bool)
        out[[f.household for f in self.faults]] = True
        return out

    def save(self, path: Path) -> None:
        """Write as JSON, for a server process."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> FleetSpec:
        """Read what :meth:`save` wrote."""
        raw = json.loads(path.read_text())
        raw["faults"] = [FaultEvent(**f) for f in raw["faults"]]
        return cls(**raw)


def random_faults(households: int, modbus: int, duration_s: float, seed: int,
                  rate_per_min: float = FAULT_RATE_PER_MIN) -> list[FaultEvent]:
    """Faults starting at random: about ``rate_per_min`` per device and minute, after a
    20 s quiet start (so the first readings and the discovery are clean)."""
    rng = np.random.default_rng(seed + 1)
    devices = households * 2
    count = rng.poisson(rate_per_min * devices * max(duration_s - 20, 0) / 60)
    out = []
    for _ in range(count):
        household = int(rng.integers(households))
        kinds = MODBUS_FAULTS if household < modbus else MQTT_FAULTS
        kind, shortest, longest = kinds[rng.integers(len(kinds))]
        out.append(FaultEvent(household, str(rng.choice(["meter", "pv"])), kind,
                              float(rng.uniform(20, duration_s)),
                              float(rng.uniform(shortest, longest))))
    return sorted(out, key=lambda f: f.start_s)
