"""The edge agent against a real mosquitto that goes away, and a real Modbus household."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.agent.config import AgentConfigError, parse_agent_config
from controller.agent.inbox import ReadingInbox
from controller.agent.runner import EdgeAgent
from simulators.coop import battery_image, meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from tests.conftest import free_port
from tests.federation_brokers import CoopBroker

SPEC = HouseholdSpec("m1", "Ada", pv_kwp=0.0, annual_kwh=3000, battery_wh=10_000,
                     battery_max_w=5000)


def agent_toml(broker_port: int, modbus_port: int, spool: Path) -> str:
    return f"""
[agent]
member = "m1"
coop = "coop-a"
broker = "127.0.0.1:{broker_port}"
spool = "{spool}"
period_s = 0.1
coop_silent_s = 1.0
resend_after_s = 1.0

[controller]
setpoint_expiry_s = 5

[[devices]]
kind = "meter"
family = "sunspec"
host = "127.0.0.1"
port = {modbus_port}
unit = 1

[[devices]]
kind = "battery"
family = "sunspec"
host = "127.0.0.1"
port = {modbus_port}
unit = 2
"""


async def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_agent_outage_every_reading_booked_exactly_once(tmp_path: Path) -> None:
    broker = CoopBroker("coop-a", free_port(), tmp_path / "broker")
    broker.configure([])  # no persistence: a restart forgets every session and message
    broker.start()
    inbox = ReadingInbox(tmp_path / "inbox.sqlite", "coop-a", "127.0.0.1", broker.port, 900,
                         lambda: None)
    arrivals: list[int] = []
    book = inbox.book

    def recording_book(member: str, seq: int, ts: float, payload: str, epoch: int = 0) -> bool:
        arrivals.append(seq)
        return book(member, seq, ts, payload, epoch)

    inbox.book = recording_book  # type: ignore[method-assign]
    meter, battery = meter_image(SPEC), battery_image(SPEC)
    meter.set(203, "W", 420)
    meter.set(203, "TotWhImp", 1000)
    meter.set(203, "TotWhExp", 10)
    battery.set(802, "SoC", 55)
    battery.set(802, "W", 0)
    battery.set(124, "ChaState", 55)
    writes: list[float] = []

    async def scenario() -> None:
        server = SimulatedModbusServer(free_port(), {1: meter, 2: battery},
                                       on_write=lambda unit, offset, values: writes.append(
                                           time.monotonic()) if unit == 2 else None)
        await server.start()
        config = parse_agent_config(agent_toml(broker.port, server.port, tmp_path / "spool.db"))
        agent = EdgeAgent(config)
        inbox.start()
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(lambda: len(inbox.seqs("m1")) >= 5, 15, "readings before the outage")
            last = json.loads(inbox._conn.execute(
                "SELECT payload FROM agent_readings_by_epoch ORDER BY seq DESC LIMIT 1"
            ).fetchone()[0])
            assert last["meter_w"] == 420 and last["import_wh"] == 1000, last
            assert last["soc_pct"] == pytest.approx(55), last

            broker.stop()  # the coop's broker dies, and is away for a while
            await wait_for(lambda: not agent.link.connected.is_set(), 10, "the agent to notice")
            outage_from = agent.spool.next_seq()
            await asyncio.sleep(2.0)
            assert agent.spool.count() >= 10  # kept on disk meanwhile
            outage_to = agent.spool.next_seq() - 1
            broker.start()
            await wait_for(lambda: inbox.seqs("m1") and inbox.seqs("m1")[-1] >= outage_to + 3
                           and agent.spool.oldest() is not None
                           and agent.spool.oldest() > outage_to, 20,
                           "the spool to drain after the broker returned")
        finally:
            stop.set()
            await task
            await server.stop()
        taken = outage_to + 3
        seqs = inbox.seqs("m1")
        assert seqs[:taken] == list(range(1, taken + 1))  # every reading, once, none lost
        assert set(range(outage_from, outage_to + 1)) <= set(seqs)
        assert len(seqs) == len(set(seqs))
        # Republished in order: after the outage the numbers only rise (a re-send of one
        # not acknowledged before is booked once and counted as a duplicate).
        resumed = [s for s in arrivals if s >= outage_from]
        first_pass = resumed[:resumed.index(outage_to) + 1]
        assert first_pass == sorted(first_pass)
        assert agent.link.booked >= outage_to  # the coop confirmed: gone from the spool
        assert inbox.booked_as() == {"interval": len(seqs)}

    try:
        asyncio.run(scenario())
    finally:
        inbox.stop()
        broker.stop()


def test_agent_obeys_mandates_then_falls_back_when_the_coop_is_silent(tmp_path: Path) -> None:
    broker = CoopBroker("coop-a", free_port(), tmp_path / "broker")
    broker.configure([])
    broker.start()
    meter, battery = meter_image(SPEC), battery_image(SPEC)
    meter.set(203, "W", 100)
    battery.set(802, "SoC", 60)
    battery.set(802, "W", 0)
    battery.set(124, "ChaState", 60)
    writes: list[float] = []
    coop = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="coop-controller")
    coop.connect("127.0.0.1", broker.port)
    coop.loop_start()

    async def scenario() -> None:
        server = SimulatedModbusServer(free_port(), {1: meter, 2: battery},
                                       on_write=lambda unit, offset, values: writes.append(
                                           time.monotonic()) if unit == 2 else None)
        await server.start()
        agent = EdgeAgent(parse_agent_config(agent_toml(broker.port, server.port,
                                                        tmp_path / "spool.db")))
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(agent.link.connected.is_set, 10, "the agent to connect")
            command = {"seq": 1, "kind": "battery", "power_w": 2000,
                       "expires_at": time.time() + 60}
            coop.publish("coop/coop-a/agents/m1/commands", json.dumps(command), qos=1)
            coop.publish("coop/coop-a/agents/m1/commands",
                         json.dumps({"seq": 2, "kind": "battery", "power_w": 5}), qos=1)
            await wait_for(lambda: not agent.safe and writes, 10, "the setpoint written")
            assert battery.get(124, "OutWRte") == pytest.approx(40.0)  # 2000 W of 5000 W
            assert 1 <= battery.get_raw(124, "InOutWRte_RvrtTms") <= 5  # expires on its own
            assert any("expires_at" in r for r in agent.rejected_commands)
            # The coop says nothing more: after coop_silent_s the agent is safe, and stops.
            await wait_for(lambda: agent.safe, 5, "the safe state")
            await asyncio.sleep(0.3)  # the safe state's own write lands just after the flag
            count = len(writes)
            await asyncio.sleep(0.5)
            assert len(writes) == count
            # A heartbeat alone gives no mandate back; an expired command is not obeyed.
            coop.publish("coop/coop-a/heartbeat", b"1", qos=0)
            coop.publish("coop/coop-a/agents/m1/commands", json.dumps(
                {"seq": 3, "kind": "battery", "power_w": 1000,
                 "expires_at": time.time() - 1}), qos=1)
            await asyncio.sleep(0.5)
            assert agent.safe and len(writes) == count
        finally:
            stop.set()
            await task
            await server.stop()

    try:
        asyncio.run(scenario())
    finally:
        coop.loop_stop()
        coop.disconnect()
        broker.stop()


def test_agent_config_errors_name_the_field(tmp_path: Path) -> None:
    text = agent_toml(1883, 502, tmp_path / "s.db").replace('kind = "meter"', 'kind = "pv"')
    with pytest.raises(AgentConfigError, match="no meter"):
        parse_agent_config(text, "agent.toml")
    with pytest.raises(AgentConfigError, match="agent.period_s"):
        parse_agent_config(agent_toml(1883, 502, tmp_path / "s.db").replace(
            "period_s = 0.1", "period_s = -1"), "agent.toml")


def test_late_reading_goes_to_the_gap_not_a_committed_interval(tmp_path: Path) -> None:
    open_since = [1800.0]
    inbox = ReadingInbox(tmp_path / "inbox.sqlite", "coop-a", "127.0.0.1", 1, 900,
                         lambda: open_since[0])
    assert inbox.book("m1", 1, 1850.0, "{}")  # the open interval
    assert inbox.book("m1", 2, 1700.0, "{}")  # its interval (900) is committed: gap
    assert not inbox.book("m1", 2, 1700.0, "{}")  # a re-send: booked once
    assert inbox.booked_as() == {"interval": 1, "gap": 1} and inbox.duplicates == 1
    inbox._conn.close()


def test_agent_command_checks_its_config(tmp_path: Path, capsys) -> None:
    from controller.cli import main

    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(1883, 502, tmp_path / "s.db"))
    assert main(["agent", str(path), "--check"]) == 0
    assert "member m1 of coop-a" in capsys.readouterr().out
    path.write_text(path.read_text().replace('coop = "coop-a"', 'coop = "Coop A"'))
    assert main(["agent", str(path)]) == 2
    assert "agent.coop" in capsys.readouterr().err


def test_coop_reads_agent_fed_devices_like_any_mqtt_device(tmp_path: Path,
                                                           mosquitto: int) -> None:
    from controller.config import parse_config
    from controller.polling import Poller

    coop_config = parse_config(f"""
[controller]
stale_after_s = 1.0

[mqtt]
port = {mosquitto}

[[members]]
id = "m1"
name = "Ada"
  [[members.devices]]
  kind = "meter"
  protocol = "mqtt"
  family = "json"
  topic = "coop/coop-a/agents/m1/live/meter"
  paths = {{power_w = "power_w", import_wh = "import_wh", export_wh = "export_wh"}}
  fresh_s = 1.0

  [[members.devices]]
  kind = "battery"
  protocol = "mqtt"
  family = "commonwatt-agent"
  topic = "coop/coop-a/agents/m1/live/battery"
  fresh_s = 1.0
""", "coop.toml")
    meter, battery = meter_image(SPEC), battery_image(SPEC)
    meter.set(203, "W", 420)
    meter.set(203, "TotWhImp", 1000)
    meter.set(203, "TotWhExp", 10)
    battery.set(802, "SoC", 55)
    battery.set(802, "W", 0)

    async def scenario() -> None:
        server = SimulatedModbusServer(free_port(), {1: meter, 2: battery})
        await server.start()
        agent = EdgeAgent(parse_agent_config(agent_toml(mosquitto, server.port,
                                                        tmp_path / "spool.db")))
        coop = Poller(coop_config)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            async def meter_w() -> float:
                await coop.poll()
                return float(coop.freeze(time.time()).meter_w[0])

            deadline = time.monotonic() + 10
            while await meter_w() != 420 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await wait_for(lambda: coop.unknown_devices() == [], 5, "the battery too")
            image = coop.freeze(time.time())
            assert image.meter_w[0] == 420 and image.import_wh[0] == 1000
            assert image.soc_pct[0] == pytest.approx(55) and image.has_battery[0]
            # The coop's setpoint reaches the household's battery through the agent.
            await coop.write_setpoints(np.array([1500.0]), np.array([True]), 5)
            await wait_for(lambda: battery.get(124, "OutWRte") > 0, 5, "the setpoint applied")
            assert battery.get(124, "OutWRte") == pytest.approx(30.0)  # 1500 W of 5000 W
            assert not agent.safe
            stop.set()
            await task
            await asyncio.sleep(2.5)  # past fresh_s: stale, as a silent Modbus meter would be
            await coop.poll()
            assert coop.unknown_devices() == ["m1/meter", "m1/battery"]
            assert "stale topic" in str(coop.health()[0]["last_error"])
        finally:
            stop.set()
            if not task.done():
                await task
            coop.close()
            await server.stop()

    asyncio.run(scenario())


def test_mandates_expire_and_never_revive() -> None:
    from controller.agent.mandates import Mandates, parse_command

    m = Mandates(coop_silent_s=5)
    cmd = {"seq": 1, "kind": "load", "load": "m1/load1", "on": False, "expires_at": 100.0}
    assert m.accept(parse_command(cmd, 0.0))
    assert [x.target for x in m.in_force(10.0, last_heard=9.0)] == ["m1/load1"]
    assert m.in_force(101.0, last_heard=100.0) == []  # expired
    assert m.in_force(20.0, last_heard=10.0) == []  # silent: dropped for good
    assert m.in_force(21.0, last_heard=21.0) == []  # heard again: nothing resumes
    assert not m.accept(parse_command(cmd, 21.0))  # a replay is refused
    with pytest.raises(ValueError, match="power_w"):
        parse_command({"seq": 2, "kind": "battery", "expires_at": 1.0}, 0.0)
    capped = parse_command({**cmd, "seq": 3, "expires_at": 1e12}, 0.0)
    assert capped.expires_at == 3600.0  # no mandate lives longer than an hour


def test_controller_with_agent_fed_devices_runs_the_inbox(tmp_path: Path, mosquitto: int) -> None:
    from controller.config import parse_config
    from controller.cycle import Controller

    config = parse_config(f"""
[mqtt]
port = {mosquitto}

[storage]
ledger = "{tmp_path / 'ledger.sqlite'}"

[[members]]
id = "m1"
name = "Ada"
  [[members.devices]]
  kind = "meter"
  protocol = "mqtt"
  family = "commonwatt-agent"
  topic = "coop/coop-a/agents/m1/live/meter"
""", "coop.toml")
    controller = Controller(config, time.time)
    try:
        inbox = controller.agents
        assert inbox is not None and inbox.coop == "coop-a"
        deadline = time.monotonic() + 5
        while not inbox.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-m1-test")
        sender.connect("127.0.0.1", mosquitto)
        sender.loop_start()
        reading = {"member": "m1", "seq": 1, "oldest": 1, "ts": time.time(), "meter_w": 5.0}
        sender.publish("coop/coop-a/agents/m1/readings", json.dumps(reading),
                       qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while inbox.seqs("m1") != [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inbox.seqs("m1") == [1] and inbox.booked_as() == {"interval": 1}
        sender.loop_stop()
        sender.disconnect()
    finally:
        controller.close()
    assert (tmp_path / "ledger-agents.sqlite").exists()
