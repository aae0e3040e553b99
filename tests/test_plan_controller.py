"""The rolling plan in a running controller (simulated coop over Modbus TCP on 127.0.0.1):
targets are followed, a failed or slow solve leaves greedy in charge, stale targets expire."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np

from dispatch.plan_lp import plan_storage
from tests.coop_harness import start_harness

PLAN_ON = {"[policy]": "[dispatch]\nplan = true\nreplan_min = 1\n\n[policy]"}


def believed(now: float, steps: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A forecast the test controls (the learned one needs a day of cycles)."""
    hours = (now + np.arange(steps) * step_s) / 3600 % 24
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    return sun[:, None] * np.full((1, 10), 3000.0), np.full((steps, 10), 500.0)


async def settle(h, status: str, timeout_s: float = 30.0) -> None:
    """Step until one more solve has ended with ``status`` (a re-plan may already have
    started again in the same cycle, so the count is watched, not the state)."""
    worker = h.controller.plan.worker
    before = worker.counts[status]
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        await h.step()
        if worker.counts[status] > before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"plan {worker.state} {worker.counts}, expected one more {status}")


def test_controller_follows_then_falls_back_to_greedy(tmp_path: Path) -> None:
    async def run() -> None:
        h = await start_harness(tmp_path, start_hour=9.0, **PLAN_ON)
        plan = h.controller.plan
        assert plan is not None and plan.worker.replan_s == 60.0
        plan.profile.forecast = believed  # type: ignore[method-assign]
        try:
            await settle(h, "ok")
            fleet = h.controller.fleet(h.controller.last_report.image)
            assert plan.targets(h.clock.now(), fleet, h.controller.limits()) is not None
            report = await h.step()  # a cycle following targets books as any other
            r = report.result
            np.testing.assert_allclose(
                r.load, r.own_pv_used + r.from_battery + r.from_peers + r.from_coop_battery
                + r.from_grid + r.shed, atol=1e-6)
            # A solve that fails: the plan is dropped, greedy is in charge.
            plan.worker.solver = _failing
            await settle(h, "failed")
            assert plan.targets(h.clock.now(), fleet, h.controller.limits()) is None
            # A slow solve: late, dropped, greedy in charge (that its answer is never used
            # when it comes is tests/test_plan_worker.py's).
            release = threading.Event()
            plan.worker.solver = _slow(release)
            plan.worker.deadline_s = 0.3
            await settle(h, "late")
            assert plan.targets(h.clock.now(), fleet, h.controller.limits()) is None
            report = await h.step()
            assert report.result is not None  # the cycle ran, greedy
            release.set()
            # Targets expire: a plan, then the worker never answers again.
            plan.worker.solver = plan_storage
            plan.worker.deadline_s = 1e9
            await settle(h, "ok")
            blocked = threading.Event()
            plan.worker.solver = _slow(blocked)
            # A solve submitted before the switch may still land: the newest plan's age is
            # what expires (state.solved_at follows every plan collected).
            while h.clock.now() - plan.worker.state.solved_at < plan.worker.expire_s:
                await h.step()
            assert plan.targets(h.clock.now(), fleet, h.controller.limits()) is None
            blocked.set()
        finally:
            await h.close()

    asyncio.run(run())


def _failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    raise RuntimeError("storage LP failed: infeasible")


def _slow(release: threading.Event):  # noqa: ANN202
    def solve(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        release.wait(20)
        return plan_storage(*args, **kwargs)
    return solve
