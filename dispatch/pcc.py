"""Limits at the point of common coupling: the coop's import and export caps, or islanding."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch.fleet import CoopLimits, Fleet
from dispatch.sharing import allocate, capped_fraction

FloatArray = NDArray[np.float64]


def pcc_limits(deficit: FloatArray, surplus: FloatArray, h: float, limits: CoopLimits,
               policy: str, fleet: Fleet) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray,
                                                   float, float, float]:
    """Split what is left after the coop into grid flows, shed load and curtailed PV.

    Import over the cap (all of it when islanded) is shed tier by tier, critical
    last; export over the cap is curtailed pro rata. Returns ``from_grid, shed,
    to_grid, curtailed`` per household, then the Wh over each cap (0 when
    islanded, where nothing is "over a cap") and the import still allowed.
    """
    island = limits.islanded
    import_cap = 0.0 if island else limits.import_cap_w * h
    wanted_import = float(deficit.sum())
    from_grid = deficit.copy()
    if wanted_import > import_cap:
        from_grid = allocate(import_cap, deficit, policy, fleet.key, fleet.tier, True)
    shed = deficit - from_grid
    export_cap = 0.0 if island else limits.export_cap_w * h
    wanted_export = float(surplus.sum())
    to_grid = surplus.copy()
    if wanted_export > export_cap:
        to_grid = surplus * capped_fraction(wanted_export, export_cap)
    curtailed = surplus - to_grid
    import_capped = 0.0 if island else max(wanted_import - import_cap, 0.0)
    export_capped = 0.0 if island else max(wanted_export - export_cap, 0.0)
    import_left = import_cap - float(from_grid.sum())
    return from_grid, shed, to_grid, curtailed, import_capped, export_capped, import_left
