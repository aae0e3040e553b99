"""Safety limits that always win over the dispatch, a policy or an API call.

Applied to every setpoint right before it is written: the SoC floor stops
discharge, a full battery stops charge, and power never exceeds the lower of
the device rating and the configured limit. Unknown values give 0 W (hold).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
FULL_PCT = 99.9


def clamp_setpoints(
    requested_w: FloatArray,
    soc_pct: FloatArray,
    floor_pct: FloatArray,
    max_charge_w: FloatArray,
    max_discharge_w: FloatArray,
) -> FloatArray:
    """Setpoints (discharge > 0) made safe; NaN anywhere gives 0 W."""
    power = np.nan_to_num(requested_w, nan=0.0)
    charge_limit = np.nan_to_num(max_charge_w, nan=0.0)
    discharge_limit = np.nan_to_num(max_discharge_w, nan=0.0)
    soc = np.nan_to_num(soc_pct, nan=-1.0)
    unknown = soc < 0
    discharge_limit = np.where((soc <= floor_pct) | unknown, 0.0, discharge_limit)
    charge_limit = np.where((soc >= FULL_PCT) | unknown, 0.0, charge_limit)
    return np.clip(power, -charge_limit, discharge_limit)
