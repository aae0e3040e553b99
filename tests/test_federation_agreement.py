"""Agree, then book: a coop that lies, one that vanishes, one that loses power, on real brokers.

Three coops, each with its own mosquitto, bridged as ``federation bridge-conf``
writes it. In every case every honest coop's ledger ends identical (same
intervals, same hash, same events) and Σ to_federation = Σ from_federation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from controller.federation.offers import Offer
from tests.federation_brokers import CoopBroker, bridged_brokers
from tests.federation_coops import (
    BASE,
    MEMBERS,
    STEP,
    Clock,
    Coop,
    identical_ledgers,
    wait_until,
)
from tests.federation_helpers import commit_interval, make_charter, make_keys, signed_offer

COOPS = ["coop-a", "coop-b", "coop-c"]
DEADLINE_S = 5
#: Each coop's members' (to_grid, from_grid) per interval: coop-a exports, b and c import.
FLOWS = {"coop-a": ([900, 600, 0, 300], [0, 0, 0, 0]),
         "coop-b": ([0, 0, 0, 0], [400, 300, 0, 100]),
         "coop-c": ([0, 0, 0, 0], [500, 200, 200, 100])}


class Federation:
    """Brokers, coops and the tools to misbehave with."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.brokers: dict[str, CoopBroker] = bridged_brokers(COOPS, tmp_path)
        self.keys = make_keys(COOPS)
        self.clock = Clock(BASE + STEP + 1.0)  # the first interval has just ended
        self.coops = {c: self.make(c) for c in COOPS}

    def make(self, coop: str) -> Coop:
        charter = make_charter(self.keys, coop, key_dir=self.tmp,
                               broker=f"127.0.0.1:{self.brokers[coop].port}",
                               deadline_s=DEADLINE_S)
        return Coop(charter, self.tmp / coop, self.clock)

    def commit(self, coop: str, interval: int, offer: bool = True) -> None:
        """``coop`` commits ``interval`` in its ledger and (unless told not to) offers it."""
        to_grid, from_grid = FLOWS[coop]
        committed = commit_interval(self.coops[coop].writer, MEMBERS, interval, STEP, to_grid,
                                    from_grid)
        if offer:
            self.coops[coop].fed.committed(committed)

    def inject(self, broker: str, topic: str, payload: bytes) -> None:
        """Publish (retained) straight onto one coop's broker, as a client of it could."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"inject-{time.time_ns()}")
        client.connect("127.0.0.1", self.brokers[broker].port)
        client.loop_start()
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()

    def ready(self, coops: list[str]) -> None:
        wait_until(lambda: all(self.coops[c].node.connected.is_set() for c in coops), 20,
                   "nodes connected")
        wait_until(lambda: len([s for s in self.coops["coop-a"].node.bridges.values()
                                if s == "up"]) >= 2, 20, "coop-a's bridges up")
        wait_until(lambda: "up" in self.coops["coop-b"].node.bridges.values(), 20,
                   "coop-b's bridge up")

    def close(self) -> None:
        for coop in self.coops.values():
            coop.close()
        for broker in self.brokers.values():
            broker.stop()


@pytest.fixture()
def fed(tmp_path: Path) -> Iterator[Federation]:
    federation = Federation(tmp_path)
    try:
        yield federation
    finally:
        federation.close()


def test_equivocating_coop_counts_zero_in_every_ledger(fed: Federation) -> None:
    for coop in fed.coops.values():
        coop.start()
    fed.ready(COOPS)
    # A second offer signed with coop-c's key, onto coop-a's broker only (as in the field):
    # coop-b never receives it from its broker, coop-a sees both.
    second = signed_offer(fed.keys["coop-c"], Offer("coop-c", BASE, 0, 9000, 1, 0, 9000))
    fed.inject("coop-a", f"federation/coop-c/offers/{BASE}", second)
    wait_until(lambda: "coop-c" in fed.coops["coop-a"].node.book.intervals.get(
        BASE, None).offers if BASE in fed.coops["coop-a"].node.book.intervals else False,
        10, "coop-a to hold the injected offer")
    for coop in COOPS:
        fed.commit(coop, BASE)
    honest = [fed.coops["coop-a"], fed.coops["coop-b"]]
    wait_until(lambda: all(c.agreed([BASE]) for c in fed.coops.values()), 30, "agreement")
    events = identical_ledgers(list(fed.coops.values()), [BASE])
    settled = honest[1].booked[0]
    assert settled.counted["coop-c"] == "equivocated"
    assert settled.for_coop("coop-c") == (0, 0)
    # coop-a sent 1800 Wh; coop-b needed 800: coop-b got all it needed, coop-c nothing.
    assert settled.for_coop("coop-a") == (800, 0) and settled.for_coop("coop-b") == (0, 800)
    (event,) = events
    assert event[:3] == (BASE, "coop-c", "equivocated")
    proof = json.loads(event[3])["offers"]
    assert len(proof) == 2 and second.decode() in proof  # the proof itself, in every ledger
    assert fed.coops["coop-b"].node.status()["equivocations"] == [
        {"interval": BASE, "coop": "coop-c"}]


def test_split_equivocation_found_through_the_results(fed: Federation) -> None:
    """coop-c (its controller gone rogue) sends one offer to coop-a, another to coop-b."""
    for coop in ("coop-a", "coop-b"):
        fed.coops[coop].start()
    fed.ready(["coop-a", "coop-b"])
    one = signed_offer(fed.keys["coop-c"], Offer("coop-c", BASE, 0, 900, 1, 0, 900))
    two = signed_offer(fed.keys["coop-c"], Offer("coop-c", BASE, 0, 9000, 2, 0, 9000))
    fed.inject("coop-a", f"federation/coop-c/offers/{BASE}", one)
    fed.inject("coop-b", f"federation/coop-c/offers/{BASE}", two)
    for coop in ("coop-a", "coop-b"):
        fed.commit(coop, BASE)
    honest = [fed.coops["coop-a"], fed.coops["coop-b"]]
    # Neither saw both: their results counted different offers of coop-c, each asked for
    # coop-c's offer, the other relayed its copy, and both now hold the proof.
    wait_until(lambda: all(c.agreed([BASE]) for c in honest), 30, "agreement")
    identical_ledgers(honest, [BASE])
    for coop in honest:
        assert coop.booked[0].counted["coop-c"] == "equivocated"
        assert coop.booked[0].for_coop("coop-b") == (0, 800)
    # coop-c never agreed (it published no result): the honest ones did not wait for it.
    assert fed.clock.now < BASE + STEP + DEADLINE_S


def test_lying_coop_above_its_cap_is_refused_and_above_its_meters_flagged(
        fed: Federation) -> None:
    for coop in fed.coops.values():
        coop.start()
    fed.ready(COOPS)
    # 2e9 Wh of "deficit" signed with coop-c's real key: above its 40 kW × 900 s cap.
    huge = signed_offer(fed.keys["coop-c"], Offer("coop-c", BASE, 0, 2_000_000_000, 1, 0,
                                                  2_000_000_000))
    fed.inject("coop-c", f"federation/coop-c/offers/{BASE}", huge)
    for name in COOPS:
        wait_until(lambda n=name: any("cap of 10000 Wh" in r
                                      for r in fed.coops[n].node.book.rejected), 10,
                   f"{name} to refuse the offer above the cap")
    # Within the cap, but above its own metered import (1000 Wh): cut to it and flagged.
    fed.commit("coop-a", BASE)
    fed.commit("coop-b", BASE)
    fed.commit("coop-c", BASE, offer=False)
    fed.coops["coop-c"].node.publish_offer(BASE, 0, 9000, 0, 1000)
    wait_until(lambda: all(c.agreed([BASE]) for c in fed.coops.values()), 30, "agreement")
    events = identical_ledgers(list(fed.coops.values()), [BASE])
    assert events == [(BASE, "coop-c", "excess_deficit_wh", json.dumps({"excess_wh": 8000}))]
    settled = fed.coops["coop-a"].booked[0]
    # 1800 Wh over deficits 800 and 1000 (not 9000): pro rata, whole Wh.
    assert settled.for_coop("coop-b") == (0, 800) and settled.for_coop("coop-c") == (0, 1000)


def test_coop_and_its_broker_lose_power_together(fed: Federation) -> None:
    for coop in fed.coops.values():
        coop.start()
    fed.ready(COOPS)
    c = fed.coops["coop-c"]
    fed.commit("coop-c", BASE)  # coop-c's offer goes out first
    wait_until(lambda: all(BASE in fed.coops[n].node.book.intervals
                           and "coop-c" in fed.coops[n].node.book.intervals[BASE].offers
                           for n in ("coop-a", "coop-b")), 20, "coop-c's offer out")
    # The power cut: coop-c's controller and its broker (no persistence) die together,
    # before coop-c heard the others' offers.
    fed.brokers["coop-c"].stop()
    c.node._client.disconnect()  # nothing more leaves or arrives
    c.node._stop.set()
    c.writer.close()
    assert not c.node.book.agreed(BASE)
    fed.commit("coop-a", BASE)
    fed.commit("coop-b", BASE)
    fed.commit("coop-a", BASE + STEP)  # the others carry on meanwhile
    fed.commit("coop-b", BASE + STEP)
    time.sleep(1.0)
    assert not any(fed.coops[n].node.book.agreed(BASE) for n in ("coop-a", "coop-b"))

    fed.brokers["coop-c"].start()  # power back: an empty broker, the same disks
    restarted = fed.make("coop-c")
    fed.coops["coop-c"] = restarted
    # Its controller commits the next interval after the restart, as the cycle would.
    restarted.start()
    fed.commit("coop-c", BASE + STEP)
    intervals = [BASE, BASE + STEP]
    wait_until(lambda: all(x.agreed(intervals) for x in fed.coops.values()), 40,
               "every coop to settle both intervals")
    identical_ledgers(list(fed.coops.values()), intervals)
    # Its offer came back from its store (the very same), not a second one.
    assert fed.coops["coop-a"].node.status()["equivocations"] == []
    # Once everyone agreed, the retained offers and results are cleared on every broker.
    wait_until(lambda: retained(fed, "coop-b") == [], 20, "retained messages cleared")


def retained(fed: Federation, broker: str) -> list[str]:
    """Topics with a retained federation message on one broker."""
    seen: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"look-{time.time_ns()}")
    client.on_message = lambda c, u, m: seen.append(m.topic) if m.retain and m.payload else None
    client.connect("127.0.0.1", fed.brokers[broker].port)
    client.subscribe("federation/#", qos=1)
    client.loop_start()
    time.sleep(0.8)
    client.loop_stop()
    client.disconnect()
    return seen


def test_vanished_coop_others_settle_at_the_deadline(fed: Federation) -> None:
    for coop in ("coop-a", "coop-b"):
        fed.coops[coop].start()
    fed.ready(["coop-a", "coop-b"])
    fed.brokers["coop-c"].stop()  # coop-c vanishes, broker and all
    intervals = [BASE, BASE + STEP]
    fed.clock.now = BASE + STEP + 1  # within both deadlines (the clock is the test's)
    for interval in intervals:
        fed.commit("coop-a", interval)
        fed.commit("coop-b", interval)
    a, b = fed.coops["coop-a"], fed.coops["coop-b"]
    requests_before = a.node.requests_out
    time.sleep(4.0)
    assert not a.node.book.agreed(BASE) and not b.node.book.agreed(BASE)
    # One batched request per round for both intervals, backing off: not one per interval
    # per second (the field saw 9 to 96 a second).
    sent = a.node.requests_out - requests_before
    assert 1 <= sent <= 6, sent
    fed.clock.now = BASE + 2 * STEP + DEADLINE_S  # the deadline of the second interval
    moved = time.monotonic()
    wait_until(lambda: a.agreed(intervals) and b.agreed(intervals), 10, "settled at the deadline")
    settle_s = time.monotonic() - moved
    events = identical_ledgers([a, b], intervals)
    assert events == [(i, "coop-c", "absent", "{}") for i in intervals]
    assert a.booked[0].for_coop("coop-b") == (0, 800)
    assert settle_s < 5.0, settle_s

    # coop-c comes back late and offers: nothing reopens, nothing is booked twice.
    fed.brokers["coop-c"].start()
    late = fed.coops["coop-c"]
    late.start()
    wait_until(lambda: late.node.connected.is_set(), 20, "coop-c back")
    fed.commit("coop-c", BASE)
    time.sleep(2.0)
    identical_ledgers([a, b], intervals)
    assert len(a.booked) == len(b.booked) == 2
    # coop-c, told by the others' results that it counted as absent, settles the same way.
    wait_until(lambda: late.agreed([BASE]), 30, "coop-c to settle what the others settled")
    identical_ledgers([a, b, late], [BASE])
