"""The open settlement interval: float accumulators that become integer Wh at its end.

Every control cycle adds its energy to the open interval. The accumulators
are saved each cycle in one small write, so a ``kill -9`` loses at most the
cycle in flight. At the boundary the interval is booked in whole Wh with
carried remainders (:class:`~dispatch.rounding.WhBook`), so no rounding leaks
out of any sum, and it is never changed afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from numpy.typing import NDArray

from controller.ledger.schema import (
    CAUSE_FIELDS,
    DRIFT_FIELDS,
    GAP_FIELDS,
    INTERVAL_COUNTS,
    MEMBER_COLUMNS,
    METER_FIELDS,
)
from controller.ledger.settle import settle_on_counters
from dispatch.rounding import LEDGER_FIELDS, WhBook, floor_with_carry

FloatArray = NDArray[np.float64]
ROW = {name: i for i, name in enumerate(MEMBER_COLUMNS)}
#: Counters read from meters and inverters: lifetime Wh, in the process image.
COUNTERS = ("import", "export", "pv")
#: Wh amounts (besides the dispatch flows) carried to the Wh like the flows are.
CARRIED = ("unallocated_import", "unallocated_export", "unallocated_pv", "meter_import",
           "meter_export")
SECONDS = ("gap_s", "unknown_s")
assert set(CARRIED) | set(SECONDS) | set(DRIFT_FIELDS) == set(GAP_FIELDS) | set(METER_FIELDS)


@dataclass(slots=True)
class OpenInterval:
    """Accumulators of the interval starting at ``start_ts`` (one column per member)."""

    start_ts: int
    amounts: FloatArray  # len(MEMBER_COLUMNS) x N
    meter_known: NDArray[np.bool_]
    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(INTERVAL_COUNTS, 0.0))
    missing: set[str] = field(default_factory=set)
    #: Members booked for a cycle their counters did not span (the first reading, a counter
    #: back after it was unknown): their counters cannot settle this interval.
    uncounted: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        if self.uncounted is None:
            self.uncounted = np.zeros(self.amounts.shape[1], dtype=bool)

    @classmethod
    def empty(cls, start_ts: int, n: int) -> OpenInterval:
        """Nothing booked yet."""
        return cls(start_ts, np.zeros((len(MEMBER_COLUMNS), n)), np.zeros(n, dtype=bool))

    def row(self, name: str) -> FloatArray:
        """The accumulator of one column (a view)."""
        return self.amounts[ROW[name]]

    @property
    def is_empty(self) -> bool:
        """Whether nothing at all has been added."""
        return not any(self.counts.values()) and not self.amounts.any()


@dataclass(slots=True)
class CarryState:
    """What continues across intervals: carries, battery pools, last counter readings."""

    end_ts: float | None
    carries: dict[str, FloatArray]
    pools_wh: FloatArray
    held: NDArray[np.bool_]
    counters: FloatArray  # len(COUNTERS) x N, NaN where never read
    counters_ts: FloatArray  # len(COUNTERS) x N, NaN where never read

    @classmethod
    def fresh(cls, n: int) -> CarryState:
        """A ledger that has never booked."""
        return cls(None, {f: np.zeros(n) for f in (*LEDGER_FIELDS, *CARRIED, *CAUSE_FIELDS)},
                   np.zeros(n),
                   np.zeros(n, dtype=bool), np.full((len(COUNTERS), n), np.nan),
                   np.full((len(COUNTERS), n), np.nan))


@dataclass(frozen=True, slots=True)
class CommittedInterval:
    """One settlement interval in integer Wh (seconds for ``*_s``), ready to write."""

    start_ts: int
    end_ts: int
    member_ids: tuple[str, ...]
    values: NDArray[np.int64]  # len(MEMBER_COLUMNS) x N
    meter_known: NDArray[np.bool_]
    counts: dict[str, int]
    missing: tuple[str, ...]
    #: Meters (``<member>/meter``) whose counters and measured power disagreed beyond
    #: the threshold of :mod:`controller.ledger.settle` in this interval.
    flagged: tuple[str, ...] = ()

    def column(self, name: str) -> NDArray[np.int64]:
        """One column, one value per member."""
        return self.values[ROW[name]]

    @property
    def booked(self) -> dict[str, NDArray[np.int64]]:
        """The dispatch flows, by ledger field."""
        return {f: self.values[ROW[f]] for f in LEDGER_FIELDS}


def book_interval(acc: OpenInterval, carry: CarryState, member_ids: tuple[str, ...],
                  step: int) -> CommittedInterval:
    """Whole Wh for an interval, updating the carries (paired flows balance to the Wh).

    Members whose meter has counters are first settled on them (:mod:`~controller.ledger.settle`).
    """
    counted = acc.meter_known & ~acc.uncounted & np.isfinite(carry.counters[:2]).all(axis=0)
    flagged = settle_on_counters(acc, counted, acc.counts.get("islanded_s", 0.0) > 0)
    book = WhBook(len(member_ids), carry.carries)
    flows = book.book(SimpleNamespace(**{f: acc.row(f) for f in LEDGER_FIELDS}))
    values = np.zeros(acc.amounts.shape, dtype=np.int64)
    for f in LEDGER_FIELDS:
        values[ROW[f]] = flows[f]
        carry.carries[f] = book.carries[f]
    for name in CARRIED:
        values[ROW[name]], carry.carries[name] = floor_with_carry(
            np.maximum(acc.row(name), 0.0), carry.carries[name])
    causes = np.stack([acc.row(c) + carry.carries[c] for c in CAUSE_FIELDS])
    split = split_to_total(values[ROW["curtailed"]], causes)
    for k, name in enumerate(CAUSE_FIELDS):
        values[ROW[name]] = split[k]
        carry.carries[name] = causes[k] - split[k]
    for name in (*SECONDS, *DRIFT_FIELDS):  # drift is signed and informative: no carry
        values[ROW[name]] = np.rint(acc.row(name)).astype(np.int64)
    counts = {k: int(round(v)) for k, v in acc.counts.items()}
    return CommittedInterval(acc.start_ts, acc.start_ts + step, member_ids, values,
                             acc.meter_known.copy(), counts, tuple(sorted(acc.missing)),
                             tuple(f"{m}/meter" for m, f in zip(member_ids, flagged,
                                                                strict=True) if f))


def split_to_total(total: NDArray[np.int64], parts: FloatArray) -> NDArray[np.int64]:
    """Whole Wh per part (rows) adding up to ``total`` per member (columns), in
    proportion to ``parts`` (largest remainders first); nothing where no part is positive.

    The curtailed Wh of an interval are booked with carries like every flow; their causes
    only split that figure, so the causes add up to it to the Wh.
    """
    parts = np.maximum(parts, 0.0)
    weight = parts.sum(axis=0)
    total = np.where(weight > 0, total, 0)
    target = np.divide(parts * total, weight, out=np.zeros_like(parts), where=weight > 0)
    booked = np.floor(target).astype(np.int64)
    short = total - booked.sum(axis=0)
    order = np.argsort(-(target - booked), axis=0, kind="stable")
    rank = np.argsort(order, axis=0, kind="stable")
    return booked + (rank < short).astype(np.int64)


def _pack(header: dict, arrays: list[np.ndarray]) -> tuple[str, bytes]:
    header["shapes"] = [list(a.shape) for a in arrays]
    blob = b"".join(np.ascontiguousarray(a, dtype=np.float64).tobytes() for a in arrays)
    return json.dumps(header), blob


def _unpack(header_text: str, blob: bytes) -> tuple[dict, list[np.ndarray]]:
    header = json.loads(header_text)
    flat = np.frombuffer(blob, dtype=np.float64)
    out, at = [], 0
    for shape in header["shapes"]:
        size = int(np.prod(shape))
        out.append(flat[at:at + size].reshape(shape).copy())
        at += size
    return header, out


def _align(saved_ids: list[str], member_ids: tuple[str, ...], rows: np.ndarray,
           fill: float = 0.0) -> np.ndarray:
    """Columns of ``rows`` (saved for ``saved_ids``) re-ordered to ``member_ids``."""
    index = {m: i for i, m in enumerate(saved_ids)}
    out = np.full((*rows.shape[:-1], len(member_ids)), fill)
    for j, m in enumerate(member_ids):
        if m in index:
            out[..., j] = rows[..., index[m]]
    return out


def pack_open(acc: OpenInterval, carry: CarryState, member_ids: tuple[str, ...],
              ) -> tuple[str, bytes]:
    """The per-cycle save: the open interval's accumulators, battery pools and counters."""
    header = {"member_ids": list(member_ids), "start_ts": acc.start_ts, "end_ts": carry.end_ts,
              "counts": acc.counts, "missing": sorted(acc.missing),
              "columns": list(MEMBER_COLUMNS)}
    return _pack(header, [acc.amounts, acc.meter_known.astype(np.float64), carry.pools_wh,
                          carry.held.astype(np.float64), carry.counters, carry.counters_ts,
                          acc.uncounted.astype(np.float64)])


def pack_carries(carry: CarryState, member_ids: tuple[str, ...]) -> tuple[str, bytes]:
    """The sub-Wh carries: they change only when an interval is committed."""
    names = list(carry.carries)
    header = {"member_ids": list(member_ids), "carry_fields": names}
    return _pack(header, [np.stack([carry.carries[f] for f in names])])


def unpack_state(open_part: tuple[str, bytes] | None, carry_part: tuple[str, bytes] | None,
                 member_ids: tuple[str, ...]) -> tuple[OpenInterval | None, CarryState]:
    """The saved open interval and carry state, re-aligned to ``member_ids``."""
    carry = CarryState.fresh(len(member_ids))
    if carry_part is not None:
        header, (carries,) = _unpack(*carry_part)
        aligned = _align(header["member_ids"], member_ids, carries)
        for k, name in enumerate(header["carry_fields"]):
            carry.carries[name] = aligned[k]
    if open_part is None:
        return None, carry
    from controller.ledger.migrate import open_rows

    header, arrays = _unpack(*open_part)
    amounts, known, pools, held, counters, counters_ts = arrays[:6]
    amounts = open_rows(header.get("columns"), amounts)
    saved = header["member_ids"]
    # Saved before settling on counters: the interval is not settled (its start is unknown).
    uncounted = arrays[6] if len(arrays) > 6 else np.ones(len(saved))
    acc = OpenInterval(int(header["start_ts"]), _align(saved, member_ids, amounts),
                       _align(saved, member_ids, known) > 0,
                       {k: float(v) for k, v in header["counts"].items()},
                       set(header["missing"]), _align(saved, member_ids, uncounted, 1.0) > 0)
    carry.end_ts = header["end_ts"]
    carry.pools_wh = _align(saved, member_ids, pools)
    carry.held = _align(saved, member_ids, held) > 0
    carry.counters = _align(saved, member_ids, counters, np.nan)
    carry.counters_ts = _align(saved, member_ids, counters_ts, np.nan)
    return acc, carry
