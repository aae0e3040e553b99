"""A coop controller's side of the federation: offer each committed interval, book settlements.

When the coop commits a settlement interval, its offer is the interval's
booked export and import (what is left after its own members shared); it
is signed and published. When the federation settles that interval, the
coop's ``to_federation`` and ``from_federation`` are split among its members
by the coop's own sharing policy and booked on the ledger's writer thread,
once (:mod:`controller.ledger.federation_rows`).
"""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
from numpy.typing import NDArray

from controller.federation.allocation import Settlement
from controller.federation.apportion import apportion, coop_offer
from controller.federation.charter import Charter
from controller.federation.transport import FederationNode
from controller.ledger import CommittedInterval, LedgerWriter
from controller.ledger.federation_rows import grid_flows, write_shares

log = logging.getLogger(__name__)


class CoopFederation:
    """Offers this coop's committed intervals and books what the federation settles."""

    def __init__(self, charter: Charter, writer: LedgerWriter, member_ids: tuple[str, ...],
                 step: int, policy: str, key: NDArray[np.float64], tier: NDArray[np.int64],
                 node: FederationNode | None = None) -> None:
        if charter.federation.interval_s != step:
            raise ValueError(f"federation.interval_s = {charter.federation.interval_s}: the "
                             f"ledger settles every {step} s; both must be the same")
        self.charter, self.writer, self.member_ids, self.step = charter, writer, member_ids, step
        self.policy, self.key, self.tier = policy, key, tier
        self.node = node or FederationNode(charter)
        self.node.on_settled = self.settled
        self.booked: list[int] = []

    def start(self) -> None:
        """Connect to the coop's broker and start reconciling."""
        self.node.start()

    def close(self) -> None:
        """Stop the node (the writer books what was queued when it closes)."""
        self.node.stop()

    def committed(self, interval: CommittedInterval) -> None:
        """Offer a committed interval's leftover export and import to the federation."""
        surplus, deficit = coop_offer(interval.column("to_grid"), interval.column("from_grid"))
        self.node.publish_offer(interval.start_ts, surplus, deficit)

    def settled(self, settlement: Settlement) -> None:
        """Queue this coop's share of a settled interval for the ledger's writer."""
        coop_to, coop_from = settlement.for_coop(self.charter.self_.id)
        self.writer.submit(lambda conn, numbers: self._book(conn, numbers, settlement, coop_to,
                                                            coop_from))

    def _book(self, conn: sqlite3.Connection, numbers: dict[str, int], settlement: Settlement,
              coop_to: int, coop_from: int) -> None:
        flows = grid_flows(conn, settlement.interval, self.step, self.member_ids, numbers)
        if flows is None:
            log.error("federation: interval %d settled but not in this ledger; not booked",
                      settlement.interval)
            return
        shares = apportion(settlement.interval, settlement.digest, self.member_ids, coop_to,
                           coop_from, flows[0], flows[1], self.policy, self.key, self.tier)
        if write_shares(conn, shares, numbers, self.step):
            self.booked.append(settlement.interval)
        else:
            log.warning("federation: interval %d was booked already; not again",
                        settlement.interval)
