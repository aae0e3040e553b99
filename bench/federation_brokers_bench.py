"""The federation on real brokers: 10 coops, each with its own mosquitto, bridged on 127.0.0.1.

Each coop runs what its controller runs for the federation: a ledger (a
:class:`~controller.ledger.LedgerWriter`), a :class:`CoopFederation` and its
node with a store on disk. Per interval every coop commits the interval in
its ledger and offers it at the interval's end; the figure is the time from
that moment to the moment each coop *commits* the interval (identical hashes
from every coop, or the quorum after the deadline), p50 and p99 over every
coop and interval. Bytes per coop per interval are read from each broker's
own counters (``$SYS/broker/bytes/received`` and ``sent``: client and bridge
traffic both). Then one coop vanishes (controller and broker) and the others
settle each interval at the charter's deadline.

The charter says 60 s intervals; the intervals follow each other as soon as
the previous one is agreed (about a second apart), because the latency does not
depend on the gap and 60 s × a dozen intervals would not fit in a session.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

STEP = 60
BASE = 1_800_000_000 // STEP * STEP
MEMBERS = tuple(f"m{j}" for j in range(20))


class RunClock:
    """Wall time as the nodes see it: the current interval ended when the test says so."""

    def __init__(self) -> None:
        self.end, self.at = float(BASE), time.monotonic()

    def interval_ended(self, end: int) -> None:
        self.end, self.at = float(end), time.monotonic()

    def __call__(self) -> float:
        return self.end + (time.monotonic() - self.at)


class BrokerBytes:
    """A broker's own byte counters, read over ``$SYS``."""

    def __init__(self, port: int, name: str) -> None:
        self.values: dict[str, int] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bytes-{name}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("$SYS/broker/bytes/received", 0), ("$SYS/broker/bytes/sent", 0)])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.values[msg.topic.rsplit("/", 1)[1]] = int(msg.payload)

    def total(self) -> int:
        return self.values.get("received", 0) + self.values.get("sent", 0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int) -> None:
    import socket

    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not listen on {port}")


def _commit(writer: object, start: int, rng: np.random.Generator) -> object:
    from controller.ledger import CommittedInterval
    from controller.ledger.accumulator import ROW
    from controller.ledger.schema import INTERVAL_COUNTS, MEMBER_COLUMNS

    n = len(MEMBERS)
    values = np.zeros((len(MEMBER_COLUMNS), n), dtype=np.int64)
    exporting = rng.random(n) < 0.4
    values[ROW["to_grid"]] = rng.integers(0, 300, n) * exporting
    values[ROW["from_grid"]] = rng.integers(0, 300, n) * ~exporting
    counts = dict.fromkeys(INTERVAL_COUNTS, 0) | {"cycles": 1, "covered_s": STEP}
    interval = CommittedInterval(start, start + STEP, MEMBERS, values, np.zeros(n, dtype=bool),
                                 counts, ())
    writer.commit(interval, {})  # type: ignore[attr-defined]
    return interval


def _percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.array(samples)
    return {"n": len(samples), "p50_s": round(float(np.percentile(arr, 50)), 3),
            "p99_s": round(float(np.percentile(arr, 99)), 3),
            "max_s": round(float(arr.max()), 3)}


def run(coops: int = 10, rounds: int = 8, absent_rounds: int = 4,
        deadline_s: int = 5) -> dict[str, object]:
    """Start the brokers and coops, run the intervals, return the JSON-ready report."""
    from controller.federation.booking import CoopFederation
    from controller.federation.bridge import Peer, mosquitto_conf
    from controller.federation.charter import Charter
    from controller.federation.offers import generate_key, private_pem, public_b64
    from controller.federation.transport import FederationNode
    from controller.ledger import LedgerWriter

    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    tmp = Path(tempfile.mkdtemp(prefix="fedbench-"))
    ids = [f"coop-{k:02d}" for k in range(coops)]
    ports = {c: _free_port() for c in ids}
    keys = {c: generate_key() for c in ids}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for c in ids:
        (tmp / c).mkdir()
        (tmp / c / "mosquitto.conf").write_text(mosquitto_conf(
            c, ports[c], [Peer(p, "127.0.0.1", ports[p]) for p in ids if p != c], restart_s=1,
            persistence=False))
        (tmp / c / "key.pem").write_bytes(private_pem(keys[c]))
        procs[c] = subprocess.Popen([binary, "-c", str(tmp / c / "mosquitto.conf")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for c in ids:
        _wait_port(ports[c])
    clock = RunClock()
    committed_at: dict[tuple[str, int], float] = {}
    lock = threading.Lock()
    feds: dict[str, CoopFederation] = {}
    writers: dict[str, LedgerWriter] = {}
    for c in ids:
        charter = Charter.model_validate({
            "federation": {"name": "bench", "rule": "prorata", "interval_s": STEP,
                           "deadline_s": deadline_s},
            "self": {"id": c, "private_key": str(tmp / c / "key.pem"),
                     "broker": f"127.0.0.1:{ports[c]}"},
            "members": [{"id": m, "public_key": public_b64(keys[m]),
                         "expires": "2099-01-01T00:00:00Z", "connection_kw": 500}
                        for m in ids]})
        writers[c] = LedgerWriter(tmp / c / "ledger.sqlite", STEP, [(m, m) for m in MEMBERS])
        node = FederationNode(charter, state=tmp / c / "federation.sqlite", clock=clock,
                              tick_s=0.1, request_every_s=0.5, max_backoff_s=8.0)
        fed = CoopFederation(charter, writers[c], MEMBERS, STEP, "prorata",
                             np.ones(len(MEMBERS)), np.zeros(len(MEMBERS), dtype=np.int64),
                             node=node)
        book = fed.settled

        def settled(settlement, c=c, book=book) -> None:  # type: ignore[no-untyped-def]
            with lock:
                committed_at[(c, settlement.interval)] = time.monotonic()
            book(settlement)

        node.on_settled = settled
        feds[c] = fed
        node.start()
    meters = {c: BrokerBytes(ports[c], c) for c in ids}
    rng = np.random.default_rng(19)
    report: dict[str, object] = {"coops": coops, "charter_interval_s": STEP,
                                 "deadline_s": deadline_s}
    try:
        _wait_bridges(feds, ids)

        def phase(live: list[str], first: int, n: int, limit_s: float) -> dict[str, object]:
            # The brokers' idle traffic ($SYS to our reader, bridge keepalives) is measured
            # first and taken out: what is left is what the federation's intervals cost.
            time.sleep(1.5)  # fresh $SYS byte counters
            idle0, t_idle = {c: meters[c].total() for c in live}, time.monotonic()
            time.sleep(4.0)
            idle_s = time.monotonic() - t_idle
            idle = {c: (meters[c].total() - idle0[c]) / idle_s for c in live}
            before = {c: meters[c].total() for c in live}
            samples, t_phase = [], time.monotonic()
            for k in range(first, first + n):
                interval = BASE + k * STEP
                clock.interval_ended(interval + STEP)
                t0 = time.monotonic()
                for c in live:
                    feds[c].committed(_commit(writers[c], interval, rng))
                deadline = t0 + limit_s
                while time.monotonic() < deadline:
                    with lock:
                        if all((c, interval) in committed_at for c in live):
                            break
                    time.sleep(0.02)
                with lock:
                    done = {c: committed_at.get((c, interval)) for c in live}
                samples += [t - t0 if t is not None else float("inf") for t in done.values()]
            time.sleep(1.5)
            wall = time.monotonic() - t_phase
            spent = {c: meters[c].total() - before[c] - idle[c] * wall for c in live}
            return {"intervals": n, "wall_s": round(wall, 1),
                    "agreement": _percentiles(samples),
                    "bytes_per_coop_per_interval": int(np.median(list(spent.values())) / n),
                    "bytes_per_coop_per_interval_max": int(max(spent.values()) / n),
                    "idle_bytes_per_s_per_broker": int(np.median(list(idle.values())))}

        report["all_present"] = phase(ids, 0, rounds, 30.0)
        report["all_present"]["target_p99_s"] = 10.0  # type: ignore[index]
        gone = ids[-1]
        feds[gone].close()
        procs[gone].kill()
        meters[gone].close()
        live = ids[:-1]
        absent = phase(live, rounds, absent_rounds, deadline_s + 30.0)
        absent["absent"] = gone
        absent["target"] = f"settled at the deadline ({deadline_s} s after the interval end)"
        report["one_absent"] = absent
        states = [feds[c].node.status() for c in live]
        report["disagreements"] = sum(len(s["disagreements"]) for s in states)
        report["requests_out_per_coop"] = int(np.median([s["requests_out"] for s in states]))
        booked = {c: _booked(writers[c]) for c in live}
        report["identical_ledgers"] = len({tuple(b) for b in booked.values()}) == 1
    finally:
        for c in ids:
            if c in meters and c != ids[-1]:
                meters[c].close()
            feds[c].close()
            writers[c].close()
        for proc in procs.values():
            proc.kill()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _wait_bridges(feds: dict, ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        up = sum(list(feds[c].node.bridges.values()).count("up") for c in ids)
        if up >= len(ids) * (len(ids) - 1) // 2 and all(
                feds[c].node.connected.is_set() for c in ids):
            return
        time.sleep(0.2)
    raise TimeoutError("bridges did not come up")


def _booked(writer: object) -> list[tuple]:
    import sqlite3

    from controller.ledger.federation_rows import booked_intervals

    assert writer.flush()  # type: ignore[attr-defined]
    conn = sqlite3.connect(writer.path)  # type: ignore[attr-defined]
    try:
        return [(r[0], r[1]) for r in booked_intervals(conn)]
    finally:
        conn.close()
