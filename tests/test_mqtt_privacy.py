"""Private by default on MQTT (issue 18, deliverable 2), on a real mosquitto.

* With the ACL and password file `commonwatt mqtt acl` writes (``allow_anonymous
  false``, ``password_file``, ``acl_file``), one household's Home Assistant user,
  subscribed to ``#``, receives its own member's figures and the coop's, and nothing
  of another member's; an anonymous client is refused.
* The discovery payloads, read against Home Assistant's documented rules for MQTT
  sensors (below), have no entity a member cannot have, gross import and export, the
  community share as its own ``total_increasing`` sensor, the SoC as a ``measurement``,
  and real names only for ``public = true`` members.
* ``[mqtt] publish_s`` sets how often live power goes out; energy goes once per interval.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import MqttConfig
from controller.mqtt_acl import household_user, password_entry
from controller.runtime import Runtime
from tests.conftest import free_port, wait_for_port
from tests.coop_harness import start_harness

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {'id = "h03"': 'id = "h03"\npublic = true'}
ENERGY = {"liberated_kwh", "from_peers_kwh", "to_peers_kwh", "from_grid_kwh", "to_grid_kwh",
          "served_kwh"}

# Home Assistant's rules for an MQTT sensor's discovery payload (home-assistant.io
# integrations/sensor.mqtt and sensor#device-class; /work/shared/README.md §7, §8):
#: units a device class takes (HA's DEVICE_CLASS_UNITS for the classes used here).
HA_UNITS = {"energy": {"Wh", "kWh", "MWh", "GWh", "MJ", "GJ"}, "power": {"W", "kW", "MW"},
            "battery": {"%"}}
#: state classes a device class takes (HA's DEVICE_CLASS_STATE_CLASSES).
HA_STATE_CLASSES = {"energy": {"total", "total_increasing"}, "power": {"measurement"},
                    "battery": {"measurement"}, None: {"measurement", "total",
                                                       "total_increasing"}}
HA_SENSOR_KEYS = {"name", "unique_id", "state_topic", "value_template", "device_class",
                  "state_class", "unit_of_measurement", "availability_topic",
                  "payload_available", "payload_not_available", "device", "origin"}


def ha_schema_errors(topic: str, c: dict) -> list[str]:
    """What Home Assistant would refuse or warn about in one sensor config."""
    errors = []
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[1] != "sensor" or parts[-1] != "config":
        errors.append("topic is not <prefix>/sensor/[<node_id>/]<object_id>/config")
    if not set(c) <= HA_SENSOR_KEYS:
        errors.append(f"keys HA's sensor schema does not know: {set(c) - HA_SENSOR_KEYS}")
    if not c.get("state_topic"):
        errors.append("state_topic is required")
    if c.get("device") and not c.get("unique_id"):
        errors.append("a device block needs a unique_id")
    device = c.get("device", {})
    if not (device.get("identifiers") or device.get("connections")):
        errors.append("the device needs identifiers or connections")
    dc, sc, unit = c.get("device_class"), c.get("state_class"), c.get("unit_of_measurement")
    if dc is not None and unit not in HA_UNITS.get(dc, set()):
        errors.append(f"unit {unit!r} is not one of device class {dc}'s")
    if sc not in HA_STATE_CLASSES.get(dc, set()):
        errors.append(f"state_class {sc!r} does not fit device class {dc!r}")
    if not c.get("availability_topic"):
        errors.append("no availability topic: HA could not show the coop as unavailable")
    return errors


class LockedBroker:
    """A mosquitto that takes only the logins `commonwatt mqtt acl` wrote into ``acl_dir``
    (its ``mosquitto.conf``: allow_anonymous false, password_file, acl_file)."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.tmp = free_port(), tmp
        # Outside pytest's owner-only tmp_path: mosquitto started as root reads these
        # files as its own user, as it would on a coop's box (the command's --group).
        self.home = Path(tempfile.mkdtemp(prefix="cw-broker-"))
        self.home.chmod(0o755)
        self.acl_dir = self.home / "broker"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\npersistence false\n"
                        + (self.acl_dir / "mosquitto.conf").read_text())
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_port(self.port)


@pytest.fixture()
def locked_broker(tmp_path: Path) -> Iterator[LockedBroker]:
    broker = LockedBroker(tmp_path)
    try:
        yield broker
    finally:
        if broker.proc is not None:
            broker.proc.terminate()
            broker.proc.wait(10)
        shutil.rmtree(broker.home, ignore_errors=True)


class Listener:
    """A client that logs in (or not), subscribes to ``#`` and keeps what it receives."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.got: dict[str, bytes] = {}
        self.refused: str | None = None
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"listener-{user}-{time.monotonic_ns()}",
                                  reconnect_on_failure=False)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda c, u, m: self.got.__setitem__(m.topic, m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: mqtt.ReasonCode, properties: object = None) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.ready.set()
            return
        client.subscribe([("#", 1), ("homeassistant/#", 1)])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _run_controller(tmp_path: Path, port: int | None, cycles: int, publish_s: float = 10.0,
                    user: str | None = None, password: str | None = None,
                    ) -> tuple[Runtime, list[int]]:
    """A controller on the simulated coop, publishing to the broker for ``cycles`` cycles;
    returns it and the cycles whose report committed an interval."""
    committed: list[int] = []

    async def run() -> Runtime:
        h = await start_harness(tmp_path, households=3, settlement_s=300, **PUBLIC)
        h.controller.close()
        mqtt_cfg = MqttConfig(port=port or 1, publish_s=publish_s, username=user,
                              password=password)
        runtime = Runtime(h.config.model_copy(update={"mqtt": mqtt_cfg}), h.clock.now,
                          nominal_dt_s=h.dt_s)
        assert runtime.publisher is not None
        if port is not None:
            runtime.publisher.start()
            deadline = time.monotonic() + 10
            while not runtime.publisher.client.is_connected():
                assert time.monotonic() < deadline, "the controller could not log in"
                await asyncio.sleep(0.05)
        try:
            for k in range(cycles):
                h.clock.advance(h.dt_s)
                h.coop.step()
                report = await runtime.cycle_once()
                if report is not None and report.committed:
                    committed.append(k)
        finally:
            if port is not None:
                runtime.publisher.stop()
            runtime.controller.close()
            await h.coop.stop()
        return runtime

    return asyncio.run(run()), committed


def test_a_household_reads_only_its_own_member_and_the_coop(
        tmp_path: Path, locked_broker: LockedBroker) -> None:
    port, acl_dir = locked_broker.port, locked_broker.acl_dir
    # The config the command reads: the harness's coop with this broker and a controller login.
    config = tmp_path / "acl-coop.toml"
    h_config = asyncio.run(_config_text(tmp_path / "cfg"))
    config.write_text(h_config + f'\n[mqtt]\nport = {port}\nusername = "ctl"\n'
                      'password = "ctl-secret-123"\n')
    made = subprocess.run([sys.executable, "-m", "controller.cli", "mqtt", "acl", str(config),
                           "--out", str(acl_dir)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "ctl-secret-123" not in made.stdout + made.stderr
    creds = dict(line.split(" ", 1) for line in
                 (acl_dir / "credentials.txt").read_text().splitlines())
    assert set(creds) >= {household_user("h01"), household_user("h02")}
    assert "ctl" not in creds, "the controller keeps its configured password"
    for name in ("credentials.txt", "mosquitto.conf"):
        assert (acl_dir / name).stat().st_mode & 0o077 == 0, name
    for name in ("acl", "passwd"):  # the broker's group may read them, nobody else
        assert (acl_dir / name).stat().st_mode & 0o037 == 0, name
    locked_broker.start()

    anonymous = Listener(port, None, None)
    wrong = Listener(port, household_user("h01"), "not-the-password")
    _run_controller(tmp_path / "run", port, cycles=12, user="ctl", password="ctl-secret-123")
    h01 = Listener(port, household_user("h01"), creds[household_user("h01")])
    h02 = Listener(port, household_user("h02"), creds[household_user("h02")])
    try:
        for listener in (anonymous, wrong, h01, h02):
            assert listener.ready.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not {
                "commonwatt/members/h01/state", "commonwatt/coop/state",
                "homeassistant/sensor/commonwatt_h01/liberated_kwh/config"} <= set(h01.got):
            time.sleep(0.1)
        time.sleep(1.0)  # anything else retained would have arrived by now
    finally:
        for listener in (anonymous, wrong, h01, h02):
            listener.close()
    assert anonymous.refused is not None and wrong.refused is not None
    mine = set(h01.got)
    assert {"commonwatt/members/h01/state", "commonwatt/members/h01/live",
            "commonwatt/coop/state", "commonwatt/status"} <= mine, sorted(mine)
    assert any(t.startswith("homeassistant/sensor/commonwatt_h01/") for t in mine)
    assert any(t.startswith("homeassistant/sensor/commonwatt_coop/") for t in mine)
    others = [t for t in mine if "h02" in t or "h03" in t]
    assert not others, others
    assert not any(b"h02" in p or b"h03" in p or b"Bram" in p or b"Chlo" in p
                   for p in h01.got.values())
    assert "commonwatt/members/h02/state" in h02.got
    assert not [t for t in h02.got if "h01" in t or "h03" in t]
    # Home Assistant can use what it got: figures as numbers, its own device discovered.
    state = json.loads(h01.got["commonwatt/members/h01/state"])
    assert state["from_grid_kwh"] >= 0 and state["to_grid_kwh"] >= 0
    print(f"h01's Home Assistant received {len(mine)} topics, none of another member's; "
          f"h02's {len(h02.got)}")


async def _config_text(tmp: Path) -> str:
    """The harness coop's config text (its simulated devices stop again at once)."""
    from simulators.clock import SimClock
    from simulators.coop import SimulatedCoop
    from simulators.demo_config import coop_toml
    from simulators.household import demo_households

    coop = SimulatedCoop(demo_households(3), SimClock(speed=0))
    await coop.start()
    try:
        text = coop_toml(coop, tmp / "ledger.sqlite", settlement_s=300)
    finally:
        await coop.stop()
    for old, new in PUBLIC.items():
        text = text.replace(old, new)
    return text


def test_discovery_fits_home_assistant_and_creates_no_entity_a_member_cannot_have(
        tmp_path: Path) -> None:
    runtime, _ = _run_controller(tmp_path, None, cycles=0)
    publisher = runtime.publisher
    assert publisher is not None
    configs = publisher.discovery()
    errors = {t: e for t, c in configs.items() if (e := ha_schema_errors(t, c))}
    assert not errors, errors
    by_node: dict[str, dict[str, dict]] = {}
    for topic, c in configs.items():
        by_node.setdefault(topic.split("/")[2], {})[topic.split("/")[3]] = c
    # h02 has no battery: no SoC and no battery power that would stay unknown forever.
    assert "soc_pct" not in by_node["commonwatt_h02"]
    assert "battery_w" not in by_node["commonwatt_h02"]
    assert {"soc_pct", "battery_w", "pv_w"} <= set(by_node["commonwatt_h01"])
    for node in ("commonwatt_h01", "commonwatt_h02", "commonwatt_coop"):
        sensors = by_node[node]
        # gross import and export, each a total_increasing energy sensor
        for gross in ("from_grid_kwh", "to_grid_kwh", "liberated_kwh", "from_peers_kwh"):
            assert sensors[gross]["state_class"] == "total_increasing", (node, gross)
            assert sensors[gross]["device_class"] == "energy"
    assert by_node["commonwatt_h01"]["soc_pct"]["state_class"] == "measurement"
    # Names: the real one only for the public member; the others under the pseudonym.
    names = {node: next(iter(s.values()))["device"]["name"] for node, s in by_node.items()}
    assert names["commonwatt_h03"] == "Chloé's house"
    assert names["commonwatt_h01"].startswith("m-") and names["commonwatt_h02"].startswith("m-")
    assert not any("Ada" in json.dumps(c) or "Bram" in json.dumps(c) for c in configs.values())
    live = {"load_w", "grid_w"}
    assert set(by_node["commonwatt_h02"]) == ENERGY | {"self_sufficiency_pct", "pv_w"} | live
    assert set(by_node["commonwatt_h01"]) == (ENERGY | {"self_sufficiency_pct", "pv_w",
                                                        "battery_w", "soc_pct"} | live)
    assert set(by_node["commonwatt_coop"]) == ENERGY | {"self_sufficiency_pct"}
    print({node: len(s) for node, s in by_node.items()})


def test_publish_interval_and_energy_once_per_interval(tmp_path: Path, mosquitto: int) -> None:
    seen: list[str] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="publish-counter")
    watcher.on_message = lambda c, u, m: seen.append(m.topic)
    ready = threading.Event()
    watcher.on_subscribe = lambda *_: ready.set()
    watcher.on_connect = lambda c, *_: c.subscribe("commonwatt/members/+/+", 1)
    watcher.connect("127.0.0.1", mosquitto)
    watcher.loop_start()
    assert ready.wait(5)
    try:
        t0 = time.monotonic()
        _, committed = _run_controller(tmp_path, mosquitto, cycles=24, publish_s=3600)
        elapsed = time.monotonic() - t0
        time.sleep(0.5)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
    live = [t for t in seen if t.endswith("/live")]
    state = [t for t in seen if t.endswith("/state")]
    # 24 cycles of 30 s with 300 s intervals: two committed; one live burst (publish_s).
    assert len(committed) == 2, committed
    assert len(live) == 3, live  # once per member, at the first cycle
    assert len(state) == 3 * (1 + len(committed)), state
    print(f"{len(seen)} member messages in {elapsed:.1f} s for 24 cycles (was 24 x 6 = 144)")


def test_password_entries_are_mosquittos_own_format(tmp_path: Path) -> None:
    """The same password and salt give mosquitto_passwd's own line, to the byte."""
    binary = shutil.which("mosquitto_passwd")
    assert binary, "mosquitto_passwd comes with the mosquitto package"
    subprocess.run([binary, "-c", "-b", str(tmp_path / "pw"), "alice", "s3cret:x"], check=True)
    theirs = (tmp_path / "pw").read_text().strip()
    salt = base64.b64decode(theirs.split("$")[3])
    assert password_entry("alice", "s3cret:x", salt=salt) == theirs
