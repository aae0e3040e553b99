"""Asking for what is missing and answering peers who ask: the node's request side.

One signed request per round, batched over every open interval and every
coop that is due; each coop asked about backs off on its own; nothing is
asked within ``grace_s`` of an interval opening (or of our result, for the
peers' results), since offers and results normally arrive by themselves. An
answer serves every asker: one per (interval, coop) per ``request_every_s``.
Mixed into :class:`~controller.federation.transport.FederationNode`, whose
state it uses.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from controller.federation.allocation import ABSENT, EQUIVOCATED
from controller.federation.offers import Rejected, sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from controller.federation.reconcile import Reconciler

#: A request repeated this many times is answered by any peer holding the offer.
RELAY_FROM_ATTEMPT = 2


class Asking:
    """The request side of a federation node (see the module's docstring)."""

    me: str
    key: Ed25519PrivateKey
    book: Reconciler
    request_every_s: float
    max_backoff_s: float
    grace_s: float
    requests_out: int
    _lock: threading.RLock
    _opened: dict[int, float]
    _settled_at: dict[int, float]
    _answered: dict[tuple[int, str, bool], float]
    _asked: dict[str, tuple[float, int, tuple[int, ...]]]
    _results: dict[int, bytes]

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        raise NotImplementedError

    def _publish_proof(self, accused: str, interval: int, proof: tuple[bytes, bytes]) -> None:
        raise NotImplementedError

    def _next_seq(self) -> int:
        raise NotImplementedError

    def _answer(self, body: dict[str, object]) -> None:
        want = body.get("want")
        if not isinstance(want, list):
            raise Rejected("request: expected want, a list of [interval, [coop ids], relay]")
        for item in want:
            if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], int)
                    or not isinstance(item[1], list)):
                raise Rejected("request: each want is [interval, [coop ids], relay]")
            interval, coops, relay = item[0], [str(c) for c in item[1]], bool(item[2])
            for coop in coops:
                self._answer_one(interval, coop, relay)

    def _answer_one(self, interval: int, coop: str, relay: bool) -> None:
        # Every peer may ask for the same thing in the same second; one answer reaches all.
        now = time.monotonic()
        with self._lock:
            last = self._answered.get((interval, coop, relay), -1e18)
            if now - last < self.request_every_s:
                return
            self._answered[(interval, coop, relay)] = now
            state = self.book.intervals.get(interval)
            raw = state.raw.get(coop) if state is not None else None
            proof = state.proofs.get(coop) if state is not None else None
            result = self._results.get(interval) if coop == self.me else None
        if proof is not None:
            self._publish_proof(coop, interval, proof)
        elif coop == self.me:  # sent again, not retained: the retained copy may be cleared
            if raw:
                self._publish(f"federation/{self.me}/offers/{interval}", raw, retain=False)
            if result is not None:
                self._publish(f"federation/{self.me}/results/{interval}", result, retain=False)
        elif relay and raw:
            self._publish(f"federation/{self.me}/relay/{coop}/{interval}", raw, retain=False)

    def _want(self, interval: int, now: float) -> tuple[list[str], bool]:
        """Coops to ask about for ``interval``, and whether any peer may answer (relay).

        Peers' results are asked for only ``grace_s`` after ours: they are computed at
        about the same moment, and asking at once would make every coop answer every coop.
        """
        state = self.book.intervals[interval]
        ours = self._settled_at.get(interval)
        coops = list(self.book.wanted(interval, ours is not None and now - ours >= self.grace_s))
        counted_by_peers = {c for r in state.results.values() for c, what in r.counted.items()
                            if what not in (ABSENT, EQUIVOCATED)}
        if self.me in coops and self.me not in counted_by_peers:
            coops.remove(self.me)  # our own offer comes from our controller, unless lost
        return coops, any(c in counted_by_peers for c in coops)

    def _request_missing(self, now: float) -> None:
        """One signed request per round, batched: every open interval, per coop that is due.

        Each coop asked about backs off on its own (``request_every_s`` doubling up
        to ``max_backoff_s``), so a coop that vanished costs one small message every
        ``max_backoff_s``, not one per open interval per second; a new interval
        missing from it is asked for at once.
        """
        per_coop: dict[str, list[tuple[int, bool]]] = {}
        with self._lock:
            for interval in self.book.open_intervals():
                if now - self._opened.setdefault(interval, now) < self.grace_s:
                    continue
                coops, counted = self._want(interval, now)
                for coop in coops:
                    per_coop.setdefault(coop, []).append((interval, counted))
            items: dict[int, tuple[list[str], bool]] = {}
            for coop, wanted in per_coop.items():
                due, attempts, before = self._asked.get(coop, (-1e18, 0, ()))
                intervals = tuple(i for i, _ in wanted)
                if now < due and set(intervals) <= set(before):
                    continue
                backoff = min(self.request_every_s * 2 ** attempts, self.max_backoff_s)
                self._asked[coop] = (now + backoff, attempts + 1, intervals)
                for interval, counted in wanted:
                    coops, relay = items.setdefault(interval, ([], False))
                    coops.append(coop)
                    items[interval] = (coops, relay or counted
                                       or attempts + 1 >= RELAY_FROM_ATTEMPT)
            for coop in [c for c in self._asked if c not in per_coop]:
                del self._asked[coop]  # nothing missing from it: start afresh next time
        if items:
            want = [[i, coops, relay] for i, (coops, relay) in sorted(items.items())]
            body = {"kind": "request", "coop": self.me, "want": want, "seq": self._next_seq()}
            self.requests_out += 1
            self._publish(f"federation/{self.me}/requests", sign(body, self.key), retain=False)
