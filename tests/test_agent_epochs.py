"""A reinstalled edge agent (a fresh spool, numbering from 1 again) against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.agent.config import parse_agent_config
from controller.agent.inbox import ReadingInbox
from controller.agent.runner import EdgeAgent
from simulators.coop import battery_image, meter_image
from simulators.modbus_server import SimulatedModbusServer
from tests.conftest import free_port
from tests.federation_brokers import CoopBroker
from tests.test_agent_outage import SPEC, agent_toml, wait_for


def test_reinstalled_agent_starts_a_new_epoch_accepted_once(tmp_path: Path) -> None:
    broker = CoopBroker("coop-a", free_port(), tmp_path / "broker")
    broker.configure([])
    broker.start()
    inbox = ReadingInbox(tmp_path / "inbox.sqlite", "coop-a", "127.0.0.1", broker.port, 900,
                         lambda: None)
    meter, battery = meter_image(SPEC), battery_image(SPEC)
    meter.set(203, "TotWhImp", 1000)
    meter.set(203, "TotWhExp", 10)
    battery.set(802, "SoC", 55)
    first_spool, fresh_spool = tmp_path / "spool-1.db", tmp_path / "spool-2.db"

    async def run_agent(spool: Path, until, what: str) -> EdgeAgent:
        server = SimulatedModbusServer(free_port(), {1: meter, 2: battery})
        await server.start()
        agent = EdgeAgent(parse_agent_config(agent_toml(broker.port, server.port, spool)))
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await wait_for(lambda: until(agent), 20, what)
        finally:
            stop.set()
            await task
            await server.stop()
        return agent

    async def scenario() -> tuple[EdgeAgent, EdgeAgent]:
        inbox.start()
        old = await run_agent(first_spool, lambda a: a.link.booked >= 5,
                              "the first agent's readings booked")
        # The household's agent is reinstalled: a new SD card, an empty spool. It numbers
        # from 1 again, and the coop's retained answer still says "booked through 5+".
        new = await run_agent(fresh_spool, lambda a: a.link.booked >= 8,
                              "the reinstalled agent's readings booked")
        return old, new

    try:
        old, new = asyncio.run(scenario())
        assert new.spool.epoch > old.spool.epoch
        epochs = [e for e, _ in inbox.epochs_of("m1")]
        assert epochs == [old.spool.epoch, new.spool.epoch]  # the new epoch, accepted once
        first = inbox.seqs("m1", old.spool.epoch)
        second = inbox.seqs("m1", new.spool.epoch)
        assert first == list(range(1, len(first) + 1)) and len(first) >= 5
        # Every reading of the new agent booked from 1, none ignored as "seen before".
        assert second[:8] == list(range(1, 9))
        # A reading of the old epoch arriving now (the old card plugged in again) is refused.
        stale = json.loads(inbox._conn.execute(
            "SELECT payload FROM agent_readings_by_epoch WHERE epoch = ? ORDER BY seq DESC",
            (old.spool.epoch,)).fetchone()[0])
        stale["seq"] += 100
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="old-card")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.publish("coop/coop-a/agents/m1/readings", json.dumps(stale), qos=1
                       ).wait_for_publish(5)
        asyncio.run(wait_for(lambda: inbox.stale >= 1, 10, "the stale epoch refused"))
        client.loop_stop()
        client.disconnect()
        assert stale["seq"] not in inbox.seqs("m1", old.spool.epoch)
        assert [e for e, _ in inbox.epochs_of("m1")] == epochs  # no third epoch
    finally:
        inbox.stop()
        broker.stop()
