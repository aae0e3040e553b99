"""Where a Wh is booked: each cycle's energy goes into its settlement interval.

:meth:`IntervalBook.add_cycle` takes what one control cycle decided (the
dispatch's flows over ``[start, end]``) and the meters' energy counters read
at ``end``, cuts the cycle at settlement boundaries in proportion to time,
adds the pieces to the open interval, and returns each interval that closed,
in whole Wh, ready to commit.

Time the dispatch did not book is a gap, never zero energy: the controller
was down (``[previous end, start]``), or a member's device was unknown. The
gap's seconds are recorded per member; the energy its meters' counters
recorded meanwhile is booked as *unallocated* (never liberated) when the
counters are read again; where no counter exists the seconds are recorded
as ``unknown_s``.

A member in a gap may still have flows booked across its meter (islanded, what a
household whose battery stopped answering exported:
:func:`~controller.ledger.measured.book_silent_supply`): its counters' energy is
unallocated only beyond those, so no Wh is counted twice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from controller.ledger.accumulator import (
    COUNTERS,
    CarryState,
    CommittedInterval,
    OpenInterval,
    book_interval,
    pack_carries,
    pack_open,
)
from controller.ledger.periods import split_span
from controller.ledger.schema import CAUSE_FIELDS, MEMBER_AMOUNTS
from controller.ledger.settle import METER_IN, METER_OUT
from dispatch.rounding import LEDGER_FIELDS

FloatArray = NDArray[np.float64]
#: Counters jitter by a fraction of a Wh; a bigger drop is a reset, never energy.
RESET_TOLERANCE_WH = 1.0
Parts = dict[str, tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class CycleEnergy:
    """One cycle as the ledger sees it.

    ``flows`` are the dispatch's Wh over ``[start, end]`` (zero for members not
    dispatched), optionally with ``curtailed_<cause>`` splitting ``curtailed``;
    ``valid`` says which members were dispatched, ``counters`` holds the lifetime
    Wh counters (import, export, pv) read at ``end``, NaN where a device has none
    or did not answer.
    """

    start: float
    end: float
    flows: dict[str, FloatArray]
    valid: NDArray[np.bool_]
    counters: FloatArray
    islanded: bool = False
    missing: tuple[str, ...] = ()
    #: Wh over the cycle that crossed members' meters but cannot be split (rows: import,
    #: export): booked as ``unallocated_*``, never liberated.
    unallocated: FloatArray | None = None


class IntervalBook:
    """The open interval and everything that carries over, for one ledger."""

    def __init__(self, member_ids: tuple[str, ...], step: int, acc: OpenInterval | None,
                 carry: CarryState) -> None:
        self.member_ids = member_ids
        self.step = step
        self.carry = carry
        self.acc = acc
        self.resets = np.zeros((len(COUNTERS), len(member_ids)), dtype=np.int64)

    def _counter_deltas(self, c: CycleEnergy) -> tuple[FloatArray, FloatArray]:
        """Counter increments since the last reading and the time they span."""
        carry = self.carry
        now_known = np.isfinite(c.counters)
        both = now_known & np.isfinite(carry.counters)
        raw = np.where(both, c.counters - carry.counters, 0.0)
        reset = both & (raw < -RESET_TOLERANCE_WH)
        self.resets += reset
        deltas = np.where(both & ~reset, np.maximum(raw, 0.0), 0.0)
        spans = np.where(both, c.end - carry.counters_ts, 0.0)
        deltas = np.where(spans > 0, deltas, 0.0)
        carry.counters = np.where(now_known, c.counters, carry.counters)
        carry.counters_ts = np.where(now_known, c.end, carry.counters_ts)
        return deltas, spans

    def add_cycle(self, c: CycleEnergy) -> list[tuple[CommittedInterval, Parts]]:
        """Book one cycle; return the intervals that closed, each with the state after it."""
        carry, n = self.carry, len(self.member_ids)
        prev_end = carry.end_ts
        # A ledger's very first interval starts before its first cycle: that part is a gap.
        window_start = (c.start // self.step * self.step if prev_end is None
                        else min(prev_end, c.start))
        counter_ts_before = carry.counters_ts.copy()
        deltas, spans = self._counter_deltas(c)
        has_counter = np.isfinite(carry.counters[0])
        # Counter energy from before the window (a member unknown across a commit) is
        # learned now; it goes, unallocated, with the first piece.
        early = np.where(spans > 0, np.maximum(window_start - counter_ts_before, 0.0), 0.0)
        closed = []
        if self.acc is None:
            self.acc = OpenInterval.empty(int(window_start // self.step * self.step), n)
        cycle_s = max(c.end - c.start, 1e-9)
        # What the cycle booked across the meters of members it did not dispatch.
        silent = np.stack([sum((c.flows[f] for f in METER_IN if f in c.flows), np.zeros(n)),
                           sum((c.flows[f] for f in METER_OUT if f in c.flows), np.zeros(n)),
                           np.zeros(n)]) * ~c.valid
        # The gap and the cycle are cut apart, then each at settlement boundaries.
        pieces = split_span(window_start, c.start, self.step) + split_span(c.start, c.end,
                                                                           self.step)
        for k, (interval_start, a, b) in enumerate(pieces):
            if interval_start != self.acc.start_ts:
                closed.append(self._close(interval_start))
            acc, length = self.acc, b - a
            in_cycle = a >= c.start - 1e-9
            if in_cycle:
                frac = length / cycle_s
                for f in LEDGER_FIELDS:
                    acc.row(f)[:] += c.flows[f] * frac
                for f in CAUSE_FIELDS:  # optional: what held PV back (split of curtailed)
                    if f in c.flows:
                        acc.row(f)[:] += c.flows[f] * frac
                if c.unallocated is not None:
                    acc.row("unallocated_import")[:] += c.unallocated[0] * frac
                    acc.row("unallocated_export")[:] += c.unallocated[1] * frac
                acc.counts["covered_s"] += length
                acc.counts["islanded_s"] += length if c.islanded else 0.0
                acc.missing.update(c.missing)
                unbooked = ~c.valid
                # Flows booked over time the counters did not span cannot be settled on them.
                acc.uncounted |= c.valid & ~(spans[:2] > 0).all(axis=0)
            else:
                acc.counts["gap_s_coop"] += length
                unbooked = np.ones(n, dtype=bool)
            gap = np.where(unbooked, length, 0.0)
            acc.row("gap_s")[:] += gap
            acc.row("unknown_s")[:] += np.where(has_counter, 0.0, gap)
            share = np.divide(length + (early if k == 0 else 0.0), spans,
                              out=np.zeros_like(spans), where=spans > 0)
            share_unbooked = np.divide(np.where(unbooked, length, 0.0)
                                       + (early if k == 0 else 0.0), spans,
                                       out=np.zeros_like(spans), where=spans > 0)
            counted = deltas * share
            acc.row("meter_import")[:] += counted[0]
            acc.row("meter_export")[:] += counted[1]
            acc.meter_known |= np.isfinite(carry.counters[0]) | np.isfinite(carry.counters[1])
            booked_across = silent * (length / cycle_s) if in_cycle else 0.0
            unallocated = np.maximum(deltas * share_unbooked - booked_across, 0.0)
            for i, name in enumerate(("unallocated_import", "unallocated_export",
                                      "unallocated_pv")):
                acc.row(name)[:] += unallocated[i]
        self.acc.counts["cycles"] += 1
        carry.end_ts = c.end
        if c.end >= self.acc.start_ts + self.step - 1e-9:  # ended right on the boundary
            closed.append(self._close(self.acc.start_ts + self.step))
        return closed

    def _close(self, next_start: int) -> tuple[CommittedInterval, Parts]:
        """Book the open interval in whole Wh and open the next one."""
        assert self.acc is not None
        interval = book_interval(self.acc, self.carry, self.member_ids, self.step)
        self.acc = OpenInterval.empty(next_start, len(self.member_ids))
        # The state saved with the commit restarts cleanly at the boundary.
        end_ts, self.carry.end_ts = self.carry.end_ts, float(interval.end_ts)
        parts = {"acc": pack_open(self.acc, self.carry, self.member_ids),
                 "carry": pack_carries(self.carry, self.member_ids)}
        self.carry.end_ts = end_ts
        return interval, parts

    def open_parts(self) -> Parts:
        """The per-cycle save of the open interval."""
        assert self.acc is not None
        return {"acc": pack_open(self.acc, self.carry, self.member_ids)}

    def provisional(self) -> dict[str, NDArray[np.int64]]:
        """Whole Wh the open interval would book now, per column (marked provisional).

        Booked as a commit would be, on copies, so paired flows pair here too.
        """
        if self.acc is None:
            return {f: np.zeros(len(self.member_ids), dtype=np.int64) for f in LEDGER_FIELDS}
        carry = copy.deepcopy(self.carry)
        interval = book_interval(copy.deepcopy(self.acc), carry, self.member_ids, self.step)
        return {name: interval.column(name) for name in MEMBER_AMOUNTS}
