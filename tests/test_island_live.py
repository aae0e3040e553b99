"""The grid state in the running controller, over Modbus: an island command with its
preconditions, the grid-former's report, an islanded dispatch, the lapse and the return."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from controller.ledger import LedgerReader
from tests.auth_helpers import bearer
from tests.coop_harness import start_harness


class _Live:
    """The API's view of a harness controller (what Runtime provides)."""

    cycle_s = 1.0
    settlement_s = 300

    def __init__(self, harness) -> None:
        self.h = harness

    def grid_supervisor(self):
        return self.h.controller.grid

    def now(self) -> float:
        return self.h.clock.now()

    def devices(self):
        return self.h.controller.poller.health()

    def last_cycle_age_s(self):
        return 0.1

    def ledger_status(self):
        return self.h.controller.writer.status()

    def unwritten_wh(self, after_ts):
        return {}

    def open_interval_start(self):
        return None


def test_an_island_runs_from_command_to_lapse(tmp_path: Path) -> None:
    states: list[str] = []
    results = []

    async def go() -> None:
        h = await start_harness(tmp_path, start_hour=12.0, settlement_s=300)
        reader = LedgerReader(tmp_path / "ledger.sqlite")
        api = TestClient(create_app(reader, live=_Live(h)),
                         headers=bearer(reader, "coordinator", label="Ada (coordinator)"))
        try:
            await h.step()
            await h.step()
            assert api.get("/api/v1/island").json()["state"] == "ON_GRID"
            # without a plan and without a required SoC: refused, naming the field
            bare = {"requested_by": "Ada (coordinator)", "hours": 1}
            refused = api.post("/api/v1/island/command", json=bare)
            assert refused.status_code == 409 and "required_soc_pct: not given" in refused.text
            # the saved plan's requirement is the default
            (tmp_path / "plan.json").write_text(json.dumps({"required_start": {
                "flexible": {"holds": True, "coop_pct": 99.5},
                "essential": {"holds": True, "coop_pct": 40.0}}}))
            refused = api.post("/api/v1/island/command", json=bare)
            assert refused.status_code == 409 and "below the plan" in refused.text
            # refused: the plan needs more SoC than the coop has; the reason is named
            refused = api.post("/api/v1/island/command", json={
                "requested_by": "Ada (coordinator)", "hours": 1, "required_soc_pct": 99.5})
            assert refused.status_code == 409 and "below the plan" in refused.text
            ok = api.post("/api/v1/island/command", json={
                "requested_by": "Ada (coordinator)", "hours": 1, "required_soc_pct": 0})
            assert ok.status_code == 202, ok.text
            await h.step()
            states.append(h.controller.grid.machine.state.name)
            assert states[-1] == "GOING_OFF_GRID"  # waiting for the grid-former to confirm
            h.coop.grid_connected = False  # the PCC breaker opens; the grid-former islands
            for _ in range(120):  # 1 h of 30 s cycles: the command lapses
                report = await h.step()
                states.append(h.controller.grid.machine.state.name)
                if states[-1] == "OFF_GRID":
                    results.append(report.result)
                if states[-1] == "RETURNING":
                    h.coop.grid_connected = True  # the breaker closes again
            rows = api.get("/api/v1/island/transitions").json()
        finally:
            await h.close()
        causes = [r["cause"] for r in rows]
        assert any(r["refused"] and r["requested_by"] == "Ada (coordinator)" for r in rows)
        assert any("lapsed" in c for c in causes), causes

    asyncio.run(go())
    assert "OFF_GRID" in states and states[-1] == "ON_GRID", states
    assert results, "the dispatch ran islanded"
    for r in results:  # islanded: nothing from or to the utility
        assert r.from_grid.sum() == 0 and r.to_grid.sum() == 0 and r.grid_to_battery.sum() == 0
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    assert reader.totals()["islanded_s"] > 0


def test_without_a_grid_former_the_state_stays_undefined_and_never_islands(
        tmp_path: Path) -> None:
    async def go() -> list[str]:
        h = await start_harness(tmp_path, start_hour=12.0, settlement_s=300,
                                **{"  grid_forming = true\n": ""})
        try:
            out = []
            for _ in range(5):
                report = await h.step()
                out.append(h.controller.grid.machine.state.name)
                # UNDEFINED is never islanded: the dispatch keeps the utility in its books
                assert report.result is not None and not h.controller.islanded
            return out
        finally:
            await h.close()

    assert set(asyncio.run(go())) == {"UNDEFINED"}


def test_islanded_the_shed_switches_a_plug_off_and_back_on(tmp_path: Path, mosquitto: int) -> None:
    """A house with no battery and no sun at night, islanded with an empty grid-former: the
    dispatch sheds it, and its flexible plug (a simulated Shelly on a real mosquitto) is
    switched off, then back on."""
    from simulators.mqtt_devices import SimulatedMqttDevice

    plug_toml = ('\n[[members.devices]]\nkind = "load"\nprotocol = "mqtt"\n'
                 'family = "shelly-plug"\ntopic = "plug-h05"\ntier = "flexible"\nfresh_s = 600\n')
    seen: dict[str, list] = {"on": [], "shed": []}

    async def go() -> None:
        h = await start_harness(
            tmp_path, start_hour=22.0, settlement_s=300,
            **{"name = \"Emeka's house\"": "name = \"Emeka's house\"" + plug_toml,
               "[ledger]": f"[mqtt]\nport = {mosquitto}\n\n[ledger]"})
        plug = SimulatedMqttDevice("shelly-plug", "plug-h05", mosquitto, clock=h.clock)
        try:
            for _ in range(3):
                plug.publish(power_w=1500.0, energy_wh=100.0)
                await h.step()
                await asyncio.sleep(0.2)
            # The grid-former's battery at its floor: islanded it is every house's slack, and
            # here it has nothing to give, so the house without a battery must be shed.
            physics = h.coop.physics
            physics.stored_wh[physics.former] = physics.soc_min_wh[physics.former]
            assert h.controller.grid.request_island("Ada", h.clock.now(),
                                                    h.clock.now() + 1800, 0.0, h.clock.now())
            await h.step()
            h.coop.grid_connected = False
            for _ in range(70):
                plug.publish(power_w=1500.0 if plug.values.get("on", True) else 0.0,
                             energy_wh=100.0)  # a plug reports every few seconds
                report = await h.step()
                await asyncio.sleep(0.05)
                seen["on"].append(plug.values["on"])
                seen["shed"].append(float(report.result.shed[4]))
                if h.controller.grid.machine.state.name == "RETURNING":
                    h.coop.grid_connected = True
            await h.controller.release_loads()
            await asyncio.sleep(0.5)
            seen["after_stop"] = [plug.values["on"]]
        finally:
            plug.close()
            await h.close()

    asyncio.run(go())
    assert max(seen["shed"]) > 0, "islanded at night, the house without a battery is shed"
    assert False in seen["on"], "its flexible plug was switched off"
    assert seen["on"][-1] is True or seen["after_stop"] == [True], "and back on"
