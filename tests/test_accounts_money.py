"""The budget balances to the cent: tables for the pieces, properties for the whole."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.accounts import member_statement, month_budget
from controller.accounts.budget import FEE_FIELDS, TRANSFERS, cents_for, largest_remainder, money
from controller.accounts.report import coop_report, report_dict
from controller.config import TariffConfig
from controller.ledger import LedgerReader
from controller.ledger.periods import month_start, next_month
from tests.accounts_ledgers import JAN31_20H, build_ledger


@pytest.mark.parametrize(
    ("wh", "price", "cents"),
    [
        (0, 0.3, 0),
        (1000, 0.3, 30),
        (5000, 0.1, 50),        # 0.1 as written, not the binary float just above it
        (50, 0.1, 1),           # 0.5 cent rounds half up
        (49, 0.1, 0),
        (1, 0.25, 0),           # 0.025 cent
        (333, 0.15, 5),         # 4.995 cents
        (123_456_789, 0.2345, 2_895_062),  # 2_895_061.70...
        (7, 0.0, 0),
    ],
)
def test_cents_for(wh: int, price: float, cents: int) -> None:
    assert cents_for(wh, price) == cents


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (0, {"a": 5, "b": 0}, {"a": 0, "b": 0}),
        (10, {"a": 1, "b": 1}, {"a": 5, "b": 5}),
        (1, {"a": 1, "b": 1}, {"a": 1, "b": 0}),            # ties by id
        (1, {"b": 1, "a": 1}, {"a": 1, "b": 0}),
        (10, {"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}),
        (7, {"a": 0, "b": 3, "c": 1}, {"a": 0, "b": 5, "c": 2}),  # 5.25, 1.75
        (100, {"a": 333, "b": 333, "c": 334}, {"a": 33, "b": 33, "c": 34}),
        (3, {"a": 1, "b": 0, "c": 0}, {"a": 3, "b": 0, "c": 0}),
    ],
)
def test_largest_remainder(total: int, weights: dict[str, int], shares: dict[str, int]) -> None:
    assert largest_remainder(total, weights) == shares


def test_largest_remainder_refuses_what_it_cannot_share() -> None:
    with pytest.raises(ValueError, match="cannot share 5 cents"):
        largest_remainder(5, {"a": 0})


@pytest.mark.parametrize(("cents", "text"), [(0, "0.00 EUR"), (5, "0.05 EUR"),
                                             (-1234, "-12.34 EUR"), (100_000, "1000.00 EUR")])
def test_money_text(cents: int, text: str) -> None:
    assert money(cents, "EUR") == text


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**7), min_size=1, max_size=12))
def test_largest_remainder_sums_and_stays_within_a_cent(total: int, weights: list[int]) -> None:
    named = {f"m{i:02d}": w for i, w in enumerate(weights)}
    if not sum(weights):
        total = 0
    shares = largest_remainder(total, named)
    assert sum(shares.values()) == total
    for k, w in named.items():
        exact = Fraction(total * w, sum(weights)) if sum(weights) else Fraction(0)
        assert abs(shares[k] - exact) < 1
        assert w or not shares[k]


prices = st.integers(0, 5000).map(lambda x: x / 10000)  # up to 0.5 per kWh, 4 decimals
tariffs = st.builds(TariffConfig, currency=st.just("EUR"), peer_price_per_kwh=prices,
                    grid_import_per_kwh=prices, grid_export_per_kwh=prices,
                    coop_fee_per_kwh=prices)


@st.composite
def months(draw: st.DrawFn) -> dict[str, dict[str, int]]:
    """Per-member month sums whose pairs pair: built from individual transfers."""
    n = draw(st.integers(1, 8))
    ids = [f"m{i}" for i in range(n)]
    sums = {m: {f: 0 for pair in TRANSFERS.values() for f in pair} for m in ids}
    for m in ids:
        for f in ("from_grid", "grid_to_battery", "to_grid"):
            sums[m][f] = draw(st.integers(0, 10**7))
    for receiving, giving in TRANSFERS.values():
        for _ in range(draw(st.integers(0, 6))):
            to, frm = draw(st.sampled_from(ids)), draw(st.sampled_from(ids))
            wh = draw(st.integers(0, 10**7))
            sums[to][receiving] += wh
            sums[frm][giving] += wh
    return sums


@given(months(), tariffs)
def test_any_month_balances_to_the_cent(sums: dict[str, dict[str, int]],
                                        tariff: TariffConfig) -> None:
    budget = month_budget(sums, tariff)
    assert budget.imbalances() == []
    for kind, (receiving, giving) in TRANSFERS.items():
        total_wh = sum(s[receiving] for s in sums.values())
        assert budget.flowed[kind] == cents_for(total_wh, tariff.peer_price_per_kwh)
        for m, s in sums.items():
            # nobody is more than a cent from the exact price of their own Wh share
            if total_wh:
                for side, field in (("paid", receiving), ("earned", giving)):
                    exact = Fraction(budget.flowed[kind] * s[field], total_wh)
                    assert abs(getattr(budget.members[m], side)[kind] - exact) < 1
    fee_wh = sum(s[f] for s in sums.values() for f in FEE_FIELDS)
    assert budget.fund == cents_for(fee_wh, tariff.coop_fee_per_kwh)
    assert sum(m.net_between_members for m in budget.members.values()) == -budget.fund
    for m, s in sums.items():
        assert budget.members[m].grid_import == cents_for(
            s["from_grid"] + s["grid_to_battery"], tariff.grid_import_per_kwh)


#: Starts a few hours before a month ends: into February, into March, into the new year.
STARTS = [JAN31_20H] + [int(datetime(*d, tzinfo=UTC).timestamp())
                        for d in ((2026, 2, 28, 21), (2025, 12, 31, 22, 30))]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), t0=st.sampled_from(STARTS),
       cycles=st.integers(1, 60), step=st.sampled_from([300, 900, 3600]), tariff=tariffs)
def test_every_month_of_a_random_ledger_balances(seed: int, n: int, t0: int, cycles: int,
                                                 step: int, tariff: TariffConfig) -> None:
    members = tuple(f"h{i:02d}" for i in range(n))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        build_ledger(path, members, seed=seed, t0=t0, cycles=cycles, cycle_s=900, step=step,
                     gap_prob=0.1, invalid_prob=0.1)
        reader = LedgerReader(path)
        first, last, _ = reader.span()
        if first is None:
            return
        month = month_start(first)
        event(f"months: {len(range(month, last, 28 * 86400))}")
        while month < last:
            report = coop_report(reader, month, tariff)
            budget = report.budget
            assert budget is not None and budget.imbalances() == []
            assert report_dict(report)["budget"]["balanced"]
            statements = [member_statement(reader, m, month, tariff=tariff) for m in members]
            # each statement's money is its line in the coop's budget, and they all add up
            assert [s.money for s in statements] == [budget.members[m] for m in members]
            paid = sum(sum(s.money.paid.values()) for s in statements)
            earned = sum(sum(s.money.earned.values()) for s in statements)
            assert paid == earned == budget.flowed_between_members
            assert sum(s.money.coop_fee for s in statements) == budget.fund
            assert sum(s.money.net_between_members for s in statements) + budget.fund == 0
            month = next_month(month)


@settings(max_examples=20)
@given(months(), tariffs, st.dictionaries(st.sampled_from(["m0", "m1", "m2", "m3"]),
                                          st.floats(0.0, 0.5), max_size=4))
def test_wear_is_paid_by_the_fund_and_the_books_still_balance(
        sums: dict[str, dict[str, int]], tariff: TariffConfig, wear: dict[str, float]) -> None:
    """Each owner earns its battery_to_coop at its wear price, from the coop's fund."""
    budget = month_budget(sums, tariff, wear)
    plain = month_budget(sums, tariff)
    assert budget.imbalances() == []
    for m, s in sums.items():
        assert budget.members[m].wear == cents_for(s["battery_to_coop"], wear.get(m, 0.0))
        assert (budget.members[m].net_between_members
                == plain.members[m].net_between_members + budget.members[m].wear)
    assert budget.fund == plain.fund - budget.wear_paid
    assert budget.as_dict()["wear_paid_to_owners_cents"] == budget.wear_paid
