"""Integer Wh booking with carried remainders, so no rounding leaks out of a sum.

Each ledger field of each member keeps a sub-Wh carry. Every interval books
``floor(carry + energy)`` whole Wh and carries the rest forward. Energy to
peers is booked first; energy from peers is then spread (largest remainder
first) so that, in every interval, the booked Wh sent to peers equals the
booked Wh received from peers exactly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch.tick import TickResult

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

#: Ledger columns, in Wh. ``served``, ``load``, ``pv`` and ``liberated`` are
#: sums of these, so the ledger's balances hold by construction.
LEDGER_FIELDS: tuple[str, ...] = (
    "own_pv_used",
    "from_battery_coop",
    "from_battery_grid",
    "from_peers",
    "from_grid",
    "shed",
    "to_battery",
    "to_peers",
    "to_grid",
    "curtailed",
    "losses",
)


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
        self.carries: dict[str, FloatArray] = {
            field: np.zeros(size) if carries is None or field not in carries
            else np.asarray(carries[field], dtype=np.float64).copy()
            for field in LEDGER_FIELDS
        }

    def book(self, result: TickResult) -> dict[str, IntArray]:
        """Integer Wh for every ledger field, updating the carries."""
        energies = {
            "own_pv_used": result.own_pv_used,
            "from_battery_coop": result.from_battery_coop,
            "from_battery_grid": result.from_battery - result.from_battery_coop,
            "from_grid": result.from_grid,
            "shed": result.shed,
            "to_battery": result.to_battery,
            "to_peers": result.to_peers,
            "to_grid": result.to_grid,
            "curtailed": result.curtailed,
            "losses": result.losses,
        }
        booked: dict[str, IntArray] = {}
        for field, energy in energies.items():
            booked[field], self.carries[field] = floor_with_carry(
                np.maximum(energy, 0.0), self.carries[field]
            )
        booked["from_peers"], self.carries["from_peers"] = round_to_total(
            result.from_peers, self.carries["from_peers"], int(booked["to_peers"].sum())
        )
        return {field: booked[field] for field in LEDGER_FIELDS}
