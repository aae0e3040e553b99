"""PV held back by an island's frequency shift, inferred from the frequency and the PV.

Islanded, a grid-forming inverter whose battery nears full (or that can take no
more) raises the frequency; AC-coupled PV inverters follow their frequency-watt
curve (the common setting, and the simulator's: full output up to f0 + 1 Hz,
nothing from f0 + 2 Hz, linear between). An inverter reporting ``P`` W at ``f``
Hz was therefore offered ``P / k(f)`` by its panels, and held back
``P (1 / k(f) − 1)``: no forecast needed. Where ``k`` is too small the ratio
says nothing (0 W at f0 + 2 Hz could hide any sun): :func:`held_back_w` gives
NaN there, and the forecast-based estimate (:mod:`.curtail_estimate`) answers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Nominal frequency, Hz (``f0``).
NOMINAL_HZ = 50.0
#: The frequency-watt curve: derating from f0 + this ...
DERATE_FROM_HZ = 1.0
#: ... to nothing at f0 + this (Hz).
DERATE_TO_HZ = 2.0
#: Below this share of its power an inverter's output says too little about the sun.
MIN_SHARE = 0.1


def output_share(frequency_hz: FloatArray, nominal_hz: float = NOMINAL_HZ) -> FloatArray:
    """The share of available power the curve allows at each frequency (NaN stays NaN)."""
    over = np.asarray(frequency_hz, dtype=float) - nominal_hz
    return np.clip((DERATE_TO_HZ - over) / (DERATE_TO_HZ - DERATE_FROM_HZ), 0.0, 1.0)


def held_back_w(pv_w: FloatArray, frequency_hz: FloatArray,
                nominal_hz: float = NOMINAL_HZ) -> FloatArray:
    """Per inverter, W held back by the frequency: 0 at or below f0 + 1 Hz, ``P (1/k − 1)``
    in the band, NaN where unknown (no frequency or PV, or a share below :data:`MIN_SHARE`)."""
    pv = np.asarray(pv_w, dtype=float)
    share = output_share(frequency_hz, nominal_hz)
    known = np.isfinite(share) & np.isfinite(pv)
    usable = known & (share >= MIN_SHARE)
    held = np.divide(np.maximum(pv, 0.0), share, out=np.zeros_like(pv),
                     where=usable) - np.where(usable, np.maximum(pv, 0.0), 0.0)
    held = np.where(share >= 1.0, 0.0, held)
    return np.where(known & ((share >= 1.0) | usable), held, np.nan)


def derating(frequency_hz: FloatArray, nominal_hz: float = NOMINAL_HZ) -> NDArray[np.bool_]:
    """Which inverters the frequency holds back now (above f0 + 1 Hz)."""
    share = output_share(frequency_hz, nominal_hz)
    return np.isfinite(share) & (share < 1.0)
