"""The running controller's link to the island plan: the saved plan, re-planning off the
event loop, and what the plan sheds now (see :mod:`controller.island.pilot`).

The plan is read from ``[island] plan_file`` (default ``plan.json`` beside the
ledger) when the coop islands, and again whenever that file changes. Each plan
is solved in a worker thread so a cycle never waits for HiGHS; until the first
re-plan is ready the controller follows nothing and sheds only what it must.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from controller.island.pilot import BaseForecast, IslandPilot, LoadLock, Readings
from controller.island.plan import Plan, plan_island

log = logging.getLogger(__name__)


class PlanFollower:
    """Keeps an :class:`IslandPilot` on the saved plan while the coop is islanded.

    Args:
        path: the saved plan (``commonwatt island plan --json``).
        member_ids: the controller's members, in its order.
        replan_s: how often to plan again while islanded, s.
    """

    def __init__(self, path: Path, member_ids: list[str], replan_s: float) -> None:
        self.path = path
        self.member_ids = member_ids
        self.replan_s = replan_s
        self.pilot: IslandPilot | None = None
        self.problem_text: str | None = None  # why there is no plan to follow, for the API
        self._key: tuple[int, int] | None = None
        self._job: tuple[Future[Plan], float] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> IslandPilot | None:
        """The pilot on the saved plan, read again when the file changed."""
        try:
            st = self.path.stat()
        except OSError:
            self.pilot, self._key = None, None
            self.problem_text = f"no island plan at {self.path}"
            return None
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._key = key
            try:
                base = BaseForecast.from_json(json.loads(self.path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
                self.pilot = None
                self.problem_text = f"island plan {self.path}: {exc}"
                log.warning("not following the island plan: %s", self.problem_text)
                return None
            self.pilot = IslandPilot(base, self.member_ids, self.replan_s)
            self.problem_text = None
        return self.pilot

    def step(self, now: float, islanded: bool, readings: Readings, end_ts: float | None,
             locks: Sequence[LoadLock] = ()) -> None:
        """Once a cycle: adopt a finished plan; islanded, start a re-plan when one is due
        (with ``locks``: loads within their minimum on or off time)."""
        if not islanded:
            if self.pilot is not None and self.pilot.plan is not None:
                self.pilot.plan, self.pilot.planned_at = None, None  # next island starts afresh
            return
        pilot = self.pilot if self._job is not None else self._load()
        if pilot is None:
            return
        if self._job is not None:
            future, made_at = self._job
            if not future.done():
                return
            self._job = None
            try:
                pilot.adopt(future.result(), made_at)
            except Exception:  # noqa: BLE001 - a failed plan must not stop the coop
                log.exception("the island re-plan failed; following the last plan")
                pilot.planned_at = made_at  # try again after replan_s, not every cycle
            return
        if not pilot.due(now):
            return
        problem = pilot.problem(now, readings, end_ts, locks)
        if problem is None:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="island-plan")
        self._job = (self._pool.submit(plan_island, problem), now)

    def shed_w(self, now: float, islanded: bool) -> np.ndarray:
        """Per member, what the plan followed sheds now, W (zeros when none is followed)."""
        if not islanded or self.pilot is None:
            return np.zeros(len(self.member_ids))
        return self.pilot.shed_w(now)

    def demand_forecast_w(self, now: float) -> np.ndarray | None:
        """The followed plan's demand forecast at ``now`` per member (see
        :meth:`IslandPilot.demand_forecast_w`), None without one."""
        return None if self.pilot is None else self.pilot.demand_forecast_w(now)

    def tier_forecast_w(self, now: float) -> np.ndarray | None:
        """The followed plan's demand forecast at ``now`` per tier and member (see
        :meth:`IslandPilot.tier_forecast_w`), None without one."""
        return None if self.pilot is None else self.pilot.tier_forecast_w(now)

    def pv_forecast_w(self, now: float) -> np.ndarray | None:
        """The saved plan's PV forecast at ``now`` per member (see
        :meth:`IslandPilot.pv_forecast_w`), None without one."""
        return None if self.pilot is None else self.pilot.pv_forecast_w(now)

    def status(self, now: float) -> dict[str, Any]:
        """For the API and the island page."""
        out: dict[str, Any] = {"plan_file": str(self.path), "problem": self.problem_text,
                               "replanning": self._job is not None}
        if self.pilot is not None:
            out |= self.pilot.status(now)
        return out

    async def wait(self) -> None:
        """Wait for a re-plan in flight (tests, and a clean stop)."""
        if self._job is not None:
            await asyncio.wrap_future(self._job[0])

    def close(self) -> None:
        """Stop the worker thread (a plan in flight is left to finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
