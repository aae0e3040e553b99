"""The coop's shedding reaches a plug behind an edge agent, end to end on real brokers.

Coop controller (islanded, sheds a house at night) -> its mosquitto -> the agent's
``commands`` -> the agent -> the household's own mosquitto -> a simulated Shelly plug.
The plug comes back on when the coop's mandate lapses, and when the coop goes silent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from controller.agent.config import parse_agent_config
from controller.agent.runner import EdgeAgent
from simulators.coop import meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from simulators.mqtt_devices import SimulatedMqttDevice
from tests.conftest import free_port
from tests.coop_harness import start_harness
from tests.federation_brokers import CoopBroker

SPEC = HouseholdSpec("h05", "Emeka", pv_kwp=0.0, annual_kwh=3000)
#: In the coop's config: Emeka's plug is read from (and switched through) his agent.
COOP_PLUG = ('\n[[members.devices]]\nkind = "load"\nprotocol = "mqtt"\n'
             'family = "commonwatt-agent"\ntopic = "coop/coop-a/agents/h05/live/load1"\n'
             'tier = "flexible"\nfresh_s = 600\n')


def agent_toml(coop_port: int, home_port: int, modbus_port: int, spool: Path) -> str:
    return f"""
[agent]
member = "h05"
coop = "coop-a"
broker = "127.0.0.1:{coop_port}"
spool = "{spool}"
period_s = 0.1
coop_silent_s = 2.0

[mqtt]
port = {home_port}

[[devices]]
kind = "meter"
family = "sunspec"
host = "127.0.0.1"
port = {modbus_port}
unit = 1

[[devices]]
kind = "load"
protocol = "mqtt"
family = "shelly-plug"
topic = "plug-h05"
"""


async def _until(condition, timeout_s: float, tick=None) -> float:
    """Seconds until ``condition()`` holds (calling ``tick()`` meanwhile); fails on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        if tick is not None:
            tick()
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def test_the_coop_sheds_an_agent_fed_plug_which_returns_on_lapse_and_silence(
        tmp_path: Path, mosquitto: int) -> None:
    home = CoopBroker("home", free_port(), tmp_path / "home")
    home.configure([])
    home.start()
    seen: dict[str, object] = {}

    async def go() -> None:
        h = await start_harness(
            tmp_path, start_hour=22.0, settlement_s=300,
            **{"name = \"Emeka's house\"": "name = \"Emeka's house\"" + COOP_PLUG,
               "[ledger]": f"[mqtt]\nport = {mosquitto}\n\n[ledger]"})
        image = meter_image(SPEC)
        image.set(203, "W", 1600)
        meter = SimulatedModbusServer(free_port(), {1: image})
        await meter.start()
        plug = SimulatedMqttDevice("shelly-plug", "plug-h05", home.port)
        agent = EdgeAgent(parse_agent_config(agent_toml(mosquitto, home.port, meter.port,
                                                        tmp_path / "spool.db")))
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))

        def report() -> None:  # the plug reports every few seconds
            plug.publish(power_w=1500.0 if plug.values.get("on", True) else 0.0,
                         energy_wh=100.0)

        async def shed_until_off(steps: int) -> None:
            for _ in range(steps):
                report()
                await h.step()
                await asyncio.sleep(0.25)  # the agent's ticks carry the command
                if plug.values["on"] is False:
                    return
            raise AssertionError("the coop never switched the agent's plug off")

        try:
            await _until(agent.link.connected.is_set, 10)
            await _until(lambda: "h05/load1" in agent.poller.load_readings(), 10, tick=report)
            for _ in range(3):
                report()
                await h.step()
                await asyncio.sleep(0.3)
            assert "h05/load1" in h.controller.poller.load_readings(), \
                "the coop reads the agent's plug like any plug"
            physics = h.coop.physics
            physics.stored_wh[physics.former] = physics.soc_min_wh[physics.former]
            assert h.controller.grid.request_island("Ada", h.clock.now(),
                                                    h.clock.now() + 3600, 0.0, h.clock.now())
            await h.step()
            h.coop.grid_connected = False

            # 1. A short mandate (3 s of wall time): the coop stays alive (heartbeats) but
            #    does not renew it; the agent switches the plug back on when it lapses.
            h.controller.mandate_s = 3
            await shed_until_off(40)
            seen["off_mandate"] = True
            inbox = h.controller.agents
            assert inbox is not None
            seen["lapse_s"] = await _until(lambda: plug.values["on"] is True, 10,
                                           tick=inbox.heartbeat)
            seen["silent_at_lapse"] = agent.mandates.coop_silent(time.time(),
                                                                 agent.link.last_heard)

            # 2. A long mandate (300 s): the coop sheds again, then says nothing more. The
            #    agent hears no heartbeat for coop_silent_s (2 s) and switches the plug on.
            h.controller.mandate_s = 300
            await shed_until_off(40)
            seen["silence_s"] = await _until(lambda: plug.values["on"] is True, 10,
                                             tick=report)
            seen["safe"] = agent.safe
        finally:
            stop.set()
            await task
            plug.close()
            await meter.stop()
            await h.close()

    try:
        asyncio.run(go())
    finally:
        home.stop()
    print("agent plug:", seen)
    assert seen["off_mandate"]
    assert seen["lapse_s"] < 10 and seen["silent_at_lapse"] is False, \
        "back on when the mandate lapsed, with the coop still heard"
    assert seen["silence_s"] < 10, "back on when the coop went silent, long before 300 s"
    assert seen["safe"] is True
