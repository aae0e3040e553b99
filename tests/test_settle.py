"""Settling an interval on the meters' counters (controller/ledger/settle.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.ledger.accumulator import ROW, OpenInterval
from controller.ledger.settle import FLAG_WH, METER_IN, METER_OUT, settle_on_counters
from dispatch.rounding import LIBERATED_FIELDS, PAIRED

GRID = ("from_grid", "to_grid", "grid_to_battery", "battery_to_grid")
CHARGE = ("to_battery", "battery_from_coop", "grid_to_battery", "battery_from_batteries")
DISCHARGE = ("from_battery", "battery_to_coop", "battery_to_grid", "battery_to_batteries")
SPLIT = ("own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers",
         "from_peers", "to_coop_battery", "from_coop_battery", "from_coop_battery_coop",
         "battery_from_coop", "battery_to_coop", "grid_to_battery", "battery_to_grid",
         "battery_to_batteries", "battery_from_batteries", "to_grid", "from_grid")


def _interval(rng: np.random.Generator, n: int) -> OpenInterval:
    """Random estimated flows with exact pairs and coop parts within their wholes."""
    acc = OpenInterval.empty(0, n)
    for f in SPLIT:
        acc.row(f)[:] = rng.uniform(0, 300, n) * (rng.random(n) < 0.6)
    for receiving, sending in PAIRED.items():  # scale receivers to the senders' sum
        total, got = acc.row(sending).sum(), acc.row(receiving).sum()
        acc.row(receiving)[:] *= total / got if got > 0 else 0.0
        if got == 0:
            acc.row(sending)[:] = 0.0
    acc.row("from_battery_coop")[:] = acc.row("from_battery") * rng.random(n)
    acc.row("from_coop_battery_coop")[:] = acc.row("from_coop_battery") * rng.random(n)
    acc.row("unallocated_import")[:] = rng.uniform(0, 50, n) * (rng.random(n) < 0.2)
    booked_in = sum(acc.row(f) for f in METER_IN)
    booked_out = sum(acc.row(f) for f in METER_OUT)
    # The counters: near the estimate, sometimes far from it, either way.
    acc.row("meter_import")[:] = np.maximum(booked_in * rng.uniform(0.5, 1.5, n)
                                            + rng.normal(0, 20, n), 0)
    acc.row("meter_export")[:] = np.maximum(booked_out * rng.uniform(0.5, 1.5, n)
                                            + rng.normal(0, 20, n), 0)
    return acc


def _totals(acc: OpenInterval, names: tuple[str, ...]) -> np.ndarray:
    return sum(acc.row(f).copy() for f in names)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 25), st.integers(0, 2**32 - 1), st.booleans())
def test_settling_moves_the_books_to_the_counters_and_keeps_every_rule(n, seed, islanded):
    rng = np.random.default_rng(seed)
    acc = _interval(rng, n)
    counted = rng.random(n) < 0.8
    before = acc.amounts.copy()
    in0, out0 = _totals(acc, METER_IN), _totals(acc, METER_OUT)
    charge0, discharge0 = _totals(acc, CHARGE), _totals(acc, DISCHARGE)
    liberated0 = _totals(acc, LIBERATED_FIELDS)
    grid0 = {f: acc.row(f).copy() for f in GRID}
    flagged = settle_on_counters(acc, counted, islanded)
    if islanded:  # not settled: only the drift and the flags are recorded
        for f in (*SPLIT, *METER_IN, *METER_OUT):
            np.testing.assert_array_equal(acc.row(f), before[ROW[f]], err_msg=f)
        for f in GRID:
            assert (acc.row(f) <= grid0[f] + 1e-9).all(), f
    tol = 1e-6 * max(1.0, float(np.abs(before).sum()))
    for f in (*SPLIT, *METER_IN, *METER_OUT):
        assert (acc.row(f) >= -tol).all(), f"no flow goes negative: {f}"
    for receiving, sending in PAIRED.items():  # pairs still match exactly
        assert abs(acc.row(receiving).sum() - acc.row(sending).sum()) <= tol
    assert (acc.row("from_battery_coop") <= acc.row("from_battery") + tol).all()
    assert (acc.row("from_coop_battery_coop") <= acc.row("from_coop_battery") + tol).all()
    # each battery did what it measured; grid or gap energy never becomes liberated
    np.testing.assert_allclose(_totals(acc, CHARGE), charge0, atol=tol)
    np.testing.assert_allclose(_totals(acc, DISCHARGE), discharge0, atol=tol)
    assert (_totals(acc, LIBERATED_FIELDS) <= liberated0 + tol).all()
    # every counted meter moved to its counter (all the way unless only measured battery
    # flows were left to cut); no other meter's total changed
    in1, out1 = _totals(acc, METER_IN), _totals(acc, METER_OUT)
    m_in, m_out = acc.row("meter_import"), acc.row("meter_export")
    directions = () if islanded else ((in1, in0, m_in), (out1, out0, m_out))
    for booked, start, meter in directions:
        reached = np.abs(booked - meter) <= tol
        between = (np.minimum(start, meter) - tol <= booked) & (booked <= np.maximum(start, meter)
                                                                + tol)
        assert (~counted | reached | between).all()
        assert (~counted | reached | (meter < start)).all(), "more counted: always reached"
        np.testing.assert_allclose(booked[~counted], start[~counted], atol=tol)
    # what the counters said beyond the estimate is kept, and big disagreements are flagged
    np.testing.assert_allclose(acc.row("meter_import_drift"), np.where(counted, m_in - in0, 0),
                               atol=tol)
    assert (flagged <= counted).all()
    assert (flagged >= counted & (np.abs(m_in - in0) > np.maximum(0.1 * m_in, FLAG_WH)
                                  + tol)).all()


def test_the_issue_case_grid_import_the_sampling_missed_is_booked_from_the_grid() -> None:
    """A meter counted 47 Wh more import than the samples saw: booked from_grid, never
    liberated; the neighbour's export that sampling over-counted goes to the grid."""
    acc = OpenInterval.empty(0, 2)
    acc.row("from_peers")[:] = [100.0, 0.0]
    acc.row("to_peers")[:] = [0.0, 100.0]
    acc.row("own_pv_used")[:] = [50.0, 300.0]
    acc.row("meter_import")[:] = [147.0, 0.0]
    acc.row("meter_export")[:] = [0.0, 80.0]
    flagged = settle_on_counters(acc, np.array([True, True]), islanded=False)
    assert acc.row("from_grid").tolist() == [67.0, 0.0]  # 47 missed + 20 the peer never sent
    assert acc.row("from_peers").tolist() == [80.0, 0.0]
    assert acc.row("to_peers").tolist() == [0.0, 80.0]
    assert acc.row("own_pv_used").tolist() == [50.0, 300.0]
    assert acc.row("meter_import_drift").tolist() == [47.0, 0.0]
    assert acc.row("meter_export_drift").tolist() == [0.0, -20.0]
    assert not flagged.any()  # 47 Wh is below the 50 Wh floor of the flag


def test_a_meter_far_from_its_power_is_flagged_and_written(tmp_path) -> None:  # noqa: ANN001
    from controller.ledger import CycleEnergy, IntervalBook, LedgerReader, LedgerWriter
    from controller.ledger.accumulator import CarryState
    from dispatch import LEDGER_FIELDS

    ids = ("a", "b")
    writer = LedgerWriter(tmp_path / "l.sqlite", 900, [(m, m) for m in ids])
    book = IntervalBook(ids, 900, None, CarryState.fresh(2))
    flows = {f: np.zeros(2) for f in LEDGER_FIELDS}
    flows["from_grid"] = np.array([100.0, 100.0])  # 100 Wh a cycle by sampled power
    counters = np.array([[0.0, 0.0], [0.0, 0.0], [np.nan, np.nan]])
    t = 1_800_000_000 // 900 * 900
    for k in range(1, 31):  # 30 cycles of 30 s, from an interval boundary
        counters[0] += [100.0, 200.0]  # a counts what its power says, b twice as much
        for interval, parts in book.add_cycle(CycleEnergy(t + 30 * (k - 1), t + 30 * k,
                                                          flows, np.ones(2, bool),
                                                          counters.copy())):
            writer.commit(interval, parts)
    for k in range(31, 61):
        counters[0] += [100.0, 200.0]
        for interval, parts in book.add_cycle(CycleEnergy(t + 30 * (k - 1), t + 30 * k,
                                                          flows, np.ones(2, bool),
                                                          counters.copy())):
            writer.commit(interval, parts)
            assert interval.flagged == ("b/meter",)
            # settled on the counters (the first cycle preceded the first reading)
            assert interval.column("from_grid").tolist() == [3000, 6000]
            assert interval.column("meter_import_drift").tolist() == [0, 3000]
    writer.flush()
    writer.close()
    rows = LedgerReader(tmp_path / "l.sqlite").intervals()
    assert [r["flagged"] for r in rows] == [None, '["b/meter"]']


def test_a_ledger_from_before_the_new_columns_gets_them_on_open(tmp_path) -> None:  # noqa: ANN001
    """A version 2 ledger written before battery_to_grid, the battery-to-battery pair, the
    drift columns, the causes of curtailment and intervals.flagged existed: opened by a
    writer, it gains them (zeros, NULL), keeps its rows, and books and reads as a new one."""
    import sqlite3

    from controller.ledger import CycleEnergy, IntervalBook, LedgerReader, LedgerWriter
    from controller.ledger.accumulator import CarryState
    from dispatch import LEDGER_FIELDS

    path = tmp_path / "old.sqlite"
    ids = ("a", "b")
    writer = LedgerWriter(path, 900, [(m, m) for m in ids])
    book = IntervalBook(ids, 900, None, CarryState.fresh(2))
    flows = {f: np.full(2, 5.0) for f in LEDGER_FIELDS}
    nan = np.full((3, 2), np.nan)
    t = 1_800_000_000 // 900 * 900
    for k in range(40):
        for interval, parts in book.add_cycle(CycleEnergy(t + 30 * k, t + 30 * (k + 1), flows,
                                                          np.ones(2, bool), nan)):
            writer.commit(interval, parts)
    writer.close()
    new = ("battery_to_grid", "battery_to_batteries", "battery_from_batteries",
           "meter_import_drift", "meter_export_drift", "curtailed_command",
           "curtailed_export_cap", "curtailed_grid_former")
    conn = sqlite3.connect(path)
    conn.execute("DROP VIEW member_energy")
    for table in ("intervals", "member_wh", "rollup_member", "rollup_coop"):
        for c in new:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {c}")
    conn.execute("ALTER TABLE intervals DROP COLUMN flagged")
    conn.commit()
    conn.close()
    assert LedgerReader(path).intervals()[0]["flagged"] is None  # readable before the upgrade

    LedgerWriter(path, 900, [(m, m) for m in ids]).close()
    reader = LedgerReader(path)
    totals = reader.totals("a")
    assert totals["battery_to_grid"] == 0 and totals["meter_import_drift"] is None
    # booked before its causes were: the curtailment stays whole, of no recorded cause
    assert totals["curtailed"] == 5 * 30 and totals["curtailed_grid_former"] == 0
    assert totals["own_pv_used"] == 5 * 30  # the committed rows kept their values
    assert [r["flagged"] for r in reader.intervals()] == [None]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT SUM(battery_to_grid) FROM member_energy").fetchone()[0] == 0
    conn.close()


def test_islanded_battery_energy_nothing_in_the_coop_explains_is_unallocated() -> None:
    """Islanded there is no grid: a battery charging beyond every source the readings show
    is booked unallocated (crossed its meter, never liberated), not grid_to_battery."""
    from controller.ledger.measured import ledger_flows
    from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick

    fleet = Fleet(np.array([10_000.0, 0.0]), np.zeros(2), np.full(2, 5000.0),
                  np.full(2, 5000.0), np.ones(2))
    state = FleetState.start(np.array([5000.0, 0.0]))
    pv, load = np.array([0.0, 1000.0]), np.array([0.0, 400.0])
    battery_w = np.array([-900.0, np.nan])  # 900 W in; only 600 W of surplus anywhere
    for islanded, grid in ((False, 300.0), (True, 0.0)):
        booked = dispatch_tick(fleet, state, pv, load, None, 3600.0,
                               limits=CoopLimits(islanded=islanded), battery_w=battery_w)
        assert booked.battery_from_coop[0] == 600.0 and booked.grid_to_battery[0] == 300.0
        flows, unallocated = ledger_flows(booked, islanded)
        assert flows["grid_to_battery"][0] == grid
        assert (unallocated is None) == (not islanded)
        if islanded:
            assert unallocated[0].tolist() == [300.0, 0.0]
