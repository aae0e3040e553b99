"""Frequency-shift curtailment (#21.3c/d): the simulator's physics, table by table, and the
controller's inference of it over real Modbus against the simulator's own figure."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from controller.island.freq_shift import held_back_w, output_share
from simulators.clock import SimClock
from simulators.frequency import derate, frequency_for, soc_shift_hz
from simulators.household import HouseholdPhysics, HouseholdSpec


@pytest.mark.parametrize(("hz", "share"), [
    (49.0, 1.0), (50.0, 1.0), (50.99, 1.0), (51.0, 1.0), (51.25, 0.75), (51.5, 0.5),
    (51.9, 0.1), (52.0, 0.0), (53.0, 0.0),
])
def test_ac_coupled_pv_derates_linearly_from_f0_plus_1_to_0_at_f0_plus_2(
        hz: float, share: float) -> None:
    assert float(derate(hz)) == pytest.approx(share)
    assert float(output_share(np.array([hz]))[0]) == pytest.approx(share)  # same curve
    assert float(derate(hz + 10.0, f0_hz=60.0)) == pytest.approx(share)  # a 60 Hz island


@pytest.mark.parametrize(("soc", "hz"), [
    (50.0, 50.0), (90.0, 50.0), (92.5, 50.5), (95.0, 51.0), (97.5, 51.5), (100.0, 52.0),
])
def test_the_grid_former_raises_the_frequency_as_its_battery_nears_full(
        soc: float, hz: float) -> None:
    assert soc_shift_hz(soc) == pytest.approx(hz)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.37, 0.5, 0.99, 1.0])
def test_frequency_for_is_the_curves_inverse(share: float) -> None:
    assert float(derate(frequency_for(share))) == pytest.approx(share)


@pytest.mark.parametrize(("pv", "hz", "held"), [
    (1000.0, 50.0, 0.0),         # nominal: nothing held back
    (1000.0, 51.0, 0.0),         # the band's edge
    (1000.0, 51.5, 1000.0),      # half: as much again was held back
    (250.0, 51.75, 750.0),       # a quarter of 1000 W
    (100.0, 51.95, np.nan),      # 5 %: too little to say (the forecast answers)
    (np.nan, 51.5, np.nan), (1000.0, np.nan, np.nan),  # unknown
])
def test_held_back_is_inferred_from_the_frequency_and_the_output(
        pv: float, hz: float, held: float) -> None:
    got = held_back_w(np.array([pv]), np.array([hz]))[0]
    assert got == pytest.approx(held, nan_ok=True)


def _island(soc_pct: float) -> HouseholdPhysics:
    """A sunny noon: 3 kWp and a grid-forming 10 kWh, 5 kW battery, islanded; a neighbour
    with 2 kWp and no battery (the surplus is less than the battery can take)."""
    specs = [HouseholdSpec("g", "G", 3.0, 3000.0, battery_wh=10_000.0, battery_max_w=5000.0,
                           soc_start_pct=soc_pct, grid_forming=True),
             HouseholdSpec("n", "N", 2.0, 3000.0)]
    physics = HouseholdPhysics(specs)
    physics.grid_connected = False
    return physics


@pytest.mark.parametrize(("soc", "hz"), [(80.0, 50.0), (96.0, 51.2), (99.0, 51.8)])
def test_islanded_the_simulator_holds_pv_back_by_the_frequency_of_its_soc(
        soc: float, hz: float) -> None:
    physics = _island(soc)
    physics.advance_to(12 * 3600.0)
    available = physics.pv_w(12 * 3600.0)
    assert physics.frequency_hz == pytest.approx(hz)
    assert physics.island_curtailed_w == pytest.approx(available * (1 - derate(hz)))
    assert physics.pv_out_w(12 * 3600.0) == pytest.approx(available * derate(hz))


def test_a_surplus_the_grid_former_cannot_take_raises_the_frequency_further() -> None:
    physics = _island(80.0)
    physics.max_w[0] = 500.0  # it can take only 500 W
    physics.advance_to(12 * 3600.0)
    t = 12 * 3600.0
    pv, out, load = physics.pv_w(t), physics.pv_out_w(t), physics.load_w(t)
    assert out.sum() == pytest.approx(load.sum() + 500.0)  # served + what it charges
    share = out.sum() / pv.sum()
    assert physics.frequency_hz == pytest.approx(frequency_for(share))
    assert 51.0 < physics.frequency_hz < 52.0


def test_the_inference_over_modbus_matches_the_simulators_held_back_energy() -> None:
    """Half an hour of a filling grid-former (95 % up towards 99 %), read every 10 s over
    Modbus TCP as the controller reads it (SunSpec 103 W and Hz), inferred, against the
    simulator's ``island_curtailed_wh``."""
    from devices.modbus.transport import LinkPool
    from devices.sunspec.adapters import SunSpecInverter
    from devices.sunspec.client import SunSpecClient
    from simulators.coop import INVERTER_UNIT, SimulatedCoop

    specs = [HouseholdSpec("g", "G", 4.5, 3000.0, battery_wh=20_000.0, battery_max_w=5000.0,
                           soc_start_pct=95.0, grid_forming=True),
             HouseholdSpec("n", "N", 1.5, 3000.0), HouseholdSpec("m", "M", 0.0, 3000.0)]
    step_s, steps = 10.0, 180

    async def run() -> tuple[float, float, float]:
        clock = SimClock(start_s=11.5 * 3600.0, speed=0.0)
        coop = SimulatedCoop(specs, clock)
        await coop.start()
        pool = LinkPool()
        try:
            coop.grid_connected = False
            inverters = [SunSpecInverter(SunSpecClient(pool.get(h.server.host, h.server.port),
                                                       INVERTER_UNIT))
                         for h in coop.households]
            before = coop.physics.island_curtailed_wh.sum()
            inferred = 0.0
            for _ in range(steps):
                clock.advance(step_s)
                coop.step()
                readings = [await inv.read_pv() for inv in inverters]
                pv = np.array([r.power_w for r in readings], dtype=float)
                hz = np.array([r.frequency_hz for r in readings], dtype=float)
                inferred += float(np.nansum(held_back_w(pv, hz))) * step_s / 3600.0
            held = float(coop.physics.island_curtailed_wh.sum() - before)
            return inferred, held, float(coop.physics.soc_pct()[0])
        finally:
            pool.close()
            await coop.stop()

    inferred, held, soc = asyncio.run(run())
    assert 97.0 < soc < 99.5 and held > 900.0, (soc, held)  # the shift held back ~1 kWh
    # The issue asks for 5 %. Measured over four windows read every 10 s (start SoC
    # 94.5-96 %, 10:30-13:00), with the simulator serving each step's end state (since it
    # holds still during a controller's reads): 1.0054-1.0108 of the simulator's figure
    # (read every 30 s: 1.024). A rising hold-back sampled at each step's end counts the
    # step at its end's value, so the bias is one-sided; 1.5 %.
    assert inferred == pytest.approx(held, rel=0.015), (inferred, held)
