"""The setpoint expiry is what the config says on the real clock (issue 17, point 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from controller.config import parse_config
from controller.cycle import Controller

CONFIG = """
name = "Expiry coop"
[storage]
ledger = "{ledger}"
[controller]
cycle_s = 60
setpoint_expiry_s = {expiry}
[[members]]
id = "h01"
name = "Ada"
devices = [
  {{ kind = "meter", host = "127.0.0.1", port = 5020, unit = 2 }},
  {{ kind = "battery", host = "127.0.0.1", port = 5020, unit = 3 }},
]
"""


@pytest.mark.parametrize(("expiry", "nominal_dt_s", "expected"), [
    (60, None, 60),  # real clock: the configured value, not raised to 5 cycles (300 s)
    (90, None, 90),
    (90, 600.0, 900),  # a clock 10x faster: the same 1.5 cycles of device time
])
def test_controller_uses_the_configured_expiry(tmp_path: Path, expiry: int,
                                               nominal_dt_s: float | None, expected: int) -> None:
    config = parse_config(CONFIG.format(ledger=tmp_path / "ledger.sqlite", expiry=expiry),
                          "coop.toml")

    async def build() -> int:  # the poller's connections want a running loop
        controller = Controller(config, time.time, nominal_dt_s)
        try:
            return controller.setpoint_expiry_s
        finally:
            controller.close()

    assert asyncio.run(build()) == expected
