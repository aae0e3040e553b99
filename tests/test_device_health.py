"""Device health and back-off on the controller's clock.

Pure tables for :class:`DeviceHealth`, :class:`DeviceClock` and the staleness
scaling (every time injected), then one run over real Modbus TCP where the
controller's clock runs at 2000x: a device that failed many times is read
again within a few cycles of answering, not after seconds of wall time.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from controller.config import parse_config
from controller.cycle import Controller
from controller.health import (
    BACKOFF_MAX_S,
    DeviceClock,
    DeviceHealth,
    backoff_s,
    scaled_backoff_max_s,
    scaled_stale_after_s,
)
from simulators.clock import SimClock
from simulators.coop import METER_UNIT, SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from simulators.modbus_server import Fault

STALE = 5.0

# (events as (time, "ok" | "fail")), the time asked, and what health says then:
# (state, in back-off, seconds of back-off left, consecutive failures)
HEALTH_CASES = [
    ("never read", [], 0.0, ("unknown", False, 0.0, 0)),
    ("fresh up to stale_after_s", [(0.0, "ok")], 5.0, ("ok", False, 0.0, 0)),
    ("stale just after", [(0.0, "ok")], 5.001, ("unknown", False, 0.0, 0)),
    ("one failure backs off 2 s", [(0.0, "fail")], 1.5, ("backoff", True, 0.5, 1)),
    ("back-off ends at its deadline", [(0.0, "fail")], 2.0, ("unknown", False, 0.0, 1)),
    ("grows 2 s per failure", [(0.0, "fail"), (2.0, "fail"), (6.0, "fail")], 7.0,
     ("backoff", True, 5.0, 3)),
    ("doubles once it looks dead", [(t, "fail") for t in (0.0, 2.0, 6.0, 12.0, 20.0, 30.0)],
     31.0, ("backoff", True, 19.0, 6)),
    ("capped at 5 minutes", [(float(t), "fail") for t in range(200)], 199.0,
     ("backoff", True, BACKOFF_MAX_S, 200)),
    ("a good read clears it", [(0.0, "fail"), (2.0, "fail"), (6.0, "ok")], 6.5,
     ("ok", False, 0.0, 0)),
    ("a fresh reading outranks a back-off", [(0.0, "ok"), (1.0, "fail")], 2.0,
     ("ok", True, 1.0, 1)),
    ("stale and backed off", [(0.0, "ok"), (4.0, "fail"), (5.0, "fail")], 6.0,
     ("backoff", True, 3.0, 2)),
]


@pytest.mark.parametrize(("events", "at", "expected"),
                         [c[1:] for c in HEALTH_CASES], ids=[c[0] for c in HEALTH_CASES])
def test_health_and_backoff_on_injected_time(
        events: list[tuple[float, str]], at: float,
        expected: tuple[str, bool, float, int]) -> None:
    health = DeviceHealth("h01/meter", "127.0.0.1:502/2")
    for t, what in events:
        if what == "ok":
            health.succeeded(t)
        else:
            health.failed(t, "timeout")
    view = health.as_dict(at, STALE)
    got = (view["state"], health.in_backoff(at), view["backoff_remaining_s"],
           view["consecutive_failures"])
    assert got == expected


# (controller clock, wall clock) after each call, from (0, 0): device time after each
CLOCK_CASES = [
    ("2000x: the controller's clock", [(100.0, 0.05), (200.0, 0.1)], [100.0, 200.0]),
    ("real time: the same", [(1.0, 1.0), (2.5, 2.5)], [1.0, 2.5]),
    ("wall clock stepped back (NTP)", [(1.0, 1.0), (-3598.0, 2.0), (-3597.0, 3.0)],
     [1.0, 2.0, 3.0]),
    ("wall clock stepped forward", [(3600.0, 1.0)], [3600.0]),
    ("held clock: wall time passes", [(0.0, 2.0), (0.0, 4.0)], [2.0, 4.0]),
    ("stepped clock: its steps", [(30.0, 0.01), (30.0, 0.02), (60.0, 0.03)],
     [30.0, 30.01, 60.01]),
]


@pytest.mark.parametrize(("ticks", "expected"), [c[1:] for c in CLOCK_CASES],
                         ids=[c[0] for c in CLOCK_CASES])
def test_device_clock_follows_the_controller_never_slower_than_wall_time(
        ticks: list[tuple[float, float]], expected: list[float]) -> None:
    now = {"clock": 0.0, "wall": 0.0}
    device = DeviceClock(lambda: now["clock"], wall=lambda: now["wall"])
    seen = []
    for clock, wall in ticks:
        now["clock"], now["wall"] = clock, wall
        seen.append(device())
    assert seen == pytest.approx(expected)


@pytest.mark.parametrize(("stale", "cycle", "nominal", "expected"), [
    (5.0, 1.0, 1.0, 5.0),  # real time: as configured
    (5.0, 1.0, 30.0, 150.0),  # a stepped clock at 30 s per cycle: 5 cycles
    (0.5, 0.05, 100.0, 1000.0),  # the rehearsal at 2000x: 10 cycles
])
def test_staleness_keeps_its_number_of_cycles(stale: float, cycle: float, nominal: float,
                                              expected: float) -> None:
    assert scaled_stale_after_s(stale, cycle, nominal) == pytest.approx(expected)


@pytest.mark.parametrize("field", ["stale_after_s", "cycle_s", "nominal_dt_s"])
def test_staleness_scaling_names_the_bad_field(field: str) -> None:
    args = {"stale_after_s": 5.0, "cycle_s": 1.0, "nominal_dt_s": 1.0, field: 0.0}
    with pytest.raises(ValueError, match=field):
        scaled_stale_after_s(**args)


# ------------------------------------------------------------ over real Modbus TCP
SPEED = 2000.0
CYCLE_S = 0.05  # wall seconds per cycle, as in the rehearsal: 100 simulated s per cycle


@pytest.mark.parametrize("fault", [Fault.TIMEOUT, Fault.EXCEPTION])
def test_a_device_recovers_within_a_few_cycles_on_a_sped_up_clock(
        tmp_path: Path, fault: Fault) -> None:
    async def run() -> None:
        clock = SimClock(start_s=1_780_000_000 // 86400 * 86400 + 16 * 3600, speed=SPEED)
        coop = SimulatedCoop(demo_households(2), clock)
        await coop.start()
        text = coop_toml(coop, tmp_path / "ledger.sqlite", cycle_s=CYCLE_S).replace(
            "stale_after_s = 5.0", f"stale_after_s = {10 * CYCLE_S}\n"
                                   f"request_timeout_s = {2 * CYCLE_S}")
        controller = Controller(parse_config(text, "health.toml"), clock.now,
                                nominal_dt_s=CYCLE_S * SPEED)
        next_tick = time.monotonic()

        async def cycle() -> bool:
            nonlocal next_tick
            coop.step()
            report = await controller.cycle()
            next_tick = max(next_tick + CYCLE_S, time.monotonic())  # paced like the runtime
            await asyncio.sleep(next_tick - time.monotonic())
            return bool(report.image.valid[0])

        def meter() -> dict[str, object]:
            return next(d for d in controller.poller.health() if d["name"] == "h01/meter")

        try:
            for _ in range(3):
                assert await cycle()
            coop.households[0].server.faults[METER_UNIT] = fault
            for _ in range(20):  # about 1 s of wall time, 2000 simulated seconds
                await cycle()
            failures = meter()["consecutive_failures"]
            # On the wall clock (2 s, 4 s, ... of back-off) a second of failing is 1 or 2
            # attempts; on the controller's clock the meter is retried every few cycles.
            assert failures >= 5, meter()
            assert meter()["state"] in ("unknown", "backoff")
            coop.households[0].server.faults[METER_UNIT] = Fault.NONE
            # however far the back-off has grown, the meter is read again once it ends
            bound = math.ceil(meter()["backoff_remaining_s"] / (CYCLE_S * SPEED)) + 2
            for _ in range(bound):
                if await cycle():
                    break
            else:
                raise AssertionError(f"not valid within {bound} cycles: {meter()}")
            assert meter()["state"] == "ok" and meter()["consecutive_failures"] == 0
        finally:
            controller.close()
            await coop.stop()

    asyncio.run(run())


def test_a_sped_up_clock_scales_only_the_longest_back_off() -> None:
    """300 cycles of back-off at most, on any clock; the first steps stay in seconds."""
    assert scaled_backoff_max_s(1.0, 1.0) == BACKOFF_MAX_S
    assert scaled_backoff_max_s(0.05, 72.0) == BACKOFF_MAX_S * 1440
    assert scaled_backoff_max_s(1.0, 0.5) == BACKOFF_MAX_S  # never shorter
    health = DeviceHealth("h03/battery", "127.0.0.1:502/3", backoff_max_s=3000.0)
    for t in range(200):
        health.failed(float(t), "timeout")
    assert health.backoff_until - 199.0 == 3000.0
    assert [backoff_s(n) for n in range(1, 10)] == [2, 4, 6, 8, 10, 20, 40, 80, 160]
