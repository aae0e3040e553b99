"""An island's frequency as its grid-former sets it, and AC-coupled PV's answer to it.

Islanded, the grid-forming battery inverter sets the frequency. As its battery
nears full it raises it (frequency-shift power control, as SMA's Sunny Island
and Victron's MultiPlus do): from the nominal ``f0`` at :data:`SHIFT_FROM_PCT`
SoC to ``f0 + 2 Hz`` when full. It raises it further whenever the PV on the bus
is more than it and the load can take. The AC-coupled PV inverters answer with
their frequency-watt curve: full output up to ``f0 + 1 Hz``, derating linearly
to 0 W at ``f0 + 2 Hz`` (:func:`derate`). With the defaults the PV starts to be
held back at 95 % SoC, the charge ceiling the island plan keeps
(``[island] ac_charge_ceiling_pct``), and is gone when the battery is full.

This is the simulator's physics, written apart from the controller's inference
of it (:mod:`controller.island.freq_shift`), which tests compare it with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Nominal frequency, Hz.
F0_HZ = 50.0
#: AC-coupled PV derates linearly from f0 + this (Hz) ...
DERATE_FROM_HZ = 1.0
#: ... to nothing at f0 + this (Hz).
DERATE_TO_HZ = 2.0
#: The grid-former starts raising the frequency at this SoC (%), reaching
#: f0 + DERATE_TO_HZ when full.
SHIFT_FROM_PCT = 90.0


def derate(f_hz: float | FloatArray, f0_hz: float = F0_HZ) -> FloatArray:
    """Share of its available power an AC-coupled inverter gives at frequency ``f_hz``:
    1 up to f0 + 1 Hz, 0 from f0 + 2 Hz, linear between."""
    over = np.asarray(f_hz, dtype=float) - f0_hz
    return np.clip((DERATE_TO_HZ - over) / (DERATE_TO_HZ - DERATE_FROM_HZ), 0.0, 1.0)


def frequency_for(share: float, f0_hz: float = F0_HZ) -> float:
    """The lowest frequency at which the inverters give ``share`` (0-1) of their power."""
    share = min(max(share, 0.0), 1.0)
    if share >= 1.0:
        return f0_hz
    return f0_hz + DERATE_TO_HZ - share * (DERATE_TO_HZ - DERATE_FROM_HZ)


def soc_shift_hz(soc_pct: float, f0_hz: float = F0_HZ) -> float:
    """The frequency a grid-former sets for its battery's SoC: f0 up to
    :data:`SHIFT_FROM_PCT`, rising linearly to f0 + 2 Hz at 100 %."""
    rise = (soc_pct - SHIFT_FROM_PCT) / (100.0 - SHIFT_FROM_PCT)
    return f0_hz + DERATE_TO_HZ * min(max(rise, 0.0), 1.0)
