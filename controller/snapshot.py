"""One consistent view of the running controller, published once per cycle for the API.

The API's routes run on other threads than the cycle. They must never read the
controller's mutable state (the open :class:`~controller.ledger.IntervalBook`, the
grid state machine, the devices' health) while a cycle changes it: a route could
see half a cycle. So the cycle, on its own thread, builds a :class:`Snapshot` of
everything the API shows of it, and the runtime swaps it in whole (one attribute
assignment). A route reads one snapshot and only that; nothing in it changes
afterwards (its arrays are read-only).

The open interval's per-member Wh are built here, once per cycle (booked on copies
as a commit would book them), never per request: at 10,000 members one build is
a deep copy of the book and costs milliseconds, which a request must not pay.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from controller.island.reasons import GUARD, Reason
from controller.ledger.schema import MEMBER_AMOUNTS

if TYPE_CHECKING:
    from controller.cycle import Controller, CycleReport

IntArray = NDArray[np.int64]


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one finished cycle shows the API; built on the cycle's thread, never changed.

    ``open_wh`` and each pending interval's Wh are :data:`MEMBER_AMOUNTS` × members,
    integer Wh, read-only.
    """

    seq: int
    #: The cycle's end on the controller's clock, and on this process's monotonic clock.
    ts: float
    wall: float
    report: CycleReport
    member_ids: tuple[str, ...]
    #: The grid supervisor's status at the cycle's end (:meth:`GridSupervisor.status`).
    grid: dict[str, Any]
    islanded: bool
    #: Each battery's hard floor this cycle, Wh (for the hours of autonomy).
    floor_wh: np.ndarray
    #: The island plan the controller follows (``PlanFollower.status``).
    plan_followed: dict[str, Any] | None
    #: Device health at the cycle's end (``Poller.health``).
    devices: tuple[dict[str, Any], ...]
    #: Start of the settlement interval still open, and its provisional Wh.
    open_start: int | None
    open_wh: IntArray
    #: Intervals committed by the cycle but not yet on disk: (start_ts, Wh).
    pending: tuple[tuple[int, IntArray], ...] = field(default=())
    #: Member id → column, built with the snapshot (a request about one member must
    #: not walk 10,000).
    index: Mapping[str, int] = field(default_factory=dict)

    def _unwritten(self, after_ts: int | None) -> IntArray:
        """Wh not on disk at or after ``after_ts`` (the reader's last committed end), every
        member: pending intervals that start there or later, and the open interval
        unless the writer has already put it on disk (the book closed it after this
        snapshot was taken): never counted twice."""
        total = np.zeros((len(MEMBER_AMOUNTS), len(self.member_ids)), dtype=np.int64)
        for start, wh in self.pending:
            if after_ts is None or start >= after_ts:
                total += wh
        if self.open_start is not None and (after_ts is None or self.open_start >= after_ts):
            total += self.open_wh
        return total

    def unwritten_columns(self, after_ts: int | None
                          ) -> tuple[tuple[str, ...], tuple[str, ...], IntArray]:
        """:meth:`unwritten_wh` as columns (fields, members, fields × members), for
        :func:`controller.accounts.running.running_figures`."""
        return tuple(MEMBER_AMOUNTS), self.member_ids, self._unwritten(after_ts)

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
        """Per member, Wh booked but not on disk at or after ``after_ts``."""
        total = self._unwritten(after_ts)
        return {m: dict(zip(MEMBER_AMOUNTS, total[:, j].tolist(), strict=True))
                for j, m in enumerate(self.member_ids)}

    def unwritten_member_wh(self, member_id: str, after_ts: int | None) -> dict[str, int]:
        """One member's Wh not on disk at or after ``after_ts``: a column, not the coop."""
        j = self.index.get(member_id)
        if j is None:
            return {}
        column = np.zeros(len(MEMBER_AMOUNTS), dtype=np.int64)
        for start, wh in self.pending:
            if after_ts is None or start >= after_ts:
                column += wh[:, j]
        if self.open_start is not None and (after_ts is None or self.open_start >= after_ts):
            column += self.open_wh[:, j]
        return dict(zip(MEMBER_AMOUNTS, column.tolist(), strict=True))


def shedding_status(controller: Controller) -> dict[str, Any]:
    """The shedding's recent events with reason codes, the guard's passes and alert, and
    the loads never shed (:mod:`controller.island.shed_log`); a viewer's API scrubs it."""
    log = getattr(controller, "shed_log", None)
    out = log.status() if log is not None else {"events": []}
    protected = getattr(controller, "_protected_loads", {})
    return out | {"alert": getattr(controller, "shed_alert", None),
                  "protected": [{"load": k, "member": k.partition("/")[0],
                                 "reason": GUARD.get(v, Reason.OTHER).value}
                                for k, v in protected.items()]}


def take_snapshot(controller: Controller, report: CycleReport, seq: int) -> Snapshot:
    """The snapshot of ``controller`` right after its cycle ``report`` (on the cycle's
    thread: it reads the book, the grid supervisor and the poller)."""
    ids = controller.member_ids
    open_parts = controller.book.provisional()
    open_wh = np.zeros((len(MEMBER_AMOUNTS), len(ids)), dtype=np.int64)
    for k, name in enumerate(MEMBER_AMOUNTS):
        if name in open_parts:
            open_wh[k] = open_parts[name]
    acc = controller.book.acc
    pending = tuple((int(i.start_ts), _frozen(np.array(i.values[:len(MEMBER_AMOUNTS)],
                                                       dtype=np.int64)))
                    for i in controller.writer.pending())
    image = report.image
    grid = controller.grid
    follower = controller.follower
    return Snapshot(
        seq=seq, ts=float(report.end_ts), wall=time.monotonic(), report=report,
        member_ids=tuple(ids), grid=grid.status() | {"shedding": shedding_status(controller)},
        islanded=bool(controller.islanded),
        floor_wh=_frozen(controller.engines.fleet(image, controller.islanded).soc_min_wh.copy()),
        plan_followed=follower.status(report.end_ts),
        devices=tuple(controller.poller.health()),
        open_start=None if acc is None else int(acc.start_ts), open_wh=_frozen(open_wh),
        pending=pending, index=MappingProxyType({m: j for j, m in enumerate(ids)}))
