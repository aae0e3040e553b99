"""Islanded, over Modbus and MQTT: the controller follows and re-plans the island plan, and
books the load an overloaded grid-former drops as unserved."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from controller.island.outage import anchor, demand_before_w, dropped_load_w, smooth_anchor
from controller.island.pilot import problem_json
from controller.island.plan import Problem
from controller.ledger import LedgerReader
from dispatch.fleet import Fleet
from tests.coop_harness import start_harness

PLUG_TOML = ('\n[[members.devices]]\nkind = "load"\nprotocol = "mqtt"\n'
             'family = "shelly-plug"\ntopic = "plug-h05"\ntier = "flexible"\nfresh_s = 600\n')


def write_plan(path: Path, member_ids: list[str], start_ts: float) -> None:
    """A plan that sheds h05's flexible 1.5 kW all evening and plans on no battery: what a
    coop would save for the night if its batteries had to carry a medical device."""
    steps, n = 8, len(member_ids)
    load = np.zeros((3, steps, n))
    load[2, :, member_ids.index("h05")] = 1500.0
    none = np.zeros(0)
    problem = Problem(np.zeros((steps, n)), load,
                      Fleet(capacity_wh=none, soc_min_wh=none, max_charge_w=none,
                            max_discharge_w=none, efficiency=none),
                      none, np.zeros(0, dtype=np.int64), 900.0, member_ids, start_ts)
    path.write_text(json.dumps({"inputs": problem_json(problem)}))


def test_islanded_the_plan_sheds_a_plug_the_batteries_could_carry(tmp_path: Path,
                                                                  mosquitto: int) -> None:
    from simulators.mqtt_devices import SimulatedMqttDevice

    seen: dict[str, list] = {"on": [], "shed_wh": [], "former_soc": []}

    async def go() -> dict:
        h = await start_harness(
            tmp_path, start_hour=20.0, settlement_s=300,
            **{"name = \"Emeka's house\"": "name = \"Emeka's house\"" + PLUG_TOML,
               "[ledger]": f"[mqtt]\nport = {mosquitto}\n\n[island]\nreplan_min = 1\n\n[ledger]"})
        write_plan(tmp_path / "plan.json", [m.id for m in h.config.members], h.clock.now())
        plug = SimulatedMqttDevice("shelly-plug", "plug-h05", mosquitto, clock=h.clock)
        physics = h.coop.physics
        physics.stored_wh[physics.former] = physics.capacity_wh[physics.former]  # full
        try:
            for _ in range(3):
                plug.publish(power_w=1500.0, energy_wh=100.0)
                await h.step()
                await asyncio.sleep(0.2)
            assert h.controller.grid.request_island("Ada", h.clock.now(), h.clock.now() + 1500,
                                                    0.0, h.clock.now())
            await h.step()
            h.coop.grid_connected = False
            for _ in range(60):
                plug.publish(power_w=1500.0 if plug.values.get("on", True) else 0.0,
                             energy_wh=100.0)
                report = await h.step()
                await h.controller.follower.wait()  # the worker thread's plan, deterministically
                await asyncio.sleep(0.05)
                seen["on"].append(plug.values["on"])
                seen["shed_wh"].append(float(report.result.shed[4]))
                seen["former_soc"].append(float(physics.soc_pct()[physics.former]))
                if h.controller.grid.machine.state.name == "RETURNING":
                    h.coop.grid_connected = True
            status = h.controller.follower.status(h.clock.now())
            await h.controller.release_loads()
            await asyncio.sleep(0.5)
            seen["after_stop"] = [plug.values["on"]]
            return status
        finally:
            plug.close()
            await h.close()

    status = asyncio.run(go())
    assert status["plans_made"] >= 5, status  # every minute of the 25-minute island
    assert False in seen["on"], "the plan's shed switched the flexible plug off"
    assert min(seen["former_soc"]) > 50, "although the grid-former could have carried it"
    assert max(seen["shed_wh"]) > 0, "and the plug held off is booked as shed"
    assert seen["after_stop"] == [True] or seen["on"][-1] is True, "back on after the island"
    totals = LedgerReader(tmp_path / "ledger.sqlite").totals_by_member()
    assert totals["h05"]["shed"] > 0


def test_load_an_overloaded_grid_former_drops_is_booked_as_unserved(tmp_path: Path) -> None:
    """Islanded at night, the grid-former derated to 300 W: the simulator drops load by
    tier (as the island's frequency would) and the grid-former raises 701 UNDER_FREQUENCY.
    The meters only see what was served; the ledger books the rest as unserved."""
    booked: list[float] = []

    async def go() -> np.ndarray:
        h = await start_harness(tmp_path, start_hour=22.0, settlement_s=300)
        physics = h.coop.physics
        try:
            for _ in range(3):
                await h.step()
            assert h.controller.grid.request_island("Ada", h.clock.now(), h.clock.now() + 1200,
                                                    0.0, h.clock.now())
            await h.step()
            h.coop.grid_connected = False
            await h.step()
            await h.step()
            before = physics.unserved_wh.copy()
            physics.max_w[physics.former] = 300.0  # a derated grid-former
            for _ in range(30):
                report = await h.step()
                if h.controller.islanded:
                    booked.append(float(report.result.shed.sum()))
                if h.controller.grid.machine.state.name == "RETURNING":
                    h.coop.grid_connected = True
            return physics.unserved_wh - before
        finally:
            await h.close()

    unserved = asyncio.run(go())
    assert unserved.sum() > 200, "the simulator dropped load"
    # Booked a cycle later than it happened (the alarm is read the next cycle): within 15 %.
    assert abs(sum(booked) - unserved.sum()) < 0.15 * unserved.sum(), (sum(booked), unserved)


@pytest.mark.parametrize(("before", "now", "tier", "expected"), [
    # nothing fell: nothing dropped
    ([500, 400], [500, 400], [0, 1], [0, 0]),
    # 300 W fell at the critical house, but the island drops essential first
    ([500, 400], [200, 400], [0, 1], [0, 300]),
    # more fell than the essential house drew: the rest is the critical house's
    ([500, 400], [0, 300], [0, 1], [200, 400]),
    # flexible before essential, pro rata to the demand before within a tier
    ([100, 300, 400], [100, 100, 300], [1, 2, 2], [0, 300 * 3 / 7, 300 * 4 / 7]),
    # a demand that rose does not offset another's drop
    ([500, 400], [900, 100], [1, 1], [300 * 5 / 9, 300 * 4 / 9]),
])
def test_dropped_load_is_attributed_by_tier(before: list, now: list, tier: list,
                                            expected: list) -> None:
    out = dropped_load_w(np.array(before, float), np.array(now, float),
                         np.ones(len(before), bool), np.array(tier))
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_a_long_overload_follows_the_forecast_from_an_averaged_anchor() -> None:
    nan = float("nan")
    # measured 300 W against a forecast of 200 W: 1.5; unknown forecast: NaN
    np.testing.assert_allclose(anchor(np.array([300.0, 50.0]), np.array([200.0, nan])),
                               [1.5, nan])
    assert np.isnan(anchor(np.array([300.0]), None)).all()
    # the anchor moves a cycle's share of an hour towards each new ratio
    got = smooth_anchor(np.array([1.0, nan, 2.0]), np.array([2.0, 3.0, nan]),
                        np.array([True, True, True]), 360.0)
    np.testing.assert_allclose(got, [1.1, 3.0, 2.0])
    # the demand before: the forecast now times the anchor, else what was measured
    before = demand_before_w(np.array([400.0, 400.0]), np.array([1.5, nan]),
                             np.array([600.0, 600.0]))
    np.testing.assert_allclose(before, [900.0, 400.0])
    np.testing.assert_allclose(demand_before_w(np.array([400.0]), np.array([1.5]), None),
                               [400.0])


def test_a_battery_that_stops_answering_leaves_its_house_booked(tmp_path: Path) -> None:
    """h03's battery stops answering: its house is a gap only until the battery's last
    setpoint has lapsed (then it idles, by its revert timer); after that the house is
    booked from its meter and PV, the battery is named missing, and the island's other
    batteries serve it (the grid-former is not drained in secret)."""
    from simulators.coop import BATTERY_UNIT
    from simulators.modbus_server import Fault

    async def go() -> list:
        h = await start_harness(tmp_path, start_hour=20.0, settlement_s=300, dt_s=10.0)
        try:
            for _ in range(3):
                await h.step()
            h.coop.households[2].server.faults[BATTERY_UNIT] = Fault.TIMEOUT
            reports = [await h.step() for _ in range(60)]
            return [(r.image.valid[2], bool(r.image.battery_assumed_idle[2]),
                     float(r.result.load[2]) if r.result is not None else 0.0)
                    for r in reports]
        finally:
            await h.close()

    rows = asyncio.run(go())
    # the setpoint lasts 3 cycles of 10 s (30 s) plus a stale window: afterwards, booked
    assert rows[-1][0] and rows[-1][1], rows[-5:]
    assert sum(1 for valid, _, _ in rows if not valid) <= 8, rows
    assert rows[-1][2] > 0, "the house's load is booked"
    intervals = LedgerReader(tmp_path / "ledger.sqlite").intervals()
    assert any("h03/battery" in (r.get("missing") or "") for r in intervals), intervals[-1]
