"""Integer Wh booking with carried remainders, so no rounding leaks out of a sum.

Each ledger field of each member keeps a sub-Wh carry. Every interval books
``floor(carry + energy)`` whole Wh and carries the rest forward. Flows that
pair up across the coop are booked so that they match to the Wh in every
interval: what peers receive equals what peers sent, and what neighbours
draw from or put into offered batteries equals what those batteries gave or
took. Coop-origin parts are never booked above the flow they are part of.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch.result import TickResult

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

#: Ledger columns, in Wh. ``served``, ``load``, ``pv`` and ``liberated`` are
#: sums of these, so the ledger's balances hold by construction.
LEDGER_FIELDS: tuple[str, ...] = (
    "own_pv_used",
    "from_battery",
    "from_battery_coop",
    "from_peers",
    "from_coop_battery",
    "from_coop_battery_coop",
    "from_grid",
    "shed",
    "to_battery",
    "to_peers",
    "to_coop_battery",
    "to_grid",
    "curtailed",
    "battery_from_coop",
    "battery_to_coop",
    "grid_to_battery",
    "battery_to_grid",
    "battery_to_batteries",
    "battery_from_batteries",
    "losses",
)
#: The ledger fields whose sum is a member's liberated energy (served from coop generation).
LIBERATED_FIELDS = ("own_pv_used", "from_battery_coop", "from_peers", "from_coop_battery_coop")
#: receiving field → (sending field): booked so both sum to the same Wh.
PAIRED = {"from_peers": "to_peers", "from_coop_battery": "battery_to_coop",
          "battery_from_coop": "to_coop_battery",
          "battery_from_batteries": "battery_to_batteries"}
#: part → whole: a coop-origin part never exceeds its flow.
PARTS = {"from_battery_coop": "from_battery", "from_coop_battery_coop": "from_coop_battery"}


def floor_with_carry(energy: FloatArray, carry: FloatArray) -> tuple[IntArray, FloatArray]:
    """Whole Wh to book now and the remainder to carry, per element."""
    total = carry + energy
    booked = np.maximum(np.floor(total), 0.0)
    return booked.astype(np.int64), total - booked


def round_to_total(
    energy: FloatArray, carry: FloatArray, total: int
) -> tuple[IntArray, FloatArray]:
    """Book whole Wh that add up to ``total``, closest to ``carry + energy``.

    Units go to the largest remainders first and are taken from the smallest
    first; a member is never booked a negative amount. What is not booked stays
    in the carry, so nothing is lost over time.
    """
    target = carry + energy
    booked = np.maximum(np.floor(target), 0.0)
    missing = int(total - booked.sum())
    n = len(target)
    while missing != 0 and n:
        remainder = target - booked
        if missing > 0:
            order = np.argsort(-remainder, kind="stable")[: min(missing, n)]
            booked[order] += 1.0
            missing -= len(order)
        else:
            candidates = np.flatnonzero(booked > 0)
            if not len(candidates):
                break
            pick = candidates[np.argsort(remainder[candidates], kind="stable")]
            pick = pick[: min(-missing, len(pick))]
            booked[pick] -= 1.0
            missing += len(pick)
    return booked.astype(np.int64), target - booked


class WhBook:
    """Turns float tick results into integer Wh per member, carrying remainders.

    The carries are part of the ledger's state: persist :attr:`carries` with
    each committed interval and pass them back after a restart.
    """

    def __init__(self, size: int, carries: dict[str, FloatArray] | None = None) -> None:
        carries = carries or {}
        self.carries: dict[str, FloatArray] = {
            f: np.asarray(carries[f], dtype=np.float64).copy() if f in carries else np.zeros(size)
            for f in LEDGER_FIELDS
        }

    def book(self, result: TickResult) -> dict[str, IntArray]:
        """Integer Wh for every ledger field, updating the carries."""
        booked: dict[str, IntArray] = {}
        for f in LEDGER_FIELDS:
            if f in PAIRED:
                continue
            energy = np.maximum(getattr(result, f), 0.0)
            booked[f], self.carries[f] = floor_with_carry(energy, self.carries[f])
        for f, sender in PAIRED.items():
            booked[f], self.carries[f] = round_to_total(
                np.maximum(getattr(result, f), 0.0), self.carries[f], int(booked[sender].sum())
            )
        for part, whole in PARTS.items():
            excess = np.maximum(booked[part] - booked[whole], 0)
            booked[part] -= excess
            self.carries[part] += excess
        return {f: booked[f] for f in LEDGER_FIELDS}
