"""What the books take from the devices each cycle: battery content and measured flows.

* A battery's SoC register steps in 0.1 % or coarser, and many BMSs stop
  charging just below 100 %: a battery that reports within one step of full
  is full. Without this the dispatch sees phantom room every cycle and asks a
  full battery to charge.
* The cycle's booked flows come from the measured battery power
  (:mod:`dispatch.measured`): a battery is booked as doing what it did, and
  the dispatch only says whose energy that was; islanded, battery energy no flow
  inside the coop explains is unallocated, never grid (:func:`ledger_flows`).
* Islanded, a household whose battery stopped answering is not dispatched (its
  load is unknown), but its meter still measures what it exports into the island:
  the neighbours' load and battery charge that no other flow explains came from it
  (:func:`book_silent_supply`). Without this the meters' measured load was booked
  as shed and the grid-former's measured charge as unallocated.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from controller.process_image import ProcessImage
from dispatch import LEDGER_FIELDS, FleetState, TickResult
from dispatch.sharing import capped_fraction
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


def for_booking(image: ProcessImage) -> ProcessImage:
    """``image`` as the books take it: a battery whose last read or write failed has a
    reading from before (the dispatch may still use it within its staleness), which says
    nothing of what it does now (a grid-former's slack moves every cycle). Its household
    is not booked (a gap), and islanded its meter's export is what the books know of it
    (:func:`book_silent_supply`)."""
    failing = image.battery_failing
    if failing is None or not failing.any():
        return image
    return dataclasses.replace(image, soc_pct=np.where(failing, np.nan, image.soc_pct),
                               battery_w=np.where(failing, np.nan, image.battery_w))


def booked_tick(engine: DispatchEngine, state: FleetState, image: ProcessImage,
                dt_s: float) -> TickResult:
    """The cycle as it happened: PV, load and battery power as measured at its end, split
    by origin with the coop's rules (``engine``'s fleet, policy and limits: the kept
    engine, :mod:`controller.fleet_dispatch`). Returns fresh arrays, sharing none of the
    engine's buffers."""
    battery_w = np.where(image.has_battery, image.battery_w, np.nan)
    booked = engine.tick(state, image.pv_production_w, image.load_w, image.valid, dt_s,
                         battery_w=battery_w)
    if engine.limits.islanded:
        silent = ~image.valid & np.isfinite(image.meter_w)
        meter_wh = np.where(silent, np.nan_to_num(image.meter_w), 0.0) * (dt_s / 3600.0)
        book_silent_supply(booked, np.maximum(-meter_wh, 0.0), np.maximum(meter_wh, 0.0))
    return booked


def book_silent_supply(booked: TickResult, export_wh: FloatArray,
                       import_wh: FloatArray | None = None) -> None:
    """Islanded: energy that silent households exported, booked to where it went (in place).

    ``booked`` is an islanded measured tick before any shed of the controller's own is
    added: its ``shed`` is measured load no flow inside the coop explains, its
    ``grid_to_battery`` measured charge no flow explains. ``export_wh`` is what each
    household that was not dispatched (its battery silent) exported across its own
    meter over the tick, 0 elsewhere.

    There is no grid, so that load was served and that charge stored with energy from
    the silent households: up to what they exported, the load is booked
    ``from_coop_battery`` and the charge ``battery_from_batteries``, paired with the
    silent households' ``battery_to_coop`` / ``battery_to_batteries`` pro rata to
    their export. The export is taken as battery energy (at night it can be nothing
    else; by day it may be PV, so this never credits more liberated energy than was):
    the coop-origin parts stay as they were, so none of it counts as liberated. What
    the export does not cover stays shed and unallocated, as before.

    The other way (``import_wh``: what the silent households imported): battery
    discharge no visible flow took (``battery_to_grid``, islanded) went to them, up to
    what they imported: ``battery_to_coop``, paired with their ``from_coop_battery``
    (served them; never liberated, their load being unknown).
    """
    if import_wh is not None and booked.battery_to_grid is not None:
        out, supply_in = float(booked.battery_to_grid.sum()), float(import_wh.sum())
        moved_out = min(out, supply_in)
        if moved_out > 0.0:
            got = booked.battery_to_grid * capped_fraction(out, moved_out)
            booked.battery_to_grid = booked.battery_to_grid - got
            booked.battery_to_coop = booked.battery_to_coop + got
            booked.from_coop_battery = (booked.from_coop_battery
                                        + import_wh * capped_fraction(supply_in, moved_out))
    need_load, need_charge = booked.shed, booked.grid_to_battery
    total_need = float(need_load.sum() + need_charge.sum())
    supply = float(export_wh.sum())
    moved = min(total_need, supply)
    if moved <= 0.0:
        return
    take = capped_fraction(total_need, moved)
    got_load, got_charge = need_load * take, need_charge * take
    sent = export_wh * capped_fraction(supply, moved)
    to_load = float(got_load.sum()) / moved
    booked.shed = need_load - got_load
    booked.from_coop_battery = booked.from_coop_battery + got_load
    booked.grid_to_battery = need_charge - got_charge
    booked.battery_from_batteries = _plus(booked.battery_from_batteries, got_charge)
    booked.battery_to_coop = booked.battery_to_coop + sent * to_load
    booked.battery_to_batteries = _plus(booked.battery_to_batteries, sent * (1.0 - to_load))


def _plus(field: FloatArray | None, more: FloatArray) -> FloatArray:
    return more.copy() if field is None else field + more


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
