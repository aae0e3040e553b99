"""The deterministic allocation between coops, and the hash of its result.

Per interval, the coops with surplus send at most what the coops with
deficit need: the federation moves ``T = min(Σ surplus, Σ deficit)`` Wh. The
long side is split by the charter's rule (``prorata``: in proportion to the
offer; ``equal``: water-filling, the same to each, capped at the offer), the
short side is used in full, which is the same rule applied to both sides. The
result is whole Wh with ``Σ to_federation == Σ from_federation == T`` exactly.

Every coop must get the same Wh from the same offers: the arithmetic is a
fixed sequence of IEEE-754 elementwise operations over coops sorted by id,
rounded to whole Wh by largest remainder with ties broken by that order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from controller.federation.offers import Offer, offer_digest
from dispatch.sharing import water_fill

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
RULES = ("prorata", "equal")


def whole_wh(target: FloatArray, cap: IntArray, total: int) -> IntArray:
    """Whole Wh ``0 <= a <= cap`` with ``Σ a == total``, closest to ``target``.

    Missing units go to the largest remainders first (lowest index on ties),
    excess units are taken from the smallest remainders first.
    """
    if total > int(cap.sum()):
        raise ValueError(f"cannot split {total} Wh over caps summing to {int(cap.sum())}")
    booked = np.minimum(np.floor(np.maximum(target, 0.0)), cap).astype(np.int64)
    index = np.arange(len(cap))
    missing = total - int(booked.sum())
    while missing != 0:
        remainder = target - booked
        if missing > 0:
            open_ = np.flatnonzero(booked < cap)
            order = open_[np.lexsort((index[open_], -remainder[open_]))][:missing]
            booked[order] += 1
            missing -= len(order)
        else:
            held = np.flatnonzero(booked > 0)
            order = held[np.lexsort((index[held], remainder[held]))][:-missing]
            booked[order] -= 1
            missing += len(order)
    return booked


def split(total: int, cap: IntArray, rule: str) -> IntArray:
    """``total`` Wh split over ``cap`` by ``rule``, in whole Wh, never above a cap."""
    if total <= 0 or not len(cap):
        return np.zeros(len(cap), dtype=np.int64)
    need = cap.astype(np.float64)
    if rule == "prorata":
        target = need * (float(total) / float(cap.sum()))
    elif rule == "equal":
        target = water_fill(float(total), need, np.ones_like(need))
    else:
        raise ValueError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    return whole_wh(target, cap, total)


def allocate(surplus: IntArray, deficit: IntArray, rule: str) -> tuple[IntArray, IntArray]:
    """``(to_federation, from_federation)`` per coop, in whole Wh; both sum to the same."""
    moved = min(int(surplus.sum()), int(deficit.sum()))
    return split(moved, surplus, rule), split(moved, deficit, rule)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What the federation moved in one interval, and the hash every coop must agree on.

    ``counted`` says, per coop, what the allocation used: an offer's digest, or
    why the coop counts as zero (``absent``: silent past the deadline;
    ``equivocated``: two different signed offers). ``flags`` lists offers cut
    down to the coop's own metered totals, as ``(coop, field, excess Wh)``.
    """

    interval: int
    coops: tuple[str, ...]
    to_federation: IntArray
    from_federation: IntArray
    digest: str
    counted: dict[str, str] = field(default_factory=dict)
    flags: tuple[tuple[str, str, int], ...] = ()

    def for_coop(self, coop: str) -> tuple[int, int]:
        """``(to_federation, from_federation)`` of one coop (zero if it took no part)."""
        if coop not in self.coops:
            return 0, 0
        k = self.coops.index(coop)
        return int(self.to_federation[k]), int(self.from_federation[k])


ABSENT, EQUIVOCATED = "absent", "equivocated"


def bounded(offer: Offer) -> tuple[int, int, list[tuple[str, str, int]]]:
    """An offer's ``(surplus, deficit)`` cut to its metered totals, and what was cut."""
    surplus, deficit, flags = offer.surplus_wh, offer.deficit_wh, []
    if offer.metered_export_wh is not None and surplus > offer.metered_export_wh:
        flags.append((offer.coop, "surplus_wh", surplus - offer.metered_export_wh))
        surplus = offer.metered_export_wh
    if offer.metered_import_wh is not None and deficit > offer.metered_import_wh:
        flags.append((offer.coop, "deficit_wh", deficit - offer.metered_import_wh))
        deficit = offer.metered_import_wh
    return surplus, deficit, flags


def settle(interval: int, offers: Iterable[Offer], rule: str, terms_digest: str,
           zero: dict[str, str] | None = None) -> Settlement:
    """The allocation over ``offers`` (one per coop) and its result hash.

    Coops in ``zero`` (coop → reason) count as zero whatever they offered; the
    reason is part of the hash, so coops that disagree on it disagree visibly.
    """
    zero = zero or {}
    ordered = sorted((o for o in offers if o.coop not in zero), key=lambda o: o.coop)
    coops = tuple(o.coop for o in ordered)
    if len(set(coops)) != len(coops):
        raise ValueError("settle: more than one offer from a coop")
    if any(o.interval != interval for o in ordered):
        raise ValueError(f"settle: an offer is not for interval {interval}")
    flags: list[tuple[str, str, int]] = []
    surplus = np.zeros(len(ordered), dtype=np.int64)
    deficit = np.zeros(len(ordered), dtype=np.int64)
    for k, offer in enumerate(ordered):  # a few coops: not a hot path
        surplus[k], deficit[k], cut = bounded(offer)
        flags += cut
    to_fed, from_fed = allocate(surplus, deficit, rule)
    counted = {o.coop: offer_digest(o) for o in ordered} | dict(zero)
    record = {"interval": interval, "rule": rule, "terms": terms_digest,
              "counted": dict(sorted(counted.items())), "coops": list(coops),
              "to": to_fed.tolist(), "from": from_fed.tolist(), "flags": flags}
    digest = hashlib.sha256(json.dumps(record, separators=(",", ":")).encode()).hexdigest()
    return Settlement(interval, coops, to_fed, from_fed, digest, counted, tuple(flags))
