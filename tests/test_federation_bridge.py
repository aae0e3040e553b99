"""Three coops, three bridged mosquitto brokers: a bridge is cut, restored, and all agree."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.federation.allocation import Settlement
from controller.federation.booking import CoopFederation
from controller.federation.bridge import connection_name
from controller.federation.offers import Offer, generate_key
from controller.federation.transport import FederationNode
from controller.ledger import LedgerReader, LedgerWriter
from controller.ledger.federation_rows import booked_intervals
from tests.federation_brokers import CoopBroker, bridged_brokers
from tests.federation_helpers import commit_interval, make_charter, make_keys, signed_offer

COOPS = ["coop-a", "coop-b", "coop-c"]
STEP = 900
BASE = 1_800_000_000 // STEP * STEP


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


MEMBERS = ("m1", "m2", "m3", "m4")


class Coop:
    """A coop: its ledger, its federation node, and what the node settled."""

    def __init__(self, node: FederationNode, ledger: Path) -> None:
        self.node = node
        self.ledger = ledger
        self.writer = LedgerWriter(ledger, STEP, [(m, m) for m in MEMBERS])
        self.fed = CoopFederation(node.charter, self.writer, MEMBERS, STEP, "equal",
                                  np.ones(len(MEMBERS)), np.zeros(len(MEMBERS), dtype=np.int64),
                                  node=node)
        self.booked: list[Settlement] = []

        def settled(settlement: Settlement) -> None:
            self.booked.append(settlement)
            self.fed.settled(settlement)

        node.on_settled = settled

    def close(self) -> None:
        self.node.stop()
        self.writer.close()


@pytest.fixture()
def federation(tmp_path: Path) -> Iterator[tuple[dict[str, CoopBroker], dict[str, Coop], dict]]:
    brokers = bridged_brokers(COOPS, tmp_path)
    keys = make_keys(COOPS)
    coops = {}
    for c in COOPS:
        charter = make_charter(keys, c, rule="prorata", key_dir=tmp_path,
                               broker=f"127.0.0.1:{brokers[c].port}",
                               state=tmp_path / f"{c}-state.sqlite")
        coops[c] = Coop(FederationNode(charter, request_every_s=0.5, tick_s=0.1,
                                       state=charter.self_.state),
                        tmp_path / f"{c}.sqlite")
        coops[c].node.start()
    try:
        yield brokers, coops, keys
    finally:
        for coop in coops.values():
            coop.close()
        for broker in brokers.values():
            broker.stop()


def bridges_up(coop: Coop, n: int) -> bool:
    states = coop.node.status()["bridges"]
    return len([s for s in states.values() if s == "up"]) >= n


def publish_round(coops: dict[str, Coop], interval: int, rnd: random.Random) -> None:
    """Each coop commits the interval in its ledger, then offers what is left of it."""
    for coop in coops.values():
        to_grid = [rnd.choice([0, rnd.randint(0, 1500)]) for _ in MEMBERS]
        from_grid = [0 if t else rnd.randint(0, 1500) for t in to_grid]
        coop.fed.committed(commit_interval(coop.writer, MEMBERS, interval, STEP, to_grid,
                                           from_grid))


def all_agree(coops: dict[str, Coop], intervals: list[int]) -> bool:
    """Every coop committed every interval and handed it to its ledger."""
    return all(c.node.book.agreed(i) and i in {s.interval for s in c.booked}
               for c in coops.values() for i in intervals)


def test_bridge_cut_and_restored_every_coop_agrees(federation) -> None:
    brokers, coops, keys = federation
    rnd = random.Random(12)
    name_ac = connection_name("coop-a", "coop-c")
    # coop-a opens two bridges, coop-b one; each sees the state of those it knows of.
    wait_until(lambda: bridges_up(coops["coop-a"], 2) and coops["coop-c"].node.connected.is_set(),
               20, "bridges up")
    before = [BASE + k * STEP for k in range(3)]
    for interval in before:
        publish_round(coops, interval, rnd)
    wait_until(lambda: all_agree(coops, before), 20, "agreement before the cut")

    brokers["coop-c"].stop()  # the link to coop-c is cut: its broker is gone
    wait_until(lambda: coops["coop-a"].node.status()["bridges"].get(name_ac) == "down", 20,
               "coop-a to see its bridge to coop-c down")
    during = [BASE + k * STEP for k in range(3, 6)]
    for interval in during:
        publish_round(coops, interval, rnd)  # coop-c's node keeps its offers while away
    time.sleep(2.0)
    for coop in ("coop-a", "coop-b"):
        waiting = coops[coop].node.status()["waiting"]
        assert all(waiting.get(i) == ["coop-c"] for i in during), waiting
        assert not any(coops[coop].node.book.agreed(i) for i in during)

    brokers["coop-c"].start()  # restored on the same port; the bridges reconnect
    wait_until(lambda: all_agree(coops, before + during), 40, "agreement after the restore")

    # A coop that missed a whole interval gets it by asking (and by the retained offer).
    for interval in before + during:
        digests = {c.node.book.intervals[interval].settlement.digest for c in coops.values()}
        assert len(digests) == 1
    for name, coop in coops.items():
        intervals = [s.interval for s in coop.booked]
        assert sorted(intervals) == before + during, (name, intervals)  # each booked once
        assert coop.node.status()["disagreements"] == []
    for interval in before + during:
        settled = coops["coop-a"].node.book.intervals[interval].settlement
        to_sum = sum(c.node.book.intervals[interval].settlement.for_coop(n)[0]
                     for n, c in coops.items())
        from_sum = sum(c.node.book.intervals[interval].settlement.for_coop(n)[1]
                       for n, c in coops.items())
        assert to_sum == from_sum == int(settled.to_federation.sum())
    assert coops["coop-a"].node.status()["last_agreed"] == during[-1]
    # The ledgers: each interval booked once per coop, and the federation's books balance.
    booked = {}
    for name, coop in coops.items():
        assert coop.writer.flush()
        conn = sqlite3.connect(coop.ledger)
        rows = booked_intervals(conn)
        assert [r[0] for r in rows] == before + during, name
        booked[name] = {r[0]: r for r in rows}
        per_member = LedgerReader(coop.ledger).federation_by_member()
        assert sum(v["to_federation"] for v in per_member.values()) == sum(r[2] for r in rows)
        assert sum(v["from_federation"] for v in per_member.values()) == sum(r[3] for r in rows)
        conn.close()
    for interval in before + during:
        assert len({booked[n][interval][1] for n in coops}) == 1  # the agreed hash
        assert (sum(booked[n][interval][2] for n in coops)
                == sum(booked[n][interval][3] for n in coops))
    wait_until(lambda: coops["coop-a"].node.status()["bridges"].get(name_ac) == "up", 20,
               "coop-a to see its bridge to coop-c up again")


def test_forged_offer_over_the_wire_is_rejected(federation) -> None:
    brokers, coops, keys = federation
    wait_until(lambda: bridges_up(coops["coop-a"], 2) and coops["coop-c"].node.connected.is_set(),
               20, "bridges up")
    interval = BASE
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger")
    forger.connect("127.0.0.1", brokers["coop-b"].port)
    forger.loop_start()
    # coop-b's name, a key that is not coop-b's: published on coop-b's broker, bridged out.
    forged = signed_offer(generate_key(), Offer("coop-b", interval, 999_999, 0, 1))
    forger.publish(f"federation/coop-b/offers/{interval}", forged, qos=1).wait_for_publish(5)
    unsigned = json.dumps({"body": Offer("coop-b", interval, 5, 0, 2).body()}).encode()
    forger.publish(f"federation/coop-b/offers/{interval}", unsigned, qos=1).wait_for_publish(5)
    # and a genuine offer of coop-a replayed under coop-b's prefix
    genuine = signed_offer(keys["coop-a"], Offer("coop-a", interval, 7, 0, 3, 7, 0))
    forger.publish(f"federation/coop-b/offers/{interval}", genuine, qos=1).wait_for_publish(5)
    for name in COOPS:
        wait_until(lambda n=name: len(coops[n].node.book.rejected) >= 3, 10,
                   f"{name} to reject the forged offers")
        rejected = " ".join(coops[name].node.book.rejected)
        assert "bad signature" in rejected and "unsigned" in rejected
        assert "another coop's prefix" in rejected
    forger.loop_stop()
    forger.disconnect()
    rnd = random.Random(3)
    publish_round(coops, interval, rnd)
    wait_until(lambda: all_agree(coops, [interval]), 20, "agreement despite the forgery")
    offer_b = coops["coop-a"].node.book.intervals[interval].offers["coop-b"]
    assert offer_b.surplus_wh != 999_999


def test_lost_offer_is_asked_for_again(federation) -> None:
    brokers, coops, keys = federation
    wait_until(lambda: bridges_up(coops["coop-a"], 2) and coops["coop-c"].node.connected.is_set(),
               20, "bridges up")
    node_b = coops["coop-b"].node
    real_publish = node_b._publish
    lost: list[str] = []

    def lose_first_offer(topic: str, payload: bytes, retain: bool) -> None:
        # As a bridge past max_queued_messages would: the first offer never leaves.
        if "/offers/" in topic and not lost:
            lost.append(topic)
            return
        real_publish(topic, payload, retain)

    node_b._publish = lose_first_offer  # type: ignore[method-assign]
    rnd = random.Random(5)
    publish_round(coops, BASE, rnd)
    wait_until(lambda: all_agree(coops, [BASE]), 20, "agreement after the re-request")
    assert lost == [f"federation/coop-b/offers/{BASE}"]
    assert all(len(c.booked) == 1 for c in coops.values())


def test_status_command_shows_peers_bridges_and_agreement(federation, tmp_path: Path,
                                                          capsys) -> None:
    from controller.cli import main
    from tests.federation_helpers import charter_toml

    brokers, coops, keys = federation
    wait_until(lambda: bridges_up(coops["coop-a"], 2) and coops["coop-c"].node.connected.is_set(),
               20, "bridges up")
    publish_round(coops, BASE, random.Random(8))
    wait_until(lambda: all_agree(coops, [BASE]), 20, "agreement")
    path = tmp_path / "coop-a.toml"
    path.write_text(charter_toml(coops["coop-a"].node.charter))
    brokers["coop-c"].stop()
    name_ac = connection_name("coop-a", "coop-c")
    wait_until(lambda: coops["coop-a"].node.status()["bridges"].get(name_ac) == "down", 20,
               "the bridge to coop-c down")
    assert main(["federation", "status", str(path), "--json", "--wait", "1.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in report["peers"]] == COOPS
    assert report["bridges"][name_ac] == "down"
    assert report["bridges"][connection_name("coop-a", "coop-b")] == "up"
    assert report["last_agreed"] == BASE
    assert report["disagreements"] == []
    assert main(["federation", "status", str(path), "--wait", "1"]) == 0
    text = capsys.readouterr().out
    assert f"last agreed interval: {BASE}" in text and "down" in text


def test_one_bridge_removed_offers_are_relayed_by_the_third_coop(federation) -> None:
    from controller.federation.bridge import Peer

    brokers, coops, keys = federation
    wait_until(lambda: bridges_up(coops["coop-a"], 2) and coops["coop-c"].node.connected.is_set(),
               20, "bridges up")
    peers = {c: Peer(c, "127.0.0.1", b.port) for c, b in brokers.items()}
    # coop-a's broker loses its bridge to coop-c (coop-a opens it): restarted without it.
    brokers["coop-a"].stop()
    brokers["coop-a"].configure([peers["coop-b"]])
    brokers["coop-a"].start()
    wait_until(lambda: coops["coop-a"].node.connected.is_set(), 20, "coop-a reconnected")
    wait_until(lambda: bridges_up(coops["coop-a"], 1), 20, "coop-a's bridge to coop-b")
    rnd = random.Random(21)
    intervals = [BASE + k * STEP for k in range(2)]
    for interval in intervals:
        publish_round(coops, interval, rnd)
    # coop-a and coop-c never hear each other directly: coop-b relays their offers.
    wait_until(lambda: all(c.node.book.intervals.get(i) is not None
                           and c.node.book.intervals[i].settlement is not None
                           for c in coops.values() for i in intervals), 30,
               "every coop to settle through the relay")
    for interval in intervals:
        assert len({c.node.book.intervals[interval].settlement.digest
                    for c in coops.values()}) == 1
    assert not coops["coop-a"].node.book.agreed(intervals[0])  # coop-c's hash unseen yet
    assert coops["coop-a"].node.relayed_in >= 2 and coops["coop-c"].node.relayed_in >= 2

    brokers["coop-a"].stop()  # the bridge is restored
    brokers["coop-a"].configure([peers["coop-b"], peers["coop-c"]])
    brokers["coop-a"].start()
    wait_until(lambda: all_agree(coops, intervals), 30, "agreement once the bridge is back")
    for name, coop in coops.items():
        assert sorted(s.interval for s in coop.booked) == intervals, name
        assert coop.node.status()["disagreements"] == []
