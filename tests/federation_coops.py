"""Coops for federation tests on real bridged mosquittos: a ledger, a node, a store, a clock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from controller.federation.allocation import Settlement
from controller.federation.booking import CoopFederation
from controller.federation.charter import Charter
from controller.federation.transport import FederationNode
from controller.ledger import LedgerWriter
from controller.ledger.federation_rows import booked_intervals, events

STEP = 900
BASE = 1_800_000_000 // STEP * STEP
MEMBERS = ("m1", "m2", "m3", "m4")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Clock:
    """Wall time the test moves by hand (deadlines are measured against it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Coop:
    """A coop: its ledger, its federation node (with a store on disk), what it booked."""

    def __init__(self, charter: Charter, directory: Path, clock: Clock) -> None:
        self.charter, self.dir, self.clock = charter, directory, clock
        self.ledger = directory / f"{charter.self_.id}.sqlite"
        self.state = directory / f"{charter.self_.id}-federation.sqlite"
        self.writer = LedgerWriter(self.ledger, STEP, [(m, m) for m in MEMBERS])
        self.node = FederationNode(charter, request_every_s=0.3, tick_s=0.1, state=self.state,
                                   clock=clock, max_backoff_s=4.0)
        self.fed = CoopFederation(charter, self.writer, MEMBERS, STEP, "equal",
                                  np.ones(len(MEMBERS)), np.zeros(len(MEMBERS), dtype=np.int64),
                                  node=self.node)
        self.booked: list[Settlement] = []
        fed_settled = self.fed.settled

        def settled(settlement: Settlement) -> None:
            fed_settled(settlement)
            self.booked.append(settlement)

        self.node.on_settled = settled

    def start(self) -> None:
        """Book what the store holds, offer what the ledger holds unbooked, connect."""
        self.fed.start()

    def close(self) -> None:
        """Stop the node and the ledger writer (as a clean shutdown would)."""
        self.node.stop()
        self.writer.close()

    def ledger_rows(self) -> tuple[list[tuple], list[tuple]]:
        """The federation's intervals and events as booked in this coop's ledger."""
        assert self.writer.flush()
        conn = sqlite3.connect(self.ledger)
        try:
            return booked_intervals(conn), events(conn)
        finally:
            conn.close()

    def agreed(self, intervals: list[int]) -> bool:
        """Committed and handed to the ledger: every interval."""
        done = {s.interval for s in self.booked}
        return all(self.node.book.agreed(i) and i in done for i in intervals)


def identical_ledgers(coops: list[Coop], intervals: list[int]) -> list[tuple]:
    """Assert the coops booked the same intervals, hashes and events; Σ to = Σ from each."""
    rows = {}
    for c in coops:
        intervals_, events_ = c.ledger_rows()
        rows[c.charter.self_.id] = ([r for r in intervals_ if r[0] in intervals],
                                    [e for e in events_ if e[0] in intervals])
    booked = {name: {r[0]: r for r in intervals_} for name, (intervals_, _) in rows.items()}
    first = next(iter(rows.values()))
    for name, (intervals_, events_) in rows.items():
        assert [r[0] for r in intervals_] == intervals, name
        assert events_ == first[1], name  # the same events in every ledger
    for interval in intervals:
        assert len({booked[n][interval][1] for n in booked}) == 1  # one agreed hash
        assert (sum(booked[n][interval][2] for n in booked)
                == sum(booked[n][interval][3] for n in booked))  # Σ to = Σ from
    return first[1]
