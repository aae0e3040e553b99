"""Closed brokers as ``federation bridge-conf --credentials --out conf.d`` writes them.

Two real mosquittos, each started from a Debian-like main file that includes
the generated ``conf.d``: anonymous clients, wrong passwords and writes under
another coop's prefix are refused; the bridge and the coops' nodes still agree.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.cli import main
from controller.federation.transport import FederationNode
from tests.conftest import free_port, wait_for_port
from tests.federation_coops import BASE, wait_until
from tests.federation_helpers import charter_toml, make_charter, make_keys

COOPS = ["coop-a", "coop-b"]
PAIR = "a-and-b-share-this"
#: Debian's /etc/mosquitto/mosquitto.conf, with paths in the test's directory (and ``user root``:
#: started as root, mosquitto would otherwise switch to a user that cannot read it).
DEBIAN_MAIN = """user root
pid_file {dir}/mosquitto.pid
persistence true
persistence_location {dir}/data/
log_dest file {dir}/mosquitto.log
include_dir {dir}/conf.d
"""


@pytest.fixture()
def closed_brokers(tmp_path: Path) -> Iterator[dict]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    ports = {c: free_port() for c in COOPS}
    keys = make_keys(COOPS)
    charters, procs = {}, []
    for coop in COOPS:
        d = tmp_path / coop
        (d / "data").mkdir(parents=True)
        (d / "controller.pw").write_text(f"{coop}-own-password\n")
        charter = make_charter(keys, coop, key_dir=tmp_path, broker=f"127.0.0.1:{ports[coop]}")
        members = tuple(m.model_copy(update={"broker": f"127.0.0.1:{ports[m.id]}"})
                        for m in charter.members)
        own = charter.self_.model_copy(update={"username": coop,
                                               "password_file": d / "controller.pw"})
        charter = charter.model_copy(update={"members": members, "self_": own})
        path = d / "federation.toml"
        path.write_text(charter_toml(charter))
        peer = next(c for c in COOPS if c != coop)
        (d / "credentials.toml").write_text(f'controller = "{coop}-own-password"\n'
                                            f'[peers]\n{peer} = "{PAIR}"\n')
        assert main(["federation", "bridge-conf", str(path), "--credentials",
                     str(d / "credentials.toml"), "--out", str(d / "conf.d")]) == 0
        (d / "mosquitto.conf").write_text(DEBIAN_MAIN.format(dir=d))
        charters[coop] = charter
    for coop in COOPS:
        d = tmp_path / coop
        procs.append(subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        wait_for_port(ports[coop])
    try:
        yield {"ports": ports, "charters": charters, "dir": tmp_path}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def client(port: int, user: str | None, password: str | None,
           seen: list[tuple[str, bytes]] | None = None) -> tuple[mqtt.Client, object]:
    """A connected client (or one the broker refused: its reason code is returned)."""
    done = threading.Event()
    outcome: list[object] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.time_ns()}")
    if user is not None:
        c.username_pw_set(user, password)

    def on_connect(cl, userdata, flags, reason_code, properties=None) -> None:
        outcome.append(reason_code)
        done.set()

    c.on_connect = on_connect
    if seen is not None:
        c.on_message = lambda cl, u, m: seen.append((m.topic, m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(5)
    return c, outcome[0] if outcome else None


def test_closed_brokers_refuse_strangers_and_foreign_prefixes(closed_brokers: dict) -> None:
    ports, d = closed_brokers["ports"], closed_brokers["dir"]
    conf = (d / "coop-a" / "conf.d" / "federation.conf").read_text()
    assert "allow_anonymous false" in conf and "persistence false" not in conf
    assert "remote_username coop-a" in conf and "pid_file" not in conf
    assert PAIR not in (d / "coop-a" / "conf.d" / "federation.passwd").read_text()  # hashed

    anon, code = client(ports["coop-a"], None, None)
    assert code is not None and code.is_failure  # no credentials: refused
    anon.loop_stop()
    wrong, code = client(ports["coop-a"], "coop-a", "guess")
    assert code is not None and code.is_failure
    wrong.loop_stop()

    seen_b: list[tuple[str, bytes]] = []
    watcher, code = client(ports["coop-b"], "coop-b", "coop-b-own-password", seen_b)
    assert not code.is_failure
    watcher.subscribe("federation/#", qos=1)
    seen_a: list[tuple[str, bytes]] = []
    own, code = client(ports["coop-a"], "coop-a", "coop-a-own-password", seen_a)
    assert not code.is_failure
    own.subscribe("federation/#", qos=1)
    time.sleep(1.0)
    # Under its own prefix: delivered, and bridged to coop-b's broker.
    own.publish("federation/coop-a/offers/1", b"mine", qos=1).wait_for_publish(5)
    # Under coop-b's prefix on coop-a's own broker: refused by the ACL.
    own.publish("federation/coop-b/offers/1", b"forged", qos=1).wait_for_publish(5)
    # coop-b's bridge user on coop-a's broker, writing under coop-a's prefix: refused too.
    intruder, code = client(ports["coop-a"], "coop-b", PAIR)
    assert not code.is_failure
    intruder.publish("federation/coop-a/offers/2", b"forged", qos=1).wait_for_publish(5)
    wait_until(lambda: ("federation/coop-a/offers/1", b"mine") in seen_b, 10,
               "the offer bridged to coop-b")
    time.sleep(1.0)
    for seen in (seen_a, seen_b):
        assert all(payload != b"forged" for _, payload in seen), seen
    assert ("federation/coop-a/offers/1", b"mine") in seen_a
    for c in (watcher, own, intruder):
        c.loop_stop()
        c.disconnect()


def test_nodes_agree_over_closed_brokers(closed_brokers: dict) -> None:
    charters = closed_brokers["charters"]
    nodes = {c: FederationNode(charters[c], request_every_s=0.3, tick_s=0.1) for c in COOPS}
    for node in nodes.values():
        node.start()
    try:
        wait_until(lambda: all(n.connected.is_set() for n in nodes.values()), 10, "connected")
        wait_until(lambda: "up" in nodes["coop-a"].bridges.values(), 20, "bridge up")
        nodes["coop-a"].publish_offer(BASE, 700, 0)
        nodes["coop-b"].publish_offer(BASE, 0, 300)
        wait_until(lambda: all(n.book.agreed(BASE) for n in nodes.values()), 20, "agreement")
        settled = nodes["coop-b"].book.intervals[BASE].settlement
        assert settled.for_coop("coop-a") == (300, 0)
    finally:
        for node in nodes.values():
            node.stop()
