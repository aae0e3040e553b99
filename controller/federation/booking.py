"""A coop controller's side of the federation: offer each committed interval, book agreements.

When the coop commits a settlement interval, its offer is the interval's
booked export and import (what is left after its own members shared), with
its metered totals (the members' own meter counters, or the booked flow where
a member has none); it is signed, stored and published. When the federation
*agrees* on that interval (never before: see :mod:`.reconcile`), the coop's
``to_federation`` and ``from_federation`` are split among its members by the
coop's own sharing policy and booked on the ledger's writer thread, once
(:mod:`controller.ledger.federation_rows`), with the interval's events: a coop
that equivocated (and the proof), one counted absent, an offer cut to its
metered totals. Those are the same rows in every coop's ledger.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.federation import audit
from controller.federation.allocation import ABSENT, EQUIVOCATED, Settlement
from controller.federation.apportion import apportion, coop_offer
from controller.federation.charter import Charter
from controller.federation.transport import FederationNode
from controller.ledger import CommittedInterval, LedgerWriter
from controller.ledger.federation_rows import grid_flows, write_shares
from controller.ledger.schema import MEMBER_MASK, key_range

log = logging.getLogger(__name__)


def metered_totals(interval: CommittedInterval) -> tuple[int, int]:
    """``(export, import)`` Wh of the coop from its members' meters.

    Per member, its own counter's Wh, or the booked flow where that is larger: a
    counter can cover less than the interval (the harness at noon: 3,758 Wh counted
    against 3,884 booked), and an honest offer must never be flagged for that.
    """
    known = interval.meter_known
    to_grid, from_grid = interval.column("to_grid"), interval.column("from_grid")
    export = np.where(known, np.maximum(interval.column("meter_export"), to_grid), to_grid)
    import_ = np.where(known, np.maximum(interval.column("meter_import"), from_grid), from_grid)
    return int(export.sum()), int(import_.sum())


class CoopFederation:
    """Offers this coop's committed intervals and books what the federation agrees on."""

    def __init__(self, charter: Charter, writer: LedgerWriter, member_ids: tuple[str, ...],
                 step: int, policy: str, key: NDArray[np.float64], tier: NDArray[np.int64],
                 node: FederationNode | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if charter.federation.interval_s != step:
            raise ValueError(f"federation.interval_s = {charter.federation.interval_s}: the "
                             f"ledger settles every {step} s; both must be the same")
        self.charter, self.writer, self.member_ids, self.step = charter, writer, member_ids, step
        self.policy, self.key, self.tier = policy, key, tier
        state = charter.self_.state or Path(writer.path).parent / (
            f"federation-{charter.self_.id}.sqlite")
        # The controller's clock: deadlines run on the time its intervals are booked by.
        self.node = node or FederationNode(charter, state=state, clock=clock or time.time)
        self.node.on_settled = self.settled
        self.booked: list[int] = []

    def start(self) -> None:
        """Book commits the ledger missed, offer intervals not offered yet, then connect."""
        self.node.replay()
        self.resume()
        self.node.start()

    def close(self) -> None:
        """Stop the node (the writer books what was queued when it closes)."""
        self.node.stop()

    def committed(self, interval: CommittedInterval) -> None:
        """Offer a committed interval's leftover export and import to the federation."""
        surplus, deficit = coop_offer(interval.column("to_grid"), interval.column("from_grid"))
        self.node.publish_offer(interval.start_ts, surplus, deficit, *metered_totals(interval))

    def resume(self, now: float | None = None) -> list[int]:
        """Offer again the ledger's intervals still within the deadline and not booked.

        After a power cut the node's store gives back the very offer it sent
        (:meth:`FederationNode.publish_offer` never signs a second one); an
        interval the controller committed but never offered is offered now.
        """
        now = self.node.clock() if now is None else now
        # Only intervals the others still wait for: past the deadline this coop counts as
        # absent anyway, and offering it then would only open old intervals everywhere.
        since = int(now) - self.step - self.charter.terms(int(now)).deadline_s
        try:
            conn = sqlite3.connect(f"file:{self.writer.path}?mode=ro", uri=True)
        except sqlite3.Error:
            return []
        try:
            starts = [r[0] for r in conn.execute(
                "SELECT start_ts FROM intervals WHERE start_ts >= ? AND start_ts NOT IN "
                "(SELECT start_ts FROM federation_interval) ORDER BY start_ts", (since,))]
            numbers = dict(conn.execute("SELECT id, no FROM members"))
            offered = []
            for start in starts:
                flows = _interval_flows(conn, start, self.step, self.member_ids, numbers)
                to_grid, from_grid, meter_export, meter_import = flows
                self.node.publish_offer(start, int(to_grid.sum()), int(from_grid.sum()),
                                        int(meter_export.sum()), int(meter_import.sum()))
                offered.append(start)
        except sqlite3.Error as exc:  # a ledger without the tables yet: nothing to resume
            log.info("federation: nothing to resume (%s)", exc)
            return []
        finally:
            conn.close()
        return offered

    def settled(self, settlement: Settlement) -> None:
        """Queue this coop's share of an agreed interval for the ledger's writer."""
        coop_to, coop_from = settlement.for_coop(self.charter.self_.id)
        events = self._events(settlement)
        self.writer.submit(lambda conn, numbers: self._book(conn, numbers, settlement, coop_to,
                                                            coop_from, events))

    def _events(self, settlement: Settlement) -> list[tuple[str, str, str]]:
        state = self.node.book.intervals.get(settlement.interval)
        proofs = state.proofs if state is not None else {}
        events = []
        for coop, what in sorted(settlement.counted.items()):
            if what == EQUIVOCATED:
                proof = proofs.get(coop)
                detail = {"offers": sorted(p.decode() for p in proof)} if proof else {}
                events.append((coop, "equivocated", json.dumps(detail)))
            elif what == ABSENT:
                events.append((coop, "absent", "{}"))
        for coop, field, excess in settlement.flags:
            events.append((coop, f"excess_{field}", json.dumps({"excess_wh": excess})))
        return events

    def _book(self, conn: sqlite3.Connection, numbers: dict[str, int], settlement: Settlement,
              coop_to: int, coop_from: int, events: list[tuple[str, str, str]]) -> None:
        flows = grid_flows(conn, settlement.interval, self.step, self.member_ids, numbers)
        if flows is None:
            log.error("federation: interval %d agreed but not in this ledger; not booked",
                      settlement.interval)
            return
        shares = apportion(settlement.interval, settlement.digest, self.member_ids, coop_to,
                           coop_from, flows[0], flows[1], self.policy, self.key, self.tier)
        if write_shares(conn, shares, numbers, self.step, events,
                        liberated=self.charter.federation.liberated):
            self.booked.append(settlement.interval)
            for coop, kind, detail in events:
                if kind == "equivocated":
                    audit.record(Path(self.writer.path), "federation.equivocation",
                                 {"interval": settlement.interval, "coop": coop,
                                  "proof": json.loads(detail)})
        else:
            log.info("federation: interval %d was booked already; not again",
                     settlement.interval)


def _interval_flows(conn: sqlite3.Connection, start: int, step: int,
                    member_ids: tuple[str, ...], numbers: dict[str, int]
                    ) -> tuple[NDArray[np.int64], ...]:
    """Members' ``to_grid, from_grid`` and metered export/import (booked flow if unmetered)."""
    lo, hi = key_range(start, start + step, step)
    rows = {k & MEMBER_MASK: (t, f, max(me, t) if me is not None else t,
                              max(mi, f) if mi is not None else f)
            for k, t, f, me, mi in conn.execute(
                "SELECT key, to_grid, from_grid, meter_export, meter_import FROM member_wh "
                "WHERE key >= ? AND key < ?", (lo, hi))}
    table = np.array([rows.get(numbers.get(m, -1), (0, 0, 0, 0)) for m in member_ids],
                     dtype=np.int64).reshape(-1, 4)
    return tuple(table[:, k].copy() for k in range(4))
