"""A small coop for the page tests: a ledger up to now with a tariff, tokens, an audit log,
device health as the poller reports it, and a live cycle pushed as the runtime pushes it.

Three households: ``h01`` chose ``public = true``; ``h02`` (its name full of markup) and
``h03`` are private. The browser logs in as ``h02``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi import FastAPI

from api.app import create_app
from api.live_stream import FLOW_KEYS
from controller.config import CoopConfig, parse_config
from controller.counters import CounterCheck
from controller.governance import AuditLog, TokenStore, issue
from controller.health import DeviceHealth
from controller.island.live import GridSupervisor
from controller.ledger import LedgerReader, LedgerWriter
from devices.kinds import BatteryReading, MeterReading, PvReading
from tests.accounts_ledgers import build_ledger, config_text
from tests.browser import serve
from tests.test_island_page import XSS, island_image

MEMBERS = (("h01", "Ada Lovelace"), ("h02", f"Bea {XSS}"), ("h03", "Chidi Okafor"))
STEP = 900
CYCLE_S = 300
#: Live flows of the pushed cycle, W (one hour long, so Wh are W).
FLOWS_W = {"own_pv_used": 900.0, "to_peers": 400.0, "from_grid": 300.0, "to_grid": 150.0,
           "to_battery": 250.0, "from_battery": 1100.0, "curtailed": 0.0, "shed": 0.0}


class FakeLive:
    """A running controller as the API sees it: device health and a grid supervisor."""

    cycle_s = 1.0
    settlement_s = STEP

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self._devices = devices
        self.supervisor = GridSupervisor()

    def devices(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._devices]  # the API adds drift to its copy

    def last_cycle_age_s(self) -> float:
        return 0.2

    def ledger_status(self) -> dict[str, object]:
        return {"state": "ok"}

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
        return {}

    def open_interval_start(self) -> int | None:
        return None

    def grid_supervisor(self) -> GridSupervisor:
        return self.supervisor

    def now(self) -> float:
        return time.time()


def device_health(now: float) -> list[dict[str, Any]]:
    """The poller's ``health()`` for the coop's devices: most answering, one backing off,
    one never read; an error text with markup in it."""
    readings: dict[str, Any] = {
        "h01/meter": MeterReading(420.0, 1_234_000.0, 987_000.0),
        "h01/pv": PvReading(800.0, 5_600_000.0),
        "h01/battery": BatteryReading(600.0, 64.0, 10_000.0, 3000.0, 3000.0, "on"),
        "h02/meter": MeterReading(0.0, 2_000_000.0, 10_000.0),
        "h02/battery": BatteryReading(500.0, 62.0, 10_000.0, 3000.0, 3000.0),
        "h03/meter": MeterReading(250.0, 555_000.0, 444_000.0),
        "h03/pv": None,
    }
    out = []
    for name, reading in readings.items():
        health = DeviceHealth(name, f"modbus-tcp://127.0.0.1:50{len(out) + 20}/unit/1")
        counters = CounterCheck()
        if name == "h03/pv":  # failing: backed off, with an error naming markup
            for k in range(3):
                health.failed(now - 2 + k * 0.1, f"timeout <script>alert({k})</script>")
        else:  # a read a minute; h01's import counter runs 3 % fast
            fast = 1.03 if name == "h01/meter" else 1.0
            for k in range(5):
                health.succeeded(now - 240 + 60 * k)
                counters.update(_counted(reading, k, fast), now - 240 + 60 * k)
        out.append({**health.as_dict(now, 10.0), "kind": name.split("/")[1],
                    "reading": None if reading is None else asdict(reading),
                    "counters": counters.as_dict()})
    return out


def _counted(reading: Any, minutes: int, fast: float) -> Any:
    """``reading`` ``minutes`` later: its counters advanced by its power (``fast`` times
    too much on import)."""
    power = reading.power_w
    if isinstance(reading, MeterReading):
        return replace(reading, import_wh=reading.import_wh + minutes * max(power, 0) / 60 * fast,
                       export_wh=reading.export_wh + minutes * max(-power, 0) / 60)
    if isinstance(reading, PvReading):
        return replace(reading, energy_wh=reading.energy_wh + minutes * power / 60)
    return reading


@dataclass
class PagesWorld:
    """The ledger, config, tokens (bearer secrets) and the app over them."""

    reader: LedgerReader
    config: CoopConfig
    app: FastAPI
    member_secret: str
    installer_id: str
    installer_secret: str


def build(tmp: Path) -> PagesWorld:
    """Two days and the day so far booked up to now (no gaps: a gap would push the ledger
    past now), the audit log with a few rows."""
    ledger = tmp / "ledger.sqlite"
    now = time.time()
    t0 = int(now // 86400 * 86400 - 2 * 86400)
    cycles = int((now - t0) // CYCLE_S) - 1
    ids = tuple(m for m, _ in MEMBERS)
    build_ledger(ledger, ids, seed=3, t0=t0, cycles=cycles, cycle_s=CYCLE_S, step=STEP,
                 gap_prob=0.0, invalid_prob=0.02, islanded_prob=0.02)
    LedgerWriter(ledger, STEP, list(MEMBERS)).close()  # the households' own names
    text = config_text(ledger, ids).replace('name = "H01"\n', 'name = "H01"\npublic = true\n')
    config = parse_config(text)
    reader = LedgerReader(ledger)
    store, audit = TokenStore.beside(ledger), AuditLog.beside(ledger)
    _, member = issue(store, audit, config.governance, role="member", member="h02",
                      label="Bea at home", lifetime_s=3600, by="cli:test")
    installer, installer_secret = issue(store, audit, config.governance, role="installer",
                                        member=None, label="Ines installer", lifetime_s=3600,
                                        by="cli:test")
    audit.append("Ana", "coordinator", "island.command", {"requested_by": "Ana <b>x</b>"},
                 "refused: meters not fresh: h03/meter")
    app = create_app(reader, FakeLive(device_health(now)), config)
    return PagesWorld(reader, config, app, member, installer.id, installer_secret)


def push_cycle(app: FastAPI, at: float) -> dict[str, Any]:
    """A live cycle as the runtime hands it: h01 and h02 with batteries, coop flows."""
    result = SimpleNamespace(**{k: np.array([FLOWS_W[k], 0.0, 0.0]) for k in FLOW_KEYS})
    report = SimpleNamespace(image=island_image(), start_ts=at - 3600, end_ts=at,
                             result=result)
    return app.state.live_hub.publish(report, {"state": "ON_GRID", "islanded": False})


@contextmanager
def served(world: PagesWorld) -> Iterator[str]:
    """The world's app on a free loopback port; its live streams closed at the end (an
    open stream would hold up the server's stop) and reopened for the next server."""
    with serve(world.app) as url:
        try:
            yield url
        finally:
            from api.surface import close_streams
            close_streams(world.app)
            world.app.state.live_hub.closed = False
