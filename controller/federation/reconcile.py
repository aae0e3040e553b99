"""Which offers a coop holds, what it would settle, and when an interval is agreed: no MQTT here.

An interval goes through three states on every coop:

1. **open**: offers arrive. Once an offer from every active coop is at hand
   (or the charter's deadline after the interval's end has passed: the silent
   ones then count as ``absent``, zero), the coop computes a *provisional*
   settlement and publishes its hash with what it counted (coop → offer digest
   or the reason it counts zero).
2. **provisional**: nothing is booked. A peer's result that counted a different
   offer, or one we lack, makes us ask for that offer (any holder relays it), so
   every coop ends up with the union of the offers; two different validly signed
   offers from one coop are a proof of equivocation, forwarded to everyone, and
   that coop counts as zero for the interval (the same rule everywhere).
3. **committed**: identical hashes from every active coop that did not
   equivocate, or, after the deadline, from the charter's quorum. A coop whose
   own hash differs adopts the quorum's if it can recompute it from offers it
   holds. Only now are the flows booked; a late offer never reopens it.

After the deadline a coop's published result is a vote that stands until one
more deadline has passed (only adopting the quorum's hash replaces it): with a
majority quorum, two different hashes can then not both be committed, even
when an offer reached some coops just before the deadline and others just
after. Proven equivocators do not vote, and a coop that learns of a proof
only after the others committed adopts their result (it holds both offers):
an interval committed never changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from controller.federation.allocation import ABSENT, EQUIVOCATED, Settlement, settle
from controller.federation.charter import Charter
from controller.federation.offers import Offer, offer_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """A coop's published result: its hash and what it counted."""

    seq: int
    digest: str
    counted: dict[str, str]


@dataclass(slots=True)
class IntervalState:
    """What one coop knows about one interval."""

    offers: dict[str, Offer] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)  # coop → the signed offer as received
    proofs: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # equivocator → proof
    #: Every other valid offer seen from an equivocator: a quorum may have counted one.
    others: dict[str, list[Offer]] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    settlement: Settlement | None = None  # provisional until ``committed``
    committed: bool = False


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

    def __init__(self, charter: Charter, me: str | None = None) -> None:
        self.charter = charter
        #: This coop (its own result is set here, never taken from the wire); ``None`` for
        #: a listener that only watches.
        self.me = me
        self.step = charter.federation.interval_s
        self.intervals: dict[int, IntervalState] = {}
        self.disagreements: list[Disagreement] = []
        self.rejected: list[str] = []
        self._seen_disagreements: set[tuple[int, str, str]] = set()
        #: Intervals before this were committed and forgotten: their messages are ignored.
        self.horizon: int | None = None

    def _state(self, interval: int) -> IntervalState:
        return self.intervals.setdefault(interval, IntervalState())

    def _closed(self, interval: int) -> bool:
        if self.horizon is not None and interval < self.horizon:
            return True
        state = self.intervals.get(interval)
        return state is not None and state.committed

    # -- what arrives ----------------------------------------------------------------------
    def add_offer(self, offer: Offer, payload: bytes = b"") -> str:
        """Keep a verified offer: ``new``, ``duplicate``, ``conflict`` (a proof now) or ``late``."""
        if self._closed(offer.interval):
            return "late"
        state = self._state(offer.interval)
        held = state.offers.get(offer.coop)
        if held is None:
            state.offers[offer.coop] = offer
            state.raw[offer.coop] = payload
            return "new"
        if held.content() == offer.content():
            return "duplicate"
        self._disagree(Disagreement(offer.interval, offer.coop, "offer", str(held.content()),
                                    str(offer.content())))
        known = state.others.setdefault(offer.coop, [])
        if all(o.content() != offer.content() for o in known):
            known.append(offer)
        if offer.coop in state.proofs or not payload or not state.raw.get(offer.coop):
            return "duplicate"
        state.proofs[offer.coop] = (state.raw[offer.coop], payload)
        log.error("federation: interval %d: %s signed two different offers: it counts as zero",
                  offer.interval, offer.coop)
        return "conflict"

    def add_proof(self, accused: str, interval: int, payloads: list[bytes],
                  offers: list[Offer] | None = None) -> bool:
        """Keep a verified proof of equivocation (and its two offers); ``True`` if it is news."""
        if self._closed(interval):
            return False
        state = self._state(interval)
        known = state.others.setdefault(accused, [])
        for offer in offers or []:
            if all(o.content() != offer.content() for o in known):
                known.append(offer)
        if accused in state.proofs:
            return False
        state.proofs[accused] = (payloads[0], payloads[1])
        return True

    def add_result(self, coop: str, interval: int, digest: str,
                   counted: dict[str, str] | None = None, seq: int = 0) -> None:
        """A coop's result hash for an interval (the newest ``seq`` wins)."""
        if (self.horizon is not None and interval < self.horizon) or coop == self.me:
            return
        state = self._state(interval)
        held = state.results.get(coop)
        if held is None or seq >= held.seq:
            state.results[coop] = Result(seq, digest, dict(counted or {}))
        self._compare(interval)

    def reject(self, reason: str) -> None:
        """Log and keep a message that was not counted."""
        log.warning("federation: rejected message: %s", reason)
        self.rejected.append(reason)

    # -- what is missing -------------------------------------------------------------------
    def missing(self, interval: int) -> tuple[str, ...]:
        """Active coops whose offer for ``interval`` is not at hand (equivocators aside)."""
        state = self._state(interval)
        return tuple(c for c in self.charter.active(interval)
                     if c not in state.offers and c not in state.proofs)

    def wanted(self, interval: int, results: bool = True) -> tuple[str, ...]:
        """Coops whose offer or result this coop should ask for, for an uncommitted interval.

        Missing offers; offers a peer counted that we lack or hold differently (one of
        the two is then an equivocation, or we missed it); and, once we have a result
        of our own, peers whose result has not arrived.
        """
        state = self.intervals.get(interval)
        if state is None or state.committed:
            return ()
        want = set(self.missing(interval))
        for result in state.results.values():
            for coop, counted in result.counted.items():
                if counted in (ABSENT, EQUIVOCATED):
                    if counted == EQUIVOCATED and coop not in state.proofs:
                        want.add(coop)  # ask for it: the answer is the proof
                    continue
                held = state.offers.get(coop)
                if coop not in state.proofs and (held is None or offer_digest(held) != counted):
                    want.add(coop)
        if results and state.settlement is not None:
            want |= {c for c in self.required(interval) if c not in state.results}
        return tuple(sorted(want))

    def required(self, interval: int) -> tuple[str, ...]:
        """Active coops whose hash counts toward agreement: those that did not equivocate."""
        proofs = self.intervals[interval].proofs if interval in self.intervals else {}
        return tuple(c for c in self.charter.active(interval) if c not in proofs)

    # -- settling --------------------------------------------------------------------------
    def _deadline(self, interval: int) -> int:
        return self.charter.terms(interval).deadline_s

    def past_deadline(self, interval: int, now: float) -> bool:
        """Whether the charter's deadline after the interval's end has passed."""
        return now >= interval + self.step + self.charter.terms(interval).deadline_s

    def provisional(self, interval: int, now: float) -> Settlement | None:
        """What this coop would settle now, from the offers and proofs it holds."""
        state = self._state(interval)
        missing = self.missing(interval)
        if missing and not self.past_deadline(interval, now):
            return None
        terms = self.charter.terms(interval)
        zero = {c: EQUIVOCATED for c in state.proofs if c in terms.active}
        zero |= dict.fromkeys(missing, ABSENT)
        offers = [o for c, o in state.offers.items() if c in terms.active]
        return settle(interval, offers, terms.rule, terms.digest(), zero)

    def step_all(self, now: float) -> tuple[list[Settlement], list[Settlement]]:
        """``(changed, committed)``: provisional results to publish, and intervals now agreed."""
        changed, committed = [], []
        for interval in sorted(self.intervals):
            state = self.intervals[interval]
            if state.committed:
                continue
            settlement = self.provisional(interval, now)
            if (state.settlement is not None and self.past_deadline(interval, now)
                    and not self.past_deadline(interval, now - self._deadline(interval))):
                # After the deadline a published result is a vote that stands (only the
                # quorum's hash replaces it): a coop that changed its vote after helping a
                # quorum commit could help a second, different one. One more deadline on,
                # votes move again, so a split with no quorum cannot freeze the interval.
                settlement = state.settlement
            if settlement is not None and (state.settlement is None
                                           or settlement.digest != state.settlement.digest):
                state.settlement = settlement
                changed.append(settlement)
                if self.me is not None:
                    state.results[self.me] = Result(0, settlement.digest, settlement.counted)
            final = self._agreed_on(interval, now)
            if final is not None:
                if state.settlement is None or final.digest != state.settlement.digest:
                    changed.append(final)  # adopted from the quorum: say so too
                state.settlement, state.committed = final, True
                committed.append(final)
        return changed, committed

    def _agreed_on(self, interval: int, now: float) -> Settlement | None:
        state = self.intervals[interval]
        ours = state.settlement
        required = self.required(interval)
        digests = {c: state.results[c].digest for c in required if c in state.results}
        if ours is not None and all(digests.get(c) == ours.digest for c in required):
            return ours
        if not self.past_deadline(interval, now):
            return None
        # Proven equivocators do not vote: a majority of the others is always enough, or
        # an honest coop that learnt of a proof after the rest committed could never follow.
        terms = self.charter.terms(interval)
        quorum = max(terms.quorum - (len(terms.active) - len(required)), len(required) // 2 + 1)
        tally: dict[str, list[str]] = {}
        for coop, digest in digests.items():
            tally.setdefault(digest, []).append(coop)
        for digest, coops in sorted(tally.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            if len(coops) < quorum:
                break
            if ours is not None and digest == ours.digest:
                return ours
            adopted = self._recompute(interval, state.results[coops[0]].counted)
            if adopted is not None and adopted.digest == digest:
                if self.me is not None:
                    state.results[self.me] = Result(0, digest, adopted.counted)
                log.warning("federation: interval %d: adopting the quorum's result %s",
                            interval, digest[:16])
                return adopted
        return None

    def _recompute(self, interval: int, counted: dict[str, str]) -> Settlement | None:
        """The settlement a peer counted, if this coop holds every offer it used."""
        state = self.intervals[interval]
        terms = self.charter.terms(interval)
        offers, zero = [], {}
        for coop, what in counted.items():
            if what in (ABSENT, EQUIVOCATED):
                zero[coop] = what
                continue
            candidates = [state.offers.get(coop), *state.others.get(coop, [])]
            held = next((o for o in candidates if o is not None and offer_digest(o) == what),
                        None)
            if held is None:
                return None
            offers.append(held)
        return settle(interval, offers, terms.rule, terms.digest(), zero)

    def commit_known(self, settlement: Settlement) -> None:
        """Mark an interval committed (from this coop's own store after a restart)."""
        state = self._state(settlement.interval)
        state.settlement, state.committed = settlement, True
        if self.me is not None:
            state.results[self.me] = Result(0, settlement.digest, settlement.counted)

    # -- comparing -------------------------------------------------------------------------
    def _compare(self, interval: int) -> None:
        state = self.intervals[interval]
        if state.settlement is None or not state.committed:
            return  # provisional hashes may differ for a while: that is how agreement starts
        ours = state.settlement.digest
        for coop, theirs in state.results.items():
            if theirs.digest != ours and coop not in state.proofs:
                self._disagree(Disagreement(interval, coop, "result", ours, theirs.digest))

    def _disagree(self, d: Disagreement) -> None:
        key = (d.interval, d.coop, d.theirs)
        if key in self._seen_disagreements:
            return
        self._seen_disagreements.add(key)
        self.disagreements.append(d)
        log.error("federation: interval %d: %s from %s differs: ours %s, theirs %s",
                  d.interval, d.what, d.coop, d.ours, d.theirs)

    def agreed(self, interval: int) -> bool:
        """Whether this coop committed the interval."""
        state = self.intervals.get(interval)
        return state is not None and state.committed

    def unanimous(self, interval: int) -> bool:
        """Committed, and every coop that counts published the same hash."""
        state = self.intervals.get(interval)
        if state is None or not state.committed or state.settlement is None:
            return False
        return all(c in state.results and state.results[c].digest == state.settlement.digest
                   for c in self.required(interval))

    def last_agreed(self) -> int | None:
        """The latest committed interval."""
        agreed = [i for i in self.intervals if self.agreed(i)]
        return max(agreed) if agreed else None

    def open_intervals(self) -> list[int]:
        """Intervals not yet committed, oldest first."""
        return sorted(i for i, s in self.intervals.items() if not s.committed)

    def forget_before(self, interval: int) -> None:
        """Drop intervals older than ``interval`` (no longer retained or asked for)."""
        for old in [i for i in self.intervals if i < interval]:
            del self.intervals[old]
        self.horizon = max(self.horizon or interval, interval)
