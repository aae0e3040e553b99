"""An in-process simulated coop with a controller, stepped deterministically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.config import CoopConfig, parse_config
from controller.cycle import Controller, CycleReport
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households

DAY0 = 1_780_000_000 // 86400 * 86400  # a midnight, UTC


@dataclass
class Harness:
    """A simulated coop, its config and a controller on a stepped clock."""

    clock: SimClock
    coop: SimulatedCoop
    config: CoopConfig
    controller: Controller
    dt_s: float

    async def step(self) -> CycleReport:
        """Advance simulated time by one cycle and run the controller's cycle."""
        self.clock.advance(self.dt_s)
        self.coop.step()
        return await self.controller.cycle()

    async def close(self) -> None:
        self.controller.close()
        await self.coop.stop()


async def start_harness(tmp: Path, households: int = 10, start_hour: float = 16.0,
                        dt_s: float = 30.0, settlement_s: int = 900,
                        **toml_overrides: str) -> Harness:
    """Start the simulated coop on 127.0.0.1 and a controller for it."""
    clock = SimClock(start_s=DAY0 + start_hour * 3600, speed=0)
    coop = SimulatedCoop(demo_households(households), clock)
    await coop.start()
    text = coop_toml(coop, tmp / "ledger.sqlite", settlement_s=settlement_s)
    for old, new in toml_overrides.items():
        text = text.replace(old, new)
    config = parse_config(text, "harness.toml")
    controller = Controller(config, clock.now, nominal_dt_s=dt_s)
    return Harness(clock, coop, config, controller, dt_s)
