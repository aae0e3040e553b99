"""Curtailment booked with its cause: the causes split ``curtailed`` to the Wh, survive an
upgrade of the ledger and of its saved open interval, and follow the cycle's situation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.island.curtail_estimate import CurtailEstimate, booked_causes
from controller.ledger import CycleEnergy, IntervalBook
from controller.ledger.accumulator import CarryState, pack_open, split_to_total, unpack_state
from controller.ledger.migrate import COLUMNS_BEFORE_CAUSES
from controller.ledger.schema import CAUSE_FIELDS, MEMBER_COLUMNS
from dispatch import LEDGER_FIELDS


@settings(max_examples=60, deadline=None)
@given(total=st.lists(st.integers(0, 10_000), min_size=1, max_size=5),
       data=st.data())
def test_the_causes_add_up_to_the_curtailed_wh(total: list[int], data: st.DataObject) -> None:
    n = len(total)
    parts = np.array(data.draw(st.lists(st.lists(st.floats(0, 1e4), min_size=n, max_size=n),
                                        min_size=3, max_size=3)))
    got = split_to_total(np.array(total), parts)
    weight = parts.sum(axis=0)
    assert (got >= 0).all()
    assert got.sum(axis=0).tolist() == [t if w > 0 else 0 for t, w in zip(total, weight,
                                                                            strict=True)]
    target = np.divide(parts * np.array(total), weight, out=np.zeros_like(parts),
                       where=weight > 0)
    assert np.abs(got - target).max() < 1.0 + 1e-9  # never more than a Wh from its share


@pytest.mark.parametrize(("islanded", "dispatch", "command", "former", "expected", "why"), [
    (False, 300.0, 0.0, 0.0, {"export_cap": 300.0}, "past the export cap"),
    (False, 100.0, 400.0, 0.0, {"export_cap": 400.0}, "a cap for the export cap holds more"),
    (True, 0.0, 200.0, 500.0, {"command": 200.0, "grid_former": 500.0}, "both on an island"),
    (True, 900.0, 200.0, 500.0, {"command": 400.0, "grid_former": 500.0},
     "the dispatch's own surplus is a command"),
    (True, 0.0, 0.0, 0.0, {}, "nothing held back"),
    (False, 0.0, 300.0, 0.0, {"command": 300.0}, "no export cap: a cap left by the island"),
])
def test_each_cycle_books_its_causes(islanded: bool, dispatch: float, command: float,
                                     former: float, expected: dict[str, float],
                                     why: str) -> None:
    est = CurtailEstimate(np.array([command + former]),
                          {"command": np.array([command]), "grid_former": np.array([former])})
    out = booked_causes(np.array([dispatch]), est, 1.0, islanded, export_cap="island" not in why)
    causes = {f.removeprefix("curtailed_"): float(out[f][0]) for f in CAUSE_FIELDS}
    assert causes == {c: expected.get(c, 0.0) for c in causes}, why
    assert out["curtailed"][0] == pytest.approx(sum(causes.values())), why


def _cycles(book: IntervalBook, t0: int, count: int, rng: np.random.Generator,
            ) -> tuple[list, np.ndarray]:
    out, fed = [], np.zeros((3, 2))
    for k in range(count):
        flows = {f: np.zeros(2) for f in LEDGER_FIELDS}
        causes = rng.uniform(0, 3, (3, 2)) * (rng.uniform(size=(3, 2)) < 0.5)
        flows |= dict(zip(CAUSE_FIELDS, causes, strict=True))
        flows["curtailed"] = causes.sum(axis=0)
        fed += causes
        out += book.add_cycle(CycleEnergy(t0 + 60 * k, t0 + 60 * (k + 1), flows,
                                          np.ones(2, bool), np.full((3, 2), np.nan)))
    return out, fed


def test_committed_intervals_split_curtailed_by_cause_to_the_wh() -> None:
    ids = ("a", "b")
    book = IntervalBook(ids, 900, None, CarryState.fresh(2))
    closed, fed = _cycles(book, 1_800_000_000 // 900 * 900, 15 * 12, np.random.default_rng(7))
    assert len(closed) == 12  # the last cycle ends on the boundary
    booked = np.zeros((3, 2))
    for interval, _ in closed:
        causes = np.stack([interval.column(f) for f in CAUSE_FIELDS])
        assert causes.sum(axis=0).tolist() == interval.column("curtailed").tolist()
        booked += causes
    # nothing lost: each cause's Wh are its fed energy less a carry under a Wh or two
    assert fed.sum() > 500
    assert np.abs(booked - fed).max() < 2.0, (booked, fed)


def test_an_open_interval_saved_before_the_causes_reads_into_the_right_rows() -> None:
    ids = ("a", "b")
    book = IntervalBook(ids, 900, None, CarryState.fresh(2))
    _cycles(book, 1_800_000_000 // 900 * 900, 3, np.random.default_rng(1))
    header, blob = pack_open(book.acc, book.carry, ids)
    # As the controller before this upgrade saved it: rows without the causes, unnamed.
    import json
    old = json.loads(header)
    del old["columns"]
    amounts = book.acc.amounts[[MEMBER_COLUMNS.index(c) for c in COLUMNS_BEFORE_CAUSES]]
    arrays = np.frombuffer(blob, dtype=np.float64)[book.acc.amounts.size:]
    old["shapes"][0] = list(amounts.shape)
    acc, _ = unpack_state((json.dumps(old), amounts.tobytes() + arrays.tobytes()), None, ids)
    for c in COLUMNS_BEFORE_CAUSES:
        assert acc.row(c).tolist() == book.acc.row(c).tolist(), c
    for c in CAUSE_FIELDS:
        assert acc.row(c).tolist() == [0.0, 0.0]
    new, _ = unpack_state((header, blob), None, ids)
    assert np.array_equal(new.amounts, book.acc.amounts)


@settings(max_examples=40, deadline=None)
@given(dispatch=st.floats(0, 1e4), command=st.floats(0, 1e4), former=st.floats(0, 1e4),
       islanded=st.booleans(), extra=st.integers(0, 10_000))
def test_causes_split_curtailed_and_never_move_load_served_or_liberated(
        dispatch: float, command: float, former: float, islanded: bool, extra: int) -> None:
    from controller.accounts.figures import energy_wh

    est = CurtailEstimate(np.array([command + former]),
                          {"command": np.array([command]), "grid_former": np.array([former])})
    out = booked_causes(np.array([dispatch]), est, 1.0, islanded)
    parts = [float(out[f][0]) for f in CAUSE_FIELDS]
    assert min(parts) >= 0.0
    assert sum(parts) == pytest.approx(float(out["curtailed"][0]), rel=1e-12, abs=1e-9)
    assert out["curtailed"][0] >= max(dispatch, command + former) - 1e-9
    # a cause's Wh in the sums changes nothing but itself: curtailed PV is never load,
    # served or liberated, and pv counts it once, through curtailed
    sums = {f: 100 for f in LEDGER_FIELDS}
    base = energy_wh(sums)
    with_causes = energy_wh(sums | dict.fromkeys(CAUSE_FIELDS, extra))
    for k in ("load", "served", "liberated", "pv", "curtailed"):
        assert with_causes[k] == base[k], k
