"""Federation shares in the ledger: split by each coop's policy, booked once, balanced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.federation.allocation import settle
from controller.federation.apportion import apportion, coop_offer, member_split
from controller.federation.offers import Offer
from controller.ledger import LedgerReader, LedgerWriter
from controller.ledger.federation_rows import booked_intervals, write_shares
from tests.federation_helpers import commit_interval

STEP = 900
flows = st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(flows, min_size=2, max_size=6), st.sampled_from(["prorata", "equal"]),
       st.lists(st.sampled_from(["prorata", "equal", "static", "tiers"]), min_size=6,
                max_size=6))
def test_members_books_balance_across_coops(coops: list[list[tuple[int, int]]], rule: str,
                                            policies: list[str]) -> None:
    offers, members = [], {}
    for k, rows in enumerate(coops):
        to_grid = np.array([t for t, _ in rows], dtype=np.int64)
        from_grid = np.array([f for _, f in rows], dtype=np.int64)
        members[f"c{k}"] = (to_grid, from_grid)
        offers.append(Offer(f"c{k}", STEP, *coop_offer(to_grid, from_grid), seq=1))
    settlement = settle(STEP, offers, rule, "charter")
    total_to = total_from = 0
    for k, (coop, (to_grid, from_grid)) in enumerate(members.items()):
        c_to, c_from = settlement.for_coop(coop)
        n = len(to_grid)
        shares = apportion(STEP, settlement.digest, tuple(f"m{j}" for j in range(n)), c_to,
                           c_from, to_grid, from_grid, policies[k],
                           np.linspace(1.0, 2.0, n), np.arange(n) % 3)
        assert int(shares.to_federation.sum()) == c_to
        assert int(shares.from_federation.sum()) == c_from
        assert (shares.to_federation <= to_grid).all() and (shares.to_federation >= 0).all()
        assert (shares.from_federation <= from_grid).all()
        total_to += int(shares.to_federation.sum())
        total_from += int(shares.from_federation.sum())
    assert total_to == total_from


def test_equal_policy_splits_equally_within_the_coop() -> None:
    shares = apportion(STEP, "h", ("a", "b", "c"), 0, 900, np.zeros(3, dtype=np.int64),
                       np.array([100, 2000, 2000]), "equal")
    assert shares.from_federation.tolist() == [100, 400, 400]
    shares = apportion(STEP, "h", ("a", "b", "c"), 0, 900, np.zeros(3, dtype=np.int64),
                       np.array([100, 2000, 2000]), "prorata")
    assert shares.from_federation.tolist() == [22, 439, 439]


def test_federation_energy_is_liberated_and_export_not_counted_twice() -> None:
    receiving = {"own_pv_used": 100, "from_peers": 50, "from_grid": 400, "from_federation": 300}
    split = member_split(receiving)
    assert split["liberated"] == 100 + 50 + 300
    assert split["from_grid_net"] == 100  # only what truly came from the grid
    sending = {"own_pv_used": 10, "to_grid": 700, "to_federation": 300}
    split = member_split(sending)
    assert split["to_grid_net"] == 400 and split["liberated"] == 10
    assert split["to_grid_net"] + split["to_federation"] == sending["to_grid"]


def test_booked_once_and_old_ledgers_still_open(tmp_path: Path) -> None:
    path = tmp_path / "coop.sqlite"
    members = ("m1", "m2")
    writer = LedgerWriter(path, STEP, [(m, m) for m in members])
    commit_interval(writer, members, STEP * 10, STEP, [0, 0], [300, 100])
    assert writer.flush()
    writer.close()
    # A ledger written before the federation: no federation tables.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE federation_wh")
    conn.execute("DROP TABLE federation_interval")
    conn.commit()
    conn.close()
    old = LedgerReader(path)
    assert old.federation_by_member() == {m: {"to_federation": 0, "from_federation": 0}
                                          for m in members}
    before = old.totals()
    writer = LedgerWriter(path, STEP, [(m, m) for m in members])  # adds the tables
    shares = apportion(STEP * 10, "abc", members, 0, 200, np.zeros(2, dtype=np.int64),
                       np.array([300, 100]), "prorata")
    results = []
    writer.submit(lambda conn, numbers: results.append(write_shares(conn, shares, numbers,
                                                                    STEP)))
    writer.submit(lambda conn, numbers: results.append(write_shares(conn, shares, numbers,
                                                                    STEP)))
    assert writer.flush()
    writer.close()
    assert results == [True, False]  # the second time is refused: never counted twice
    reader = LedgerReader(path)
    after = reader.totals()
    # The immutable rows are untouched; the federation's Wh are read beside them.
    assert {k: v for k, v in after.items() if "federation" not in k} == {
        k: v for k, v in before.items() if "federation" not in k}
    assert (after["from_federation"], after["to_federation"]) == (200, 0)
    assert reader.federation_by_member() == {"m1": {"to_federation": 0, "from_federation": 150},
                                             "m2": {"to_federation": 0, "from_federation": 50}}
    conn = sqlite3.connect(path)
    assert booked_intervals(conn) == [(STEP * 10, "abc", 0, 200)]
    conn.close()
