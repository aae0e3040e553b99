"""Shedding through real MQTT: plan → Poller.switch_loads → simulated plugs on a real mosquitto.

A Shelly plug and a Tasmota plug (with the revert rule) come back on by
themselves when their timed off runs out on the simulator's clock; a
Zigbee2MQTT plug has no timed off and comes back only when the planner's
mandate lapses and Commonwatt switches it on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from controller.config import parse_config
from controller.island.shedding import Event, ShedPlanner
from controller.polling import Poller
from simulators.clock import SimClock
from simulators.mqtt_devices import SimulatedMqttDevice

PLUGS = {  # device name → (format, topic, tier, W)
    "a/load1": ("shelly-plug", "plug-heater", "flexible", 1500.0),
    "a/load2": ("tasmota", "boiler", "essential", 800.0),
    "a/load3": ("zigbee2mqtt", "zigbee2mqtt/dryer", "flexible", 400.0),
}


def config_text(port: int) -> str:
    devices = "".join(
        f'[[members.devices]]\nkind = "load"\nprotocol = "mqtt"\nfamily = "{fmt}"\n'
        f'topic = "{topic}"\ntier = "{tier}"\nfresh_s = 60\n'
        for fmt, topic, tier, _ in PLUGS.values())
    return (f'[controller]\nstale_after_s = 60\n[mqtt]\nport = {port}\n'
            f'[[members]]\nid = "a"\nname = "A"\n'
            f'[[members.devices]]\nkind = "meter"\nprotocol = "mqtt"\nfamily = "shelly-pro3em"\n'
            f'topic = "em-a"\nfresh_s = 60\n{devices}')


@dataclass
class Rig:
    clock: SimClock
    sims: dict[str, SimulatedMqttDevice]
    poller: Poller
    planner: ShedPlanner

    def power(self, name: str) -> float | None:
        reading = self.poller.load_readings().get(name)
        return None if reading is None else reading.power_w

    async def settle(self, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Poll until ``check`` holds (the plugs publish on their own threads)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.poller.poll()
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not settled: {self.poller.load_readings()}")

    async def shed(self, shed_w: float, opted_out: frozenset[str] = frozenset(),
                   ) -> list[tuple[str, bool, Event]]:
        """One cycle: plan on the simulator's clock and send the actions."""
        plan = self.planner.plan(self.clock.now(), np.array([shed_w]),
                                 self.poller.load_readings(), opted_out)
        assert await self.poller.switch_loads(plan.actions, int(self.planner.mandate_s)) == {}
        return [(a.load_id, a.on, a.event) for a in plan.actions]


@asynccontextmanager
async def rig(port: int, tasmota_rule: bool = True) -> AsyncIterator[Rig]:
    clock = SimClock(start_s=0.0, speed=0)
    config = parse_config(config_text(port))
    meter = SimulatedMqttDevice("shelly-pro3em", "em-a", port)
    sims = {name: SimulatedMqttDevice(fmt, topic, port, clock=clock, tasmota_rule=tasmota_rule)
            for name, (fmt, topic, _, _) in PLUGS.items()}
    poller = Poller(config)
    await poller.start()
    r = Rig(clock, sims, poller, ShedPlanner.from_config(config, mandate_s=300))
    try:
        meter.publish(power_w=2700.0)
        for name, sim in sims.items():
            sim.publish(power_w=PLUGS[name][3], energy_wh=1000.0)
        await r.settle(lambda: all(r.power(n) == p[3] for n, p in PLUGS.items()))
        yield r
    finally:
        poller.close()
        meter.close()
        for sim in sims.values():
            sim.close()


def test_shed_plugs_go_off_and_come_back_when_the_mandate_lapses(mosquitto: int) -> None:
    async def run() -> None:
        async with rig(mosquitto) as r:
            heater, boiler, dryer = (r.sims[n] for n in PLUGS)
            actions = await r.shed(2500.0)
            # flexible first, largest first, then the essential boiler: 2,700 W >= 2,500 W
            assert actions == [("a/load1", False, Event.SHED), ("a/load3", False, Event.SHED),
                               ("a/load2", False, Event.SHED)]
            await r.settle(lambda: all(r.power(n) == 0.0 for n in PLUGS))
            assert heater.values["on"] is False and dryer.values["on"] is False
            assert heater.revert == (300.0, True) and boiler.revert == (300.0, True)
            assert dryer.revert is None  # Zigbee2MQTT: no timed off

            r.clock.advance(299)  # the controller is gone; the devices keep their timers
            assert not any(sim.tick() for sim in r.sims.values())
            r.clock.advance(2)
            assert [sim.tick() for sim in r.sims.values()] == [True, True, False]
            await r.settle(lambda: (r.power("a/load1"), r.power("a/load2")) == (1500.0, 800.0))
            assert r.power("a/load3") == 0.0  # the dryer waits for Commonwatt

            actions = await r.shed(0.0)  # the controller is back: every mandate has lapsed
            assert sorted(actions) == [(n, True, Event.LAPSE) for n in PLUGS]
            await r.settle(lambda: r.power("a/load3") == 400.0)
            assert dryer.values["on"] is True and heater.revert is None

    asyncio.run(run())


def test_a_renewed_mandate_restarts_the_device_timer_and_release_cancels_it(
        mosquitto: int) -> None:
    async def run() -> None:
        async with rig(mosquitto) as r:
            heater = r.sims["a/load1"]
            assert await r.shed(1000.0) == [("a/load1", False, Event.SHED)]
            await r.settle(lambda: r.power("a/load1") == 0.0)
            r.clock.advance(100)
            assert await r.shed(1000.0) == []  # 200 s of the mandate left: nothing to send
            r.clock.advance(100)
            assert await r.shed(1000.0) == [("a/load1", False, Event.RENEW)]
            await r.settle(lambda: heater.revert == (500.0, True))
            r.clock.advance(150)  # past the first timer, within the renewed one
            assert not heater.tick()
            release = r.planner.release_all(r.clock.now())
            assert [(a.load_id, a.on, a.event) for a in release] == [
                ("a/load1", True, Event.RELEASE)]
            assert await r.poller.switch_loads(release, 300) == {}
            await r.settle(lambda: r.power("a/load1") == 1500.0)
            assert heater.revert is None

    asyncio.run(run())


def test_a_tasmota_plug_without_the_revert_rule_stays_off(mosquitto: int) -> None:
    async def run() -> None:
        async with rig(mosquitto, tasmota_rule=False) as r:
            await r.shed(2500.0)
            await r.settle(lambda: r.power("a/load2") == 0.0)
            r.clock.advance(301)
            assert [sim.tick() for sim in r.sims.values()] == [True, False, False]
            await r.settle(lambda: r.power("a/load1") == 1500.0)
            assert r.power("a/load2") == 0.0
            actions = await r.shed(0.0)
            assert ("a/load2", True, Event.LAPSE) in actions
            await r.settle(lambda: r.power("a/load2") == 800.0)

    asyncio.run(run())


def test_an_opted_out_plug_stays_on_and_one_held_off_comes_back(mosquitto: int) -> None:
    """A member's opt-out (#18) on real plugs: the heater it names keeps its relay on while
    the others cover the shed, and once opted out while held off, it is switched back on."""
    async def run() -> None:
        async with rig(mosquitto) as r:
            heater, boiler, dryer = (r.sims[n] for n in PLUGS)
            actions = await r.shed(1100.0, frozenset({"a/load1"}))
            # not the heater (1,500 W, flexible, largest): the dryer, then the boiler
            assert actions == [("a/load3", False, Event.SHED), ("a/load2", False, Event.SHED)]
            await r.settle(lambda: (r.power("a/load2"), r.power("a/load3")) == (0.0, 0.0))
            assert heater.values["on"] is True and r.power("a/load1") == 1500.0
            # the next cycle without the opt-out, a larger shed: the heater goes too
            r.clock.advance(30)
            assert await r.shed(2600.0) == [("a/load1", False, Event.SHED)]
            await r.settle(lambda: r.power("a/load1") == 0.0)
            # its member opts it out: back on at the next cycle, physically
            r.clock.advance(30)
            back = await r.shed(2600.0, frozenset({"a/load1"}))
            assert back == [("a/load1", True, Event.RESTORE)]
            await r.settle(lambda: r.power("a/load1") == 1500.0)
            assert heater.values["on"] is True and boiler.values["on"] is False
            assert dryer.values["on"] is False

    asyncio.run(run())
