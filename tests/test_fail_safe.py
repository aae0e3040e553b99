"""A device that stops answering is marked unknown, its battery holds, the rest runs on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from simulators.coop import METER_UNIT
from simulators.modbus_server import Fault
from tests.coop_harness import start_harness

FAST = {
    "stale_after_s = 5.0": "stale_after_s = 0.6\nrequest_timeout_s = 0.2",
}


async def step_until(harness, predicate, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    reports = []
    while time.monotonic() < deadline:
        report = await harness.step()
        reports.append(report)
        if predicate(report):
            return reports
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached within {timeout_s}s")


_EXPECT = ("the meter's household is marked unknown within its freshness timeout (not booked, "
           "its battery held at 0 W), every other household keeps cycling, and it recovers "
           "by itself when the device answers again")
MATRIX_ROWS = {
    Fault.TIMEOUT: ("modbus-timeout", "A meter that stops answering (request times out): "
                    + _EXPECT),
    Fault.EXCEPTION: ("modbus-exception", "A meter answering Modbus exception 4: " + _EXPECT),
    Fault.DISCONNECT: ("modbus-disconnect", "A meter that drops the TCP connection on every "
                       "request: " + _EXPECT),
    Fault.GARBAGE: ("garbage", "A meter answering 0x8000 in every register: " + _EXPECT),
}


@pytest.mark.parametrize("fault", [Fault.TIMEOUT, Fault.EXCEPTION, Fault.DISCONNECT,
                                   Fault.GARBAGE])
def test_failing_meter_marks_household_unknown_and_recovers(tmp_path: Path, fault: Fault,
                                                            reliability) -> None:
    row = reliability(*MATRIX_ROWS[fault])

    async def run() -> None:
        h = await start_harness(tmp_path, **FAST)
        try:
            for _ in range(3):
                assert (await h.step()).image.valid.all()
            sick = h.coop.households[0]
            sick.server.faults[METER_UNIT] = fault
            started = time.monotonic()
            reports = await step_until(h, lambda r: not r.image.valid[0], timeout_s=5)
            unknown_s = time.monotonic() - started
            assert unknown_s < 0.6 + 0.2 * 3 + 1.0  # within its freshness timeout
            # every other household kept cycling with valid data
            for r in reports:
                assert r.image.valid[1:].all()
                assert r.result is not None
            last = reports[-1]
            assert last.setpoints_w[0] == 0.0, "the sick household's battery holds"
            assert h.coop.physics.setpoint_w[0] == 0.0
            assert last.result.load[0] == 0.0 and last.result.to_peers[0] == 0.0
            health = {d["name"]: d for d in h.controller.poller.health()}
            assert health["h01/meter"]["state"] in ("unknown", "backoff")
            assert health["h01/meter"]["errors_total"] >= 1
            assert health["h02/meter"]["state"] == "ok"
            # recovery is automatic once the fault clears
            sick.server.faults[METER_UNIT] = Fault.NONE
            healed = await step_until(h, lambda r: bool(r.image.valid[0]), timeout_s=8)
            row.observed = (
                f"h01 unknown after {len(reports)} cycles ({unknown_s:.2f} s), "
                f"{health['h01/meter']['errors_total']} errors, last: "
                f"{health['h01/meter']['last_error']!r}; its battery setpoint 0 W; the other "
                f"{len(h.controller.member_ids) - 1} households valid and dispatched in every "
                f"cycle; h01 valid again {len(healed)} cycles after the fault cleared")
        finally:
            await h.close()

    asyncio.run(run())


def test_setpoint_expires_when_controller_stops_refreshing(tmp_path: Path) -> None:
    async def run() -> None:
        h = await start_harness(tmp_path, start_hour=12.0)
        try:
            for _ in range(3):
                await h.step()
            charging = h.coop.physics.setpoint_w < 0
            assert charging.any(), "at noon batteries charge"
            # the controller stops; device time runs on past the expiry
            h.clock.advance(h.controller.setpoint_expiry_s + 1)
            h.coop.step()
            assert (h.coop.physics.battery_w == 0).all()
        finally:
            await h.close()

    asyncio.run(run())
