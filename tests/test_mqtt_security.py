"""MQTT that cannot be spoofed easily, against real mosquitto brokers on 127.0.0.1.

* a broker with ``allow_anonymous false`` and a ``mosquitto_passwd`` file: a wrong
  password leaves every MQTT device unknown with the broker's refusal named; the
  right one (inline or in ``password_file``) lets readings flow;
* the same broker over TLS with a CA made by ``openssl``: readings flow with
  ``tls_ca`` (and a client certificate); without the CA the broker is refused with
  the certificate error named;
* the figures publisher logs in with the same settings;
* the issue's measurement, repeated: an anonymous client publishes 999 kW on one
  member's meter topic; the reading is refused as implausible (beyond the member's
  main fuse), the member is unknown, and nothing is booked for it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.config import parse_config
from controller.cycle import Controller
from controller.ledger import LedgerReader
from controller.mqtt_publish import MqttPublisher
from controller.wiring import read_all
from devices.mqtt.access import MqttAccess
from simulators.mqtt_devices import SimulatedMqttDevice
from tests.secure_broker import PASSWORD, USER, SecureBroker, secure_mosquitto


@pytest.fixture()
def secure(tmp_path: Path):  # noqa: ANN201 - a generator fixture
    with secure_mosquitto(tmp_path / "broker") as broker:
        yield broker


def coop_text(port: int, mqtt_keys: str, ledger: Path | None = None) -> str:
    storage = f'[storage]\nledger = "{ledger}"\n' if ledger else ""
    return f"""{storage}
[mqtt]
port = {port}
{mqtt_keys}
[[members]]
id = "a"
name = "A"
devices = [{{ kind = "meter", protocol = "mqtt", family = "tasmota", topic = "meter-a" }}]
"""


def publishing(port: int, access: MqttAccess, power_w: float) -> SimulatedMqttDevice:
    sim = SimulatedMqttDevice("tasmota", "meter-a", port, access=access)
    sim.publish(power_w=power_w, import_wh=1000.0, export_wh=0.0, energy_wh=1000.0)
    return sim


def read_meter(text: str, sim: SimulatedMqttDevice, power_w: float) -> dict:
    async def go() -> dict:
        # The simulated meter publishes every 0.3 s while `read` waits for it.
        stop = threading.Event()

        def keep_publishing() -> None:
            while not stop.wait(0.3):
                sim.publish(power_w=power_w)

        thread = threading.Thread(target=keep_publishing, daemon=True)
        thread.start()
        try:
            return (await read_all(parse_config(text, "coop.toml")))[0]
        finally:
            stop.set()
            thread.join()
    return asyncio.run(go())


def test_wrong_password_names_the_refusal_right_password_reads(
        secure: SecureBroker, tmp_path: Path) -> None:
    sim = publishing(secure.port, MqttAccess(USER, PASSWORD), 812.0)
    try:
        wrong = read_meter(coop_text(secure.port, f'username = "{USER}"\npassword = "nope"'),
                           sim, 812.0)
        assert not wrong["ok"]
        assert "refused" in wrong["error"] and "Not authorized" in wrong["error"], wrong
        anonymous = read_meter(coop_text(secure.port, ""), sim, 812.0)
        assert not anonymous["ok"] and "Not authorized" in anonymous["error"]

        right = read_meter(coop_text(secure.port, f'username = "{USER}"\n'
                                                  f'password = "{PASSWORD}"'), sim, 812.0)
        assert right["ok"], right
        assert right["values"]["power_w"]["value"] == pytest.approx(812.0)

        secret = tmp_path / "mqtt-password"
        secret.write_text(PASSWORD + "\n")
        from_file = read_meter(coop_text(secure.port, f'username = "{USER}"\n'
                                                      f'password_file = "{secret}"'), sim, 640.0)
        assert from_file["ok"], from_file
        assert from_file["values"]["power_w"]["value"] == pytest.approx(640.0)
    finally:
        sim.close()


def test_tls_with_the_ca_reads_without_it_names_the_certificate_error(
        secure: SecureBroker) -> None:
    pki = secure.pki
    login = f'username = "{USER}"\npassword = "{PASSWORD}"\n'
    sim = publishing(secure.tls_port, MqttAccess(USER, PASSWORD, tls=True,
                                                 ca_file=str(pki["ca"])), 1500.0)
    try:
        ok = read_meter(coop_text(secure.tls_port, login + f'tls_ca = "{pki["ca"]}"'),
                        sim, 1500.0)
        assert ok["ok"], ok
        assert ok["values"]["power_w"]["value"] == pytest.approx(1500.0)

        with_cert = read_meter(coop_text(
            secure.tls_port, login + f'tls_ca = "{pki["ca"]}"\ntls_cert = "{pki["client"]}"\n'
            f'tls_key = "{pki["client_key"]}"'), sim, 1200.0)
        assert with_cert["ok"], with_cert

        # The system's CAs do not know the test CA: refused, and the reason says why.
        untrusted = read_meter(coop_text(secure.tls_port, login + "tls = true"), sim, 1500.0)
        assert not untrusted["ok"]
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"] or \
            "certificate verify failed" in untrusted["error"], untrusted
    finally:
        sim.close()


def test_publisher_logs_in_with_the_configured_access(secure: SecureBroker) -> None:
    access = MqttAccess(USER, PASSWORD, tls=True, ca_file=str(secure.pki["ca"]))
    seen = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    access.apply(watcher)
    watcher.on_connect = lambda c, *a: c.subscribe("cw/status")
    watcher.on_message = lambda c, u, m: seen.set() if m.payload == b"online" else None
    watcher.connect("127.0.0.1", secure.tls_port)
    watcher.loop_start()
    publisher = MqttPublisher("127.0.0.1", secure.tls_port, "cw", [("a", "A")], access=access)
    publisher.start()
    try:
        assert seen.wait(10), "the publisher's 'online' never reached the broker"
    finally:
        publisher.stop()
        watcher.disconnect()
        watcher.loop_stop()


SPOOF_COOP = """
[controller]
stale_after_s = 5
[ledger]
settlement_s = 60
[storage]
ledger = "{ledger}"
[mqtt]
port = {port}
[[members]]
id = "a"
name = "Sunny A"
devices = [
  {{ kind = "meter", protocol = "mqtt", family = "tasmota", topic = "meter-a" }},
  {{ kind = "pv", protocol = "mqtt", family = "opendtu", topic = "solar/a" }},
]
[[members]]
id = "b"
name = "Target B"
devices = [{{ kind = "meter", protocol = "mqtt", family = "tasmota", topic = "meter-b" }}]
[[members]]
id = "c"
name = "Neighbour C"
devices = [{{ kind = "meter", protocol = "mqtt", family = "tasmota", topic = "meter-c" }}]
"""


def test_anonymous_999_kw_on_one_meter_is_refused_and_not_booked(
        mosquitto: int, tmp_path: Path) -> None:
    """The issue's measurement: an anonymous client on the broker publishes 999 kW on
    member b's meter topic. Before, b was booked 5,271 Wh served and took 94 % of the
    surplus; now the reading is refused (b's main fuse is 43.5 kW), b is unknown, and
    a's surplus goes to c alone."""
    ledger = tmp_path / "ledger.sqlite"
    config = parse_config(SPOOF_COOP.format(ledger=ledger, port=mosquitto), "coop.toml")
    now = [1_800_000_000.0]  # a settlement boundary: whole intervals from the start
    controller = Controller(config, lambda: now[0])
    a_meter = SimulatedMqttDevice("tasmota", "meter-a", mosquitto)
    a_pv = SimulatedMqttDevice("opendtu", "solar/a", mosquitto)
    c_meter = SimulatedMqttDevice("tasmota", "meter-c", mosquitto)
    attacker = SimulatedMqttDevice("tasmota", "meter-b", mosquitto)  # anonymous, like anyone

    async def run() -> list:
        await controller.poller.start()
        reports = []
        for _ in range(130):
            a_pv.publish(power_w=5000.0, energy_wh=10_000.0)
            a_meter.publish(power_w=-4000.0, import_wh=0.0, export_wh=500.0)  # 1 kW own use
            c_meter.publish(power_w=1500.0, import_wh=900.0, export_wh=0.0)
            attacker.publish(power_w=999_000.0, import_wh=5_000_000.0, export_wh=0.0)
            await asyncio.sleep(0.02)  # the broker delivers to the hub
            now[0] += 1.0
            reports.append(await controller.cycle())
        return reports

    try:
        reports = asyncio.run(run())
        health = {d["name"]: d for d in controller.poller.health()}
    finally:
        controller.close()
        for sim in (a_meter, a_pv, c_meter, attacker):
            sim.close()
    b = health["b/meter"]
    assert b["state"] != "ok"
    assert "implausible" in b["last_error"] and "999000" in b["last_error"]
    assert "max_import_w" in b["last_error"], b["last_error"]
    assert health["a/meter"]["state"] == "ok" and health["c/meter"]["state"] == "ok"
    assert not any(r.image.valid[1] for r in reports)
    reader = LedgerReader(ledger)
    totals = {m: reader.totals(m) for m in ("a", "b", "c")}
    assert totals["a"]["intervals"] >= 2
    served_b = sum(v or 0 for k, v in totals["b"].items() if k.startswith("from_"))
    assert served_b == 0, totals["b"]
    # The surplus went to the neighbour whose reading is plausible.
    assert (totals["c"]["from_peers"] or 0) > 0, totals["c"]
