"""MqttPublisher on a real mosquitto broker: HA discovery schema, availability, figures."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.mqtt_publish import MqttPublisher

REPO = Path(__file__).resolve().parents[1]
PREFIX = "cw-test"
MEMBERS = [("h01", "Household 1"), ("h02", "Household 2")]
ENERGY = {"liberated_kwh", "from_peers_kwh", "to_peers_kwh", "from_grid_kwh", "served_kwh",
          "from_federation_kwh"}
POWER = {"pv_w", "load_w", "grid_w", "battery_w"}
PERCENT = {"soc_pct", "self_sufficiency_pct"}
HA_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # HA's rule for node_id and object_id


class Watcher:
    """A separate paho client that records every message it sees, in order."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "no SUBACK from the broker"

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait(self, pred: Callable[[list[mqtt.MQTTMessage]], bool], timeout_s: float = 5.0,
             ) -> list[mqtt.MQTTMessage]:
        """Block until ``pred(messages)`` holds, or fail at the deadline."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                assert left > 0, [(m.topic, m.payload[:60]) for m in self.messages]
                self.cond.wait(left)
            return list(self.messages)

    def latest(self) -> dict[str, mqtt.MQTTMessage]:
        """The last message seen on each topic."""
        with self.cond:
            return {m.topic: m for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def saw(topic: str, payload: str) -> Callable[[list[mqtt.MQTTMessage]], bool]:
    """Predicate: ``payload`` arrived on ``topic`` (at any point)."""
    return lambda msgs: any(m.topic == topic and m.payload == payload.encode() for m in msgs)


def started(port: int) -> MqttPublisher:
    """A running publisher whose connect-time burst (ending with ``online``) is done."""
    publisher = MqttPublisher("127.0.0.1", port, PREFIX, MEMBERS)
    watcher = Watcher(port, [f"{PREFIX}/status"])
    publisher.start()
    try:
        watcher.wait(saw(f"{PREFIX}/status", "online"))
    finally:
        watcher.close()
    return publisher


def figures(liberated: float, **extra: object) -> dict[str, object]:
    base = {k: 0.5 for k in ENERGY} | {"liberated_kwh": liberated, "self_sufficiency": 0.25,
                                        "intervals": 3}
    return base | extra


def test_discovery_configs_follow_home_assistant_schema(mosquitto: int) -> None:
    publisher = started(mosquitto)
    try:
        expected = len(publisher.discovery())
        # Subscribing after the burst: everything must come back as retained messages.
        watcher = Watcher(mosquitto, ["homeassistant/#", f"{PREFIX}/#"])
        msgs = watcher.wait(lambda ms: sum(m.topic.endswith("/config") for m in ms) >= expected
                            and any(m.topic == f"{PREFIX}/status" for m in ms))
        watcher.close()
    finally:
        publisher.stop()

    status = [m for m in msgs if m.topic == f"{PREFIX}/status"]
    assert [(m.payload, m.retain) for m in status] == [(b"online", True)]
    configs = {m.topic: m for m in msgs if m.topic.endswith("/config")}
    assert len(configs) == expected == 2 * (6 + 1 + 5) + 7  # members: energy, %, live; coop
    unique_ids = set()
    per_node: dict[str, set[str]] = {}
    for topic, msg in configs.items():
        assert msg.retain, topic
        parts = topic.split("/")
        assert len(parts) == 5 and parts[0] == "homeassistant" and parts[1] == "sensor", topic
        node_id, object_id = parts[2], parts[3]
        assert HA_ID.match(node_id) and HA_ID.match(object_id), topic
        c = json.loads(msg.payload)
        assert c["unique_id"] == f"{node_id}_{object_id}" and c["unique_id"] not in unique_ids
        unique_ids.add(c["unique_id"])
        per_node.setdefault(node_id, set()).add(object_id)
        device = c["device"]
        assert device["identifiers"] == [node_id]
        assert device["manufacturer"] == "Commonwatt" and device["sw_version"]
        assert device["name"] and device["model"]
        assert c["availability_topic"] == f"{PREFIX}/status"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert c["state_topic"].startswith(f"{PREFIX}/") and c["name"]
        assert c["value_template"] == f"{{{{ value_json.{object_id} }}}}"
        if object_id in ENERGY:
            assert (c["device_class"], c["state_class"], c["unit_of_measurement"]) == (
                "energy", "total_increasing", "kWh"), topic
            assert c["state_topic"].endswith("/state")
        elif object_id in POWER:
            assert (c["device_class"], c["state_class"], c["unit_of_measurement"]) == (
                "power", "measurement", "W"), topic
            assert c["state_topic"].endswith("/live")
        elif object_id == "soc_pct":
            assert (c["device_class"], c["state_class"], c["unit_of_measurement"]) == (
                "battery", "measurement", "%"), topic
        else:
            assert object_id == "self_sufficiency_pct", topic
            assert "device_class" not in c and c["state_class"] == "measurement"
            assert c["unit_of_measurement"] == "%"
    member_sensors = ENERGY | POWER | PERCENT
    assert per_node == {"commonwatt_h01": member_sensors, "commonwatt_h02": member_sensors,
                        "commonwatt_coop": ENERGY | {"self_sufficiency_pct"}}
    h01 = json.loads(configs["homeassistant/sensor/commonwatt_h01/liberated_kwh/config"].payload)
    assert h01["device"]["name"] == "Household 1" and h01["device"]["model"] == "Coop member"
    assert h01["state_topic"] == f"{PREFIX}/members/h01/state"


def test_custom_discovery_prefix_and_reserved_coop_id() -> None:
    publisher = MqttPublisher("127.0.0.1", 1, PREFIX, MEMBERS, discovery_prefix="ha/")
    assert all(t.startswith("ha/sensor/commonwatt_") for t in publisher.discovery())
    try:
        MqttPublisher("127.0.0.1", 1, PREFIX, [("coop", "Clash")])
    except ValueError:
        return
    raise AssertionError("a member called 'coop' would share the coop's HA device")


def test_last_will_on_lost_connection_then_online_again(mosquitto: int) -> None:
    publisher = started(mosquitto)
    watcher = Watcher(mosquitto, [f"{PREFIX}/status"])
    try:
        watcher.wait(saw(f"{PREFIX}/status", "online"))
        sock = publisher.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the broker sees the TCP stream end, no DISCONNECT
        msgs = watcher.wait(lambda ms: [m.payload for m in ms][-2:] == [b"offline", b"online"],
                            timeout_s=8)
        assert [m.payload for m in msgs] == [b"online", b"offline", b"online"]
    finally:
        watcher.close()
        publisher.stop()


def test_last_will_when_the_process_is_killed(mosquitto: int) -> None:
    code = ("import sys, time\nfrom controller.mqtt_publish import MqttPublisher\n"
            f"p = MqttPublisher('127.0.0.1', {mosquitto}, {PREFIX!r}, [('h01', 'H')])\n"
            "p.start()\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    watcher = Watcher(mosquitto, [f"{PREFIX}/status"])
    try:
        watcher.wait(saw(f"{PREFIX}/status", "online"), timeout_s=8)
        os.kill(proc.pid, signal.SIGKILL)
        watcher.wait(saw(f"{PREFIX}/status", "offline"))
    finally:
        watcher.close()
        proc.kill()
        proc.wait()
    after = Watcher(mosquitto, [f"{PREFIX}/status"])  # the will was retained
    try:
        msgs = after.wait(lambda ms: len(ms) >= 1)
        assert (msgs[0].payload, msgs[0].retain) == (b"offline", True)
    finally:
        after.close()


def test_figures_are_published_and_never_go_down(mosquitto: int) -> None:
    publisher = started(mosquitto)
    state, coop = f"{PREFIX}/members/h01/state", f"{PREFIX}/coop/state"
    watcher = Watcher(mosquitto, [f"{PREFIX}/members/#", coop])
    try:
        publisher.publish({"h01": figures(1.235)}, figures(2.5), provisional=True)
        publisher.publish({"h01": figures(1.234, from_grid_kwh=0.499)}, figures(2.4))
        publisher.publish({"h01": figures(1.240)}, figures(2.6))
        publisher.publish_live({"h01": {"pv_w": 1200.0, "load_w": 800.0, "grid_w": -400.0,
                                        "battery_w": None}})
        live = f"{PREFIX}/members/h01/live"
        msgs = watcher.wait(lambda ms: sum(m.topic == state for m in ms) == 3
                            and sum(m.topic == coop for m in ms) == 3
                            and any(m.topic == live for m in ms))
    finally:
        watcher.close()
        publisher.stop()
    seen = [json.loads(m.payload) for m in msgs if m.topic == state]
    assert all(m.retain is False for m in msgs)  # live deliveries; retention checked below
    assert [s["liberated_kwh"] for s in seen] == [1.235, 1.235, 1.24]  # 1.234 held back
    assert [s["from_grid_kwh"] for s in seen] == [0.5, 0.5, 0.5]
    assert [s["provisional"] for s in seen] == [True, False, False]
    assert seen[-1]["self_sufficiency_pct"] == 25.0 and seen[-1]["intervals"] == 3
    assert [json.loads(m.payload)["liberated_kwh"] for m in msgs if m.topic == coop] == [
        2.5, 2.5, 2.6]
    live_payload = json.loads(next(m.payload for m in msgs if m.topic == live))
    assert live_payload == {"pv_w": 1200.0, "load_w": 800.0, "grid_w": -400.0,
                            "battery_w": None, "soc_pct": None}

    # Retained: a late subscriber gets the latest state, and offline from stop().
    late = Watcher(mosquitto, [state, f"{PREFIX}/status"])
    try:
        got = late.wait(lambda ms: {m.topic for m in ms} == {state, f"{PREFIX}/status"})
    finally:
        late.close()
    by_topic = {m.topic: m for m in got}
    assert by_topic[state].retain and json.loads(by_topic[state].payload)["liberated_kwh"] == 1.24
    assert (by_topic[f"{PREFIX}/status"].payload, by_topic[f"{PREFIX}/status"].retain) == (
        b"offline", True)


def test_stop_publishes_offline(mosquitto: int) -> None:
    publisher = started(mosquitto)
    watcher = Watcher(mosquitto, [f"{PREFIX}/status"])
    try:
        watcher.wait(saw(f"{PREFIX}/status", "online"))
        publisher.stop()
        msgs = watcher.wait(saw(f"{PREFIX}/status", "offline"))
        assert [m.payload for m in msgs] == [b"online", b"offline"]
    finally:
        watcher.close()


def test_runtime_publishes_retained_member_figures(tmp_path: Path, mosquitto: int) -> None:
    """The runtime's calls (constructor, start, publish, stop) still fit the publisher."""
    # Imported here so the publisher's own tests do not depend on the whole runtime.
    from controller.config import MqttConfig
    from controller.runtime import Runtime
    from tests.coop_harness import start_harness

    expected: dict = {}

    async def run() -> Runtime:
        h = await start_harness(tmp_path, settlement_s=300)
        h.controller.close()
        config = h.config.model_copy(update={"mqtt": MqttConfig(port=mosquitto)})
        runtime = Runtime(config, h.clock.now, nominal_dt_s=h.dt_s)
        assert runtime.publisher is not None
        watcher = Watcher(mosquitto, ["commonwatt/status"])
        runtime.publisher.start()
        try:
            watcher.wait(saw("commonwatt/status", "online"))
            watcher.close()
            for _ in range(20):
                h.clock.advance(h.dt_s)
                h.coop.step()
                await runtime.cycle_once()
            expected.update(runtime.figures()[0]["h01"])  # what the last cycle published
        finally:
            runtime.publisher.stop()
            runtime.controller.close()
            await h.coop.stop()
        return runtime

    runtime = asyncio.run(run())
    state = "commonwatt/members/h01/state"
    config = "homeassistant/sensor/commonwatt_h01/liberated_kwh/config"
    watcher = Watcher(mosquitto, ["commonwatt/#", "homeassistant/#"])
    try:
        watcher.wait(lambda ms: {state, config, "commonwatt/coop/state"} <= {m.topic for m in ms})
        got = watcher.latest()
    finally:
        watcher.close()
    totals = runtime.reader.totals("h01")
    committed = (totals["own_pv_used"] + totals["from_battery_coop"] + totals["from_peers"]
                 + totals["from_coop_battery_coop"])
    figures_h01 = json.loads(got[state].payload)
    # 20 cycles of 30 s: two 300 s intervals committed, the figures include the open one
    assert figures_h01["intervals"] == totals["intervals"] == 2
    assert figures_h01["provisional"] is True
    assert figures_h01["liberated_kwh"] == expected["liberated_kwh"] >= round(committed / 1000, 3)
    discovery = json.loads(got[config].payload)
    assert discovery["state_class"] == "total_increasing"
    assert discovery["unit_of_measurement"] == "kWh"
    assert discovery["state_topic"] == state
