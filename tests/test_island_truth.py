"""Issue 17, the rehearsal's ground truth: pure tables for what the books take from the
meters when a household is silent or the controller missed cycles.

The whole rehearsal (tests/test_island_rehearse.py) compares the books with the
simulator; these pin the rules it relies on, one case per row.
"""

from __future__ import annotations

import numpy as np
import pytest

from controller.island.outage import connected_w, demand_before_w, dropped_load_w, held_demand_w
from controller.ledger.accumulator import CarryState
from controller.ledger.book import CycleEnergy, IntervalBook
from controller.ledger.gap import averaged_image
from controller.ledger.measured import book_silent_supply
from controller.ledger.settle import METER_OUT
from controller.process_image import ProcessImage
from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick
from dispatch.rounding import LEDGER_FIELDS, PAIRED

HOUR = 3600.0


def _island_tick(export_w: float, former_w: float = -500.0, load_w: float = 400.0):
    """Former h0 (measured charging), neighbour h1 (a load, nothing else), h2 silent (its
    battery does not answer: not dispatched) exporting ``export_w`` across its meter."""
    fleet = Fleet(np.array([10_000.0, 0.0, 10_000.0]), np.zeros(3), np.full(3, 5000.0),
                  np.full(3, 5000.0), np.ones(3))
    state = FleetState.start(np.array([5000.0, 0.0, 0.0]))
    valid = np.array([True, True, False])
    booked = dispatch_tick(fleet, state, np.zeros(3), np.array([0.0, load_w, 0.0]), valid,
                           HOUR, limits=CoopLimits(islanded=True),
                           battery_w=np.array([former_w, np.nan, np.nan]))
    book_silent_supply(booked, np.array([0.0, 0.0, export_w]))
    return booked


@pytest.mark.parametrize(("export_w", "served", "charged", "shed", "unexplained"), [
    # The silent house exported what the others drew and stored: all of it is booked.
    (900.0, 400.0, 500.0, 0.0, 0.0),
    # It exported more than that (the meters a moment apart): only what was needed.
    (2000.0, 400.0, 500.0, 0.0, 0.0),
    # Less: pro rata to the load and the charge; the rest stays shed / unallocated.
    (450.0, 200.0, 250.0, 200.0, 250.0),
    # Nothing exported: as before, measured load nobody explains is shed.
    (0.0, 0.0, 0.0, 400.0, 500.0),
])
def test_what_a_silent_household_exported_islanded_is_booked_where_it_went(
        export_w: float, served: float, charged: float, shed: float,
        unexplained: float) -> None:
    b = _island_tick(export_w)
    assert b.from_coop_battery[1] == pytest.approx(served)
    assert b.battery_from_batteries[0] == pytest.approx(charged)
    assert b.shed[1] == pytest.approx(shed)
    assert b.grid_to_battery[0] == pytest.approx(unexplained)
    # never liberated: the silent battery's content is of unknown origin
    assert b.from_coop_battery_coop.sum() == 0.0 and b.liberated.sum() == 0.0
    for receiving, sending in PAIRED.items():
        assert getattr(b, receiving).sum() == pytest.approx(getattr(b, sending).sum())
    # the silent house sent what it exported, at most
    assert b.drawn_out[2] == pytest.approx(served + charged)
    assert b.drawn_out[2] <= export_w + 1e-9
    assert b.load[1] == pytest.approx(400.0)  # load = served + shed still holds


def test_battery_discharge_a_silent_household_imported_islanded_is_booked_to_it() -> None:
    """The former discharges 1 kW measured, the neighbour draws 400 W: 600 W went to the
    silent house (its meter imported 700 W); booked to it, never liberated."""
    b = _island_tick(0.0, former_w=1000.0)
    assert b.battery_to_grid[0] == pytest.approx(600.0)  # nobody visible took it
    book_silent_supply(b, np.zeros(3), np.array([0.0, 0.0, 700.0]))
    assert b.battery_to_grid[0] == pytest.approx(0.0)
    assert b.battery_to_coop[0] == pytest.approx(1000.0)  # 400 W to h1, 600 W to h2
    assert b.from_coop_battery.tolist() == pytest.approx([0.0, 400.0, 600.0])
    assert b.from_coop_battery_coop[2] == 0.0
    assert b.drawn_out[0] == pytest.approx(1000.0)  # the battery did what it measured


def test_a_silent_households_counters_are_not_booked_twice() -> None:
    """Its meter's export is booked as battery flows: only what its counter counted
    beyond them is unallocated (it is still a gap: its load is unknown)."""
    b = _island_tick(900.0)
    flows = {f: getattr(b, f) for f in LEDGER_FIELDS if f != "losses"} | {"losses": b.losses}
    book = IntervalBook(("h0", "h1", "h2"), 900, None, CarryState.fresh(3))
    valid, t0 = np.array([True, True, False]), 1000 * HOUR
    counters = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1000.0], [np.nan] * 3])
    zero = {f: np.zeros(3) for f in LEDGER_FIELDS}
    closed = book.add_cycle(CycleEnergy(t0 - 900, t0, zero, valid, counters, islanded=True))
    # an hour later its export counter has grown by 950 Wh, of which 900 Wh were booked
    counters[1, 2] += 950.0
    closed += book.add_cycle(CycleEnergy(t0, t0 + HOUR, flows, valid, counters,
                                         islanded=True))
    rows = [c for c, _ in closed if c.start_ts >= t0]
    assert len(rows) == 4
    out = sum(int(c.column(f)[2]) for c in rows for f in METER_OUT)
    assert sum(int(c.column("unallocated_export")[2]) for c in rows) == pytest.approx(50, abs=1)
    assert out == pytest.approx(950, abs=1)  # the meter-out booked = what the counter counted
    assert sum(int(c.column("gap_s")[2]) for c in rows) == HOUR


def _image(t: float, soc: list[float], counters: list[list[float]]) -> ProcessImage:
    n = len(soc)
    nan = np.full(n, np.nan)
    c = np.array(counters, dtype=float)
    return ProcessImage(t, tuple(f"h{i}" for i in range(n)), np.ones(n, dtype=bool),
                        np.array([s == s for s in soc]), np.zeros(n), np.zeros(n),
                        np.zeros(n), np.array(soc, dtype=float), np.full(n, 10_000.0), nan,
                        nan, c[0], c[1], c[2])


@pytest.mark.parametrize(("soc_then", "soc_now", "counters_now", "meter_w", "battery_w", "pv_w"), [
    # charged 1 kWh stored (1000 / 0.95 AC) from 500 Wh of PV and 600 Wh imported net
    (50.0, 60.0, [1600.0, 1000.0, 1500.0], 600.0, -1000.0 / 0.95, 500.0),
    # discharged 1 kWh stored (950 AC), 200 Wh exported net, no sun
    (60.0, 50.0, [1000.0, 1200.0, 1000.0], -200.0, 950.0, 0.0),
    # no battery: the counters alone
    (np.nan, np.nan, [1300.0, 1000.0, 1100.0], 300.0, np.nan, 100.0),
])
def test_a_stall_is_booked_from_the_counters_and_the_soc(
        soc_then: float, soc_now: float, counters_now: list[float], meter_w: float,
        battery_w: float, pv_w: float) -> None:
    """One hour missed: the average powers the devices' counters and SoC say."""
    eta = np.array([0.95])
    image = _image(2 * HOUR, [soc_now], [[c] for c in counters_now])
    then = np.array([[1000.0], [1000.0], [1000.0]])
    stored = np.array([soc_then * 100.0]), np.array([soc_now * 100.0])
    got = averaged_image(image, HOUR, then, np.full((3, 1), HOUR), *stored, eta)
    assert got.valid[0]
    assert got.meter_w[0] == pytest.approx(meter_w)
    assert got.pv_w[0] == pytest.approx(pv_w)
    if np.isfinite(battery_w):
        assert got.battery_w[0] == pytest.approx(battery_w)
        # what the SoC rebuild takes back: charged × η - discharged / η = the change
        charged, discharged = max(-battery_w, 0.0), max(battery_w, 0.0)
        assert charged * 0.95 - discharged / 0.95 == pytest.approx((soc_now - soc_then) * 100)


@pytest.mark.parametrize("what", ["counter read earlier", "counter reset", "soc unknown then"])
def test_a_stall_without_both_ends_stays_a_gap(what: str) -> None:
    image = _image(2 * HOUR, [60.0], [[1600.0], [1000.0], [1500.0]])
    then, ts = np.full((3, 1), 1000.0), np.full((3, 1), HOUR)
    stored_then = np.array([5000.0])
    if what == "counter read earlier":
        ts[0, 0] = HOUR - 60
    elif what == "counter reset":
        then[1, 0] = 5000.0
    else:
        stored_then[0] = np.nan
    got = averaged_image(image, HOUR, then, ts, stored_then, np.array([6000.0]), np.ones(1))
    assert not got.valid[0] and np.isnan(got.meter_w[0])
    with pytest.raises(ValueError, match="since"):
        averaged_image(image, 3 * HOUR, then, ts, stored_then, np.array([6000.0]), np.ones(1))


NAN = np.nan


@pytest.mark.parametrize(("plugs_w", "tiers", "contactor", "freed_w", "forecast", "held_w"), [
    # a 2 kW appliance held off while its tier is forecast at 1.5 kW: 1.5 kW
    (2000.0, "f", False, 2000.0, (300.0, 0.0, 1500.0), 1500.0),
    # ... and after it would have finished (its tier forecast at 0): nothing
    (2000.0, "f", False, 2000.0, (300.0, 0.0, 0.0), 0.0),
    # never more than it drew when switched off (a second plug in the tier still runs)
    (2000.0, "f", False, 2000.0, (300.0, 0.0, 3500.0), 2000.0),
    # a held contactor: the whole house's forecast, its plugs included
    (2000.0, "f", True, 2600.0, (300.0, 400.0, 1500.0), 2200.0),
    (0.0, "", True, 600.0, (300.0, 400.0, 0.0), 700.0),
    # no forecast, or the member unknown to it: what it drew when switched off
    (2000.0, "f", False, 2000.0, None, 2000.0),
    (2000.0, "f", True, 2600.0, (NAN, NAN, NAN), 2600.0),
    (2000.0, "f", False, 2000.0, (NAN, NAN, NAN), 2000.0),
    # nothing held
    (0.0, "", False, 0.0, (300.0, 400.0, 1500.0), 0.0),
])
def test_load_held_off_is_booked_at_what_it_would_have_drawn(
        plugs_w: float, tiers: str, contactor: bool, freed_w: float,
        forecast: tuple[float, float, float] | None, held_w: float) -> None:
    plug_tiers = np.array([["c" in tiers], ["e" in tiers], ["f" in tiers]])
    got = held_demand_w(np.array([plugs_w]), plug_tiers, np.array([contactor]),
                        np.array([freed_w]),
                        None if forecast is None else np.array(forecast)[:, None])
    assert got[0] == pytest.approx(held_w)


CRITICAL, ESSENTIAL = 0, 1


@pytest.mark.parametrize(("demand", "held", "forecast", "held_forecast", "on", "on_forecast"), [
    # nothing held: the demand and the forecast as they are
    ((600.0, 500.0), (0.0, 0.0), (700.0, 450.0), (0.0, 0.0), (600.0, 500.0), (700.0, 450.0)),
    # a 2 kW plug held: neither what it drew nor its forecast is on the island
    ((600.0, 2500.0), (0.0, 2000.0), (700.0, 2300.0), (0.0, 1800.0), (600.0, 500.0),
     (700.0, 500.0)),
    # a held plug's forecast above the house's forecast: nothing connected, never negative
    ((600.0, 2000.0), (0.0, 2000.0), (700.0, 300.0), (0.0, 2000.0), (600.0, 0.0),
     (700.0, 0.0)),
    # a held-forecast figure where nothing is held counts for nothing; no forecast: None
    ((600.0, 500.0), (0.0, 0.0), None, (900.0, 900.0), (600.0, 500.0), None),
    ((600.0, 500.0), (0.0, 0.0), (700.0, NAN), (900.0, 0.0), (600.0, 500.0), (700.0, NAN)),
])
def test_the_connected_demand_leaves_out_what_is_held_off(
        demand: tuple, held: tuple, forecast: tuple | None, held_forecast: tuple,
        on: tuple, on_forecast: tuple | None) -> None:
    got, got_forecast = connected_w(np.array(demand), np.array(held),
                                    None if forecast is None else np.array(forecast),
                                    np.array(held_forecast))
    assert got == pytest.approx(np.array(on))
    if on_forecast is None:
        assert got_forecast is None
    else:
        assert got_forecast == pytest.approx(np.array(on_forecast), nan_ok=True)


@pytest.mark.parametrize(("before", "now", "dropped"), [
    # a blackout (every meter at 0 W) drops every connected load, the critical one too:
    # the 2 kW plug Commonwatt holds off in the essential house is not on the island (counted
    # in, it read as 2 kW of demand that did not fall, and the critical house, dropped last,
    # was booked 0.23 of what it lost in the rehearsal)
    ((600.0, 500.0), (0.0, 0.0), (600.0, 500.0)),
    # a partial drop: the essential house first, then the critical one
    ((600.0, 500.0), (600.0, 100.0), (0.0, 400.0)),
    ((600.0, 500.0), (300.0, 0.0), (300.0, 500.0)),
])
def test_a_blackout_drops_the_connected_demand_by_tier(
        before: tuple, now: tuple, dropped: tuple) -> None:
    tier = np.array([CRITICAL, ESSENTIAL])
    valid = np.ones(2, dtype=bool)
    held = np.array([0.0, 2000.0])
    on, _ = connected_w(np.array(now) + held, held, None, held)
    got = dropped_load_w(demand_before_w(np.array(before), np.full(2, NAN), None), on,
                         valid, tier)
    assert got == pytest.approx(np.array(dropped))
