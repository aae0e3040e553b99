"""Integer Wh booking: paired flows balance to the Wh every interval and nothing leaks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch import LEDGER_FIELDS, CoopLimits, Fleet, FleetState, WhBook, dispatch_tick
from dispatch.rounding import PAIRED, PARTS, floor_with_carry, round_to_total


def test_floor_with_carry_table() -> None:
    booked, carry = floor_with_carry(np.array([0.4, 0.4, 2.7]), np.array([0.0, 0.7, 0.5]))
    assert booked.tolist() == [0, 1, 3]
    np.testing.assert_allclose(carry, [0.4, 0.1, 0.2])


def test_round_to_total_hits_total_and_never_negative() -> None:
    booked, carry = round_to_total(np.array([0.3, 0.3, 0.4]), np.zeros(3), 1)
    assert booked.sum() == 1 and (booked >= 0).all()
    assert booked.tolist() == [0, 0, 1]
    np.testing.assert_allclose(carry + booked, [0.3, 0.3, 0.4])


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**32 - 1), st.booleans())
def test_many_intervals_balance_to_the_wh_and_do_not_leak(n: int, seed: int,
                                                          island: bool) -> None:
    rng = np.random.default_rng(seed)
    cap = rng.uniform(0, 5000, n)
    fleet = Fleet(cap, np.zeros(n), rng.uniform(0, 3000, n), rng.uniform(0, 3000, n),
                  np.full(n, 0.9), offered=rng.random(n) < 0.5)
    state = FleetState.start(cap * 0.5, cap * 0.5)
    book = WhBook(n)
    floats = dict.fromkeys(LEDGER_FIELDS, 0.0)
    booked_totals = dict.fromkeys(LEDGER_FIELDS, 0)
    for _ in range(200):
        r = dispatch_tick(fleet, state, rng.uniform(0, 6000, n), rng.uniform(0, 3000, n),
                          np.ones(n, bool), 7.0, limits=CoopLimits(islanded=island))
        state = r.state
        booked = book.book(r)
        for receiver, sender in PAIRED.items():
            assert booked[receiver].sum() == booked[sender].sum(), receiver
        for part, whole in PARTS.items():
            assert (booked[part] <= booked[whole]).all(), part
        for f in LEDGER_FIELDS:
            assert (booked[f] >= 0).all()
            booked_totals[f] += int(booked[f].sum())
            floats[f] += float(getattr(r, f).sum())
    # what is not booked yet sits in the carries, bounded: nothing leaks out of the sums
    for f in LEDGER_FIELDS:
        gap = floats[f] - booked_totals[f]
        assert abs(gap - book.carries[f].sum()) < 1e-6, f
        assert abs(gap) < 2 * n + 1, f
