"""Which offers a coop holds, which are missing, which results agree: no MQTT here.

An interval is settled once, when an offer from every coop whose membership
covers it is at hand; its settlement is then fixed, so a re-sent or relayed
offer never counts an interval twice. Until then the missing coops are
asked again (:meth:`Reconciler.missing`). Each coop publishes its result
hash; a peer's hash that differs from ours is a disagreement, logged once
and kept for ``federation status``. A coop that sends two different offers
for one interval is logged and its second offer ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from controller.federation.allocation import Settlement, settle
from controller.federation.charter import Charter
from controller.federation.offers import Offer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IntervalState:
    """What one coop knows about one interval."""

    offers: dict[str, Offer] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)  # coop → result hash
    settlement: Settlement | None = None


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A peer whose result hash (or offer) differs from what this coop holds."""

    interval: int
    coop: str
    what: str  # "result" or "offer"
    ours: str
    theirs: str


class Reconciler:
    """The offers, settlements and peer hashes of one coop, per interval."""

    def __init__(self, charter: Charter) -> None:
        self.charter = charter
        self.charter_digest = charter.digest()
        self.intervals: dict[int, IntervalState] = {}
        self.disagreements: list[Disagreement] = []
        self.rejected: list[str] = []
        self._seen_disagreements: set[tuple[int, str, str]] = set()
        #: Intervals before this were settled and forgotten: their messages are ignored,
        #: so a late retained copy never opens (and settles) an interval again.
        self.horizon: int | None = None

    def _state(self, interval: int) -> IntervalState:
        return self.intervals.setdefault(interval, IntervalState())

    def add_offer(self, offer: Offer) -> str:
        """Keep a verified offer: ``new``, ``duplicate`` (same content) or ``conflict``."""
        if self.horizon is not None and offer.interval < self.horizon:
            return "duplicate"
        state = self._state(offer.interval)
        held = state.offers.get(offer.coop)
        if held is None:
            state.offers[offer.coop] = offer
            return "new"
        if held.content() == offer.content():
            return "duplicate"
        self._disagree(Disagreement(offer.interval, offer.coop, "offer", str(held.content()),
                                    str(offer.content())))
        return "conflict"

    def add_result(self, coop: str, interval: int, digest: str) -> None:
        """A peer's result hash for an interval."""
        if self.horizon is not None and interval < self.horizon:
            return
        state = self._state(interval)
        state.results[coop] = digest
        self._compare(interval)

    def reject(self, reason: str) -> None:
        """Log and keep a message that was not counted."""
        log.warning("federation: rejected message: %s", reason)
        self.rejected.append(reason)

    def missing(self, interval: int) -> tuple[str, ...]:
        """Active coops whose offer for ``interval`` is not at hand."""
        offers = self._state(interval).offers
        return tuple(c for c in self.charter.active(interval) if c not in offers)

    def settle_ready(self) -> list[Settlement]:
        """Settle every interval whose offers are all at hand; return the new settlements."""
        new = []
        for interval in sorted(self.intervals):
            state = self.intervals[interval]
            if state.settlement is not None or self.missing(interval):
                continue
            active = set(self.charter.active(interval))
            offers = [o for c, o in state.offers.items() if c in active]
            state.settlement = settle(interval, offers, self.charter.federation.rule,
                                      self.charter_digest)
            new.append(state.settlement)
            self._compare(interval)
        return new

    def _compare(self, interval: int) -> None:
        state = self.intervals[interval]
        if state.settlement is None:
            return
        ours = state.settlement.digest
        for coop, theirs in state.results.items():
            if theirs != ours:
                self._disagree(Disagreement(interval, coop, "result", ours, theirs))

    def _disagree(self, d: Disagreement) -> None:
        key = (d.interval, d.coop, d.theirs)
        if key in self._seen_disagreements:
            return
        self._seen_disagreements.add(key)
        self.disagreements.append(d)
        log.error("federation: interval %d: %s from %s differs: ours %s, theirs %s",
                  d.interval, d.what, d.coop, d.ours, d.theirs)

    def agreed(self, interval: int) -> bool:
        """Whether every active coop published the same result hash as ours."""
        state = self.intervals.get(interval)
        if state is None or state.settlement is None:
            return False
        return all(state.results.get(c) == state.settlement.digest
                   for c in self.charter.active(interval))

    def last_agreed(self) -> int | None:
        """The latest interval every active coop agrees on."""
        agreed = [i for i in self.intervals if self.agreed(i)]
        return max(agreed) if agreed else None

    def open_intervals(self) -> list[int]:
        """Intervals not yet settled, oldest first."""
        return sorted(i for i, s in self.intervals.items() if s.settlement is None)

    def forget_before(self, interval: int) -> None:
        """Drop intervals older than ``interval`` (no longer retained or asked for)."""
        for old in [i for i in self.intervals if i < interval]:
            del self.intervals[old]
        self.horizon = max(self.horizon or interval, interval)
