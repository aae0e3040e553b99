"""What the books take from the devices each cycle: battery content and measured flows.

* A battery's SoC register steps in 0.1 % or coarser, and many BMSs stop
  charging just below 100 %: a battery that reports within one step of full
  is full. Without this the dispatch sees phantom room every cycle and asks a
  full battery to charge.
* The cycle's booked flows come from the measured battery power
  (:mod:`dispatch.measured`): a battery is booked as doing what it did, and
  the dispatch only says whose energy that was; islanded, battery energy no flow
  inside the coop explains is unallocated, never grid (:func:`ledger_flows`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from controller.process_image import ProcessImage
from dispatch import LEDGER_FIELDS, FleetState, TickResult
from dispatch.tick import DispatchEngine

FloatArray = NDArray[np.float64]
#: SunSpec 802 ``SoC`` with ``SoC_SF = -1``: the coarsest step the shipped templates read.
SOC_RESOLUTION_PCT = 0.1


def stored_from_soc(soc_pct: FloatArray, capacity_wh: FloatArray,
                    full_pct: float = 100.0) -> FloatArray:
    """Battery content from the reported SoC (unknown: 0); within one reporting step of
    ``full_pct`` it is full, so nothing plans or books room that is not there."""
    soc = np.nan_to_num(soc_pct, nan=0.0)
    soc = np.where(soc >= full_pct - SOC_RESOLUTION_PCT * (1 + 1e-9), 100.0, soc)
    return soc / 100.0 * capacity_wh


def booked_tick(engine: DispatchEngine, state: FleetState, image: ProcessImage,
                dt_s: float) -> TickResult:
    """The cycle as it happened: PV, load and battery power as measured at its end, split
    by origin with the coop's rules (``engine``'s fleet, policy and limits: the kept
    engine, :mod:`controller.fleet_dispatch`). Returns fresh arrays, sharing none of the
    engine's buffers."""
    battery_w = np.where(image.has_battery, image.battery_w, np.nan)
    return engine.tick(state, image.pv_production_w, image.load_w, image.valid, dt_s,
                       battery_w=battery_w)


def ledger_flows(booked: TickResult, islanded: bool,
                 ) -> tuple[dict[str, FloatArray], FloatArray | None]:
    """The ledger's flows of a booked tick, and Wh to book as ``unallocated_import`` /
    ``unallocated_export`` (rows), if any.

    Islanded there is no grid: battery charge or discharge that no flow inside the coop
    explains (readings taken a moment apart, the cycle the breaker opened in) cannot be
    split consistently, so it is unallocated (never liberated), not grid energy.
    """
    flows = {f: np.maximum(getattr(booked, f), 0.0) for f in LEDGER_FIELDS}
    if not islanded:
        return flows, None
    unallocated = np.stack([flows["grid_to_battery"], flows["battery_to_grid"]])
    flows["grid_to_battery"] = np.zeros_like(flows["grid_to_battery"])
    flows["battery_to_grid"] = np.zeros_like(flows["battery_to_grid"])
    return flows, unallocated
