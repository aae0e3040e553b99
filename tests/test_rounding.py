"""Integer Wh booking: peers balance to the Wh every interval and nothing leaks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import LEDGER_FIELDS, Fleet, WhBook, dispatch_tick
from dispatch.rounding import floor_with_carry, round_to_total


def test_floor_with_carry_table() -> None:
    booked, carry = floor_with_carry(np.array([0.4, 0.4, 2.7]), np.array([0.0, 0.7, 0.5]))
    assert booked.tolist() == [0, 1, 3]
    np.testing.assert_allclose(carry, [0.4, 0.1, 0.2])


def test_round_to_total_hits_total_and_never_negative() -> None:
    booked, carry = round_to_total(np.array([0.3, 0.3, 0.4]), np.zeros(3), 1)
    assert booked.sum() == 1 and (booked >= 0).all()
    assert booked.tolist() == [0, 0, 1]
    np.testing.assert_allclose(carry + booked, [0.3, 0.3, 0.4])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**32 - 1))
def test_many_intervals_balance_to_the_wh_and_do_not_leak(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fleet = Fleet(rng.uniform(0, 5000, n), np.zeros(n), rng.uniform(0, 3000, n),
                  rng.uniform(0, 3000, n), np.full(n, 0.9))
    stored = fleet.capacity_wh * 0.5
    pool = stored.copy()
    book = WhBook(n)
    totals = dict.fromkeys(LEDGER_FIELDS, 0.0)
    booked_totals = {f: np.zeros(n, np.int64) for f in LEDGER_FIELDS}
    for _ in range(200):
        r = dispatch_tick(fleet, rng.uniform(0, 6000, n), rng.uniform(0, 3000, n), stored, pool,
                          np.ones(n, bool), 7.0)
        stored, pool = r.stored_wh, r.pool_coop_wh
        booked = book.book(r)
        assert booked["to_peers"].sum() == booked["from_peers"].sum()
        for f in LEDGER_FIELDS:
            assert (booked[f] >= 0).all()
            booked_totals[f] += booked[f]
        totals["from_peers"] += r.from_peers.sum()
        totals["to_peers"] += r.to_peers.sum()
        totals["own_pv_used"] += r.own_pv_used.sum()
    # what is not booked yet sits in the carries, bounded: nothing leaks out of the sums
    for f in ("from_peers", "to_peers", "own_pv_used"):
        gap = totals[f] - booked_totals[f].sum()
        assert abs(gap - book.carries[f].sum()) < 1e-6
        assert abs(gap) < n + 1
