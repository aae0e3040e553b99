"""Properties of the books: splitting conserves energy, rollups equal the raw intervals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.ledger import CycleEnergy, IntervalBook, LedgerReader
from controller.ledger.accumulator import CarryState
from controller.ledger.periods import DAY, HOUR, INTERVAL, MONTH, plan_range, split_span
from controller.ledger.schema import MEMBER_COLUMNS
from dispatch import LEDGER_FIELDS
from dispatch.rounding import PAIRED, PARTS
from tests.ledger_helpers import random_flows, write_ledger

# Two days either side of a month's end (UTC), so months, days and hours all have edges.
MONTH_END = datetime(2026, 5, 31, 22, 0, tzinfo=UTC).timestamp()
IDS = ("a", "b", "c")


@pytest.mark.parametrize(("a", "b", "step", "expected"), [
    (0, 900, 900, [(0, 0, 900)]),
    (100, 1000, 900, [(0, 100, 900), (900, 900, 1000)]),
    (850, 2750, 900, [(0, 850, 900), (900, 900, 1800), (1800, 1800, 2700), (2700, 2700, 2750)]),
    (60, 60, 300, []),
])
def test_split_span_table(a, b, step, expected) -> None:
    assert split_span(a, b, step) == expected


def test_plan_range_uses_the_coarsest_periods() -> None:
    start = int(datetime(2026, 4, 30, 23, 45, tzinfo=UTC).timestamp())
    end = int(datetime(2026, 6, 2, 1, 30, tzinfo=UTC).timestamp())
    plan = plan_range(start, end, 900)
    levels = [level for level, _, _ in plan]
    assert levels == [INTERVAL, MONTH, DAY, HOUR, INTERVAL]
    assert plan[0][1] == start and plan[-1][2] == end
    assert all(a[2] == b[1] for a, b in zip(plan, plan[1:], strict=False))  # contiguous


@st.composite
def cycle_plans(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Back-to-back cycles of random length, some with the controller down in between."""
    t = MONTH_END - draw(st.integers(0, 3 * 3600))
    out = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.booleans()) and draw(st.booleans()):
            t += draw(st.floats(1, 4000))  # down for a while
        dt = draw(st.floats(0.5, 1500))
        out.append((t, t + dt))
        t += dt
    return out


@settings(max_examples=60, deadline=None)
@given(plan=cycle_plans(), seed=st.integers(0, 2**32 - 1), step=st.sampled_from([60, 300, 900]))
def test_booking_conserves_every_wh_and_pairs_every_interval(plan, seed, step) -> None:
    rng = np.random.default_rng(seed)
    book = IntervalBook(IDS, step, None, CarryState.fresh(3))
    floats = {f: np.zeros(3) for f in LEDGER_FIELDS}
    booked = {f: np.zeros(3, dtype=np.int64) for f in LEDGER_FIELDS}
    down = covered = 0.0
    previous = None
    for a, b in plan:
        flows = random_flows(rng, 3)
        for f in LEDGER_FIELDS:
            floats[f] += flows[f]
        for interval, _ in book.add_cycle(CycleEnergy(a, b, flows, np.ones(3, dtype=bool),
                                                      np.full((3, 3), np.nan))):
            assert interval.start_ts % step == 0 and interval.end_ts == interval.start_ts + step
            for receiver, sender in PAIRED.items():  # pairs balance to the Wh, every interval
                assert interval.booked[receiver].sum() == interval.booked[sender].sum()
            for part, whole in PARTS.items():
                assert (interval.booked[part] <= interval.booked[whole]).all()
            assert interval.counts["covered_s"] + interval.counts["gap_s_coop"] == step
            for f in LEDGER_FIELDS:
                booked[f] += interval.booked[f]
            covered += interval.counts["covered_s"]
            down += interval.counts["gap_s_coop"]
        previous = b if previous is None else previous
    # what is not committed yet sits in the open interval or the carries: nothing leaks
    for f in LEDGER_FIELDS:
        open_part = book.acc.row(f) + book.carry.carries[f]
        np.testing.assert_allclose(booked[f] + open_part, floats[f], atol=1e-6, err_msg=f)
        # paired flows move whole Wh between members, so a carry may pass 1 Wh, boundedly
        assert (np.abs(book.carry.carries[f]) < len(IDS) + 1).all(), f
    total = plan[-1][1] - plan[0][0] // step * step  # the first interval's head is a gap
    acc = book.acc.counts
    assert covered + down + acc["covered_s"] + acc["gap_s_coop"] == pytest.approx(total, abs=2)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> LedgerReader:
    """Two days of random cycles across a month's end, 300 s settlement."""
    path = tmp_path_factory.mktemp("rollups") / "l.sqlite"
    rng = np.random.default_rng(11)
    cycles = [random_flows(rng, 3) for _ in range(2 * 24 * 60)]
    counters = np.array([[10.0, np.nan, 5.0], [0.0, np.nan, 0.0], [np.nan] * 3])
    write_ledger(path, IDS, 300, MONTH_END - 86400, 60.0, cycles, counters)
    return LedgerReader(path)


def _raw(reader: LedgerReader, member: str | None, lo: float, hi: float) -> dict:
    columns = ", ".join(f"SUM(e.{c})" for c in MEMBER_COLUMNS)
    where = "" if member is None else "AND m.id = ?"
    row = reader._conn().execute(
        f"SELECT {columns}, COUNT(DISTINCT e.start_ts) FROM member_energy e "
        f"JOIN members m ON m.no = e.member_no WHERE e.start_ts >= ? AND e.start_ts + ? <= ? "
        f"{where}", (lo, reader.step, hi, *([] if member is None else [member]))).fetchone()
    return {**dict(zip(MEMBER_COLUMNS, row, strict=False)), "intervals": row[-1]}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.floats(-3 * 86400, 2 * 86400), length=st.floats(0, 3 * 86400),
       member=st.sampled_from([None, *IDS]))
def test_any_range_from_rollups_equals_the_raw_intervals(ledger, lo, length, member) -> None:
    start, end = MONTH_END + lo, MONTH_END + lo + length
    fast = ledger.totals(member, start, end)
    raw = _raw(ledger, member, start, end)
    for column in MEMBER_COLUMNS:
        if raw[column] is None and column.startswith("meter"):
            assert fast[column] is None or fast[column] == 0 or raw["intervals"] == 0, column
            continue
        assert fast[column] == (raw[column] or 0), (column, member, start, end)
    assert fast["intervals"] == raw["intervals"]
    if member is None:
        by_member = ledger.totals_by_member(start, end)
        for column in MEMBER_COLUMNS[:17]:
            assert sum(t[column] or 0 for t in by_member.values()) == fast[column]


def test_hourly_series_sums_to_the_range(ledger) -> None:
    start, end = MONTH_END - 6 * 3600, MONTH_END + 6 * 3600
    series = ledger.series("b", start, end, "hour")
    assert len(series) == 12 and [s for s, _ in series] == list(range(int(start), int(end), 3600))
    total = ledger.totals("b", start, end)
    for f in LEDGER_FIELDS:
        assert sum(row[f] for _, row in series) == total[f]


def test_member_without_counters_reads_none_not_zero(ledger) -> None:
    assert ledger.totals("b")["meter_import"] is None
    assert ledger.totals("a")["meter_import"] == 0  # counters that did not move: zero
    assert Path(ledger.path).exists()
