"""A live controller for the API benchmark: the real :class:`~controller.runtime.Runtime`
(its :class:`~controller.cycle.Controller`, ledger writer, snapshot and API) over a
synthetic fleet of thousands of households, cycling once a second.

Only the device I/O is synthetic: :class:`SyntheticPoller` stands where the
:class:`~controller.polling.Poller` stands and answers with readings computed for
every household at once (numpy), the batteries following the setpoints the
controller writes. Polling 20,000 Modbus devices would measure the simulators, not
the API; everything after the poll (the dispatch, the book, the snapshot, the
ledger's per-cycle save) is what production runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import controller.cycle
from controller.config import parse_config
from controller.ledger import LedgerReader
from controller.process_image import ProcessImage

#: Every this many households share a simulated device port (units 1-200 on it).
PER_PORT = 200
BATTERY_SHARE = 0.6


class SyntheticPoller:
    """Readings of a synthetic fleet, computed each cycle; no I/O (see the module doc)."""

    def __init__(self, member_ids: tuple[str, ...], has_battery: np.ndarray,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        n = len(member_ids)
        self.member_ids = member_ids
        self.has_pv = rng.random(n) < 0.75
        self.kwp = np.where(self.has_pv, rng.choice([3.0, 5.0, 8.0], n), 0.0)
        self.base_w = rng.uniform(150.0, 900.0, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.has_battery = has_battery
        self.capacity = np.where(has_battery, rng.choice([5000.0, 10000.0, 13500.0], n), np.nan)
        self.stored = np.where(has_battery, self.capacity * 0.5, np.nan)
        self.power = np.where(has_battery, 3300.0, np.nan)
        self.setpoint = np.zeros(n)
        self.counters = np.zeros((3, n))  # import, export, PV (Wh)
        self.last_ts: float | None = None
        self.writes = 0

    async def poll(self) -> None:
        """Nothing to read: :meth:`freeze` computes the readings."""

    def freeze(self, ts: float) -> ProcessImage:
        """The fleet at ``ts``: PV a slow sine per house, load around its base, the
        batteries at their last setpoint within their content."""
        dt_h = 0.0 if self.last_ts is None else max(ts - self.last_ts, 0.0) / 3600.0
        self.last_ts = ts
        sun = max(0.0, float(np.sin(2 * np.pi * ((ts / 86400.0) % 1.0 - 0.25))))
        pv = self.kwp * 1000.0 * sun * (0.85 + 0.15 * np.sin(ts / 300.0 + self.phase))
        load = self.base_w * (1.0 + 0.3 * np.sin(ts / 420.0 + self.phase))
        # Positive discharges; a battery cannot give what it does not hold.
        battery = np.where(self.has_battery, np.clip(self.setpoint, -self.power, self.power), 0.0)
        if dt_h > 0:
            battery = np.where(self.stored - battery * dt_h < 0.05 * np.nan_to_num(self.capacity),
                               np.minimum(battery, 0.0), battery)
            battery = np.where(self.stored - battery * dt_h > np.nan_to_num(self.capacity),
                               np.maximum(battery, 0.0), battery)
            self.stored = np.where(self.has_battery, self.stored - battery * dt_h, np.nan)
        meter = load - pv - battery
        self.counters += np.stack([np.maximum(meter, 0.0), np.maximum(-meter, 0.0), pv]) * dt_h
        return ProcessImage(
            timestamp=ts, member_ids=self.member_ids, has_pv=self.has_pv,
            has_battery=self.has_battery, pv_w=np.where(self.has_pv, pv, np.nan),
            meter_w=meter, battery_w=np.where(self.has_battery, battery, np.nan),
            soc_pct=self.stored / self.capacity * 100.0, capacity_wh=self.capacity.copy(),
            max_charge_w=self.power.copy(), max_discharge_w=self.power.copy(),
            import_wh=self.counters[0].copy(), export_wh=self.counters[1].copy(),
            pv_energy_wh=self.counters[2].copy())

    def grid_view(self) -> tuple[str, bool]:
        """No grid-forming inverter: the utility's state is not known from the devices."""
        return "unknown", False

    def grid_overloaded(self) -> bool | None:
        return None

    def unknown_devices(self) -> list[str]:
        return []

    def load_readings(self) -> dict[str, Any]:
        return {}

    def health(self) -> list[dict[str, object]]:
        return []

    async def write_setpoints(self, setpoints_w: np.ndarray, mask: np.ndarray,
                              expiry_s: float) -> None:
        self.setpoint = np.where(mask, setpoints_w, 0.0)
        self.writes += 1

    async def write_pv_limits(self, *args: Any) -> None:
        """Nothing is curtailed on-grid without an export cap."""

    async def switch_loads(self, actions: Any, mandate_s: int) -> dict[str, str]:
        return {}

    async def release_batteries(self) -> None:
        self.setpoint[:] = 0.0

    async def release_pv_limits(self) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """No connections."""


def live_toml(members: list[tuple[str, str]], ledger: Path, port: int,
              settlement_s: int) -> str:
    """A config for ``members`` (each with a meter, most with a battery) on ``ledger``."""
    lines = ['name = "Benchmark coop"', "[controller]", "cycle_s = 1.0",
             "[ledger]", f"settlement_s = {settlement_s}", "[storage]", f'ledger = "{ledger}"',
             "[api]", 'host = "127.0.0.1"', f"port = {port}"]
    rng = np.random.default_rng(1)
    batteries = rng.random(len(members)) < BATTERY_SHARE
    for j, (member, name) in enumerate(members):
        unit = j % PER_PORT + 1
        meter = (f'{{ kind = "meter", host = "127.0.0.1", port = {20_000 + j // PER_PORT}, '
                 f"unit = {unit} }}")
        battery = (f', {{ kind = "battery", host = "127.0.0.1", port = {30_000 + j // PER_PORT}, '
                   f"unit = {unit} }}" if batteries[j] else "")
        lines += ["[[members]]", f'id = "{member}"', f"name = {json.dumps(name)}",
                  f"devices = [{meter}{battery}]"]
    return "\n".join(lines) + "\n"


def serve(ledger: Path, port: int, stats: Path) -> None:
    """Run a live controller with the API on ``port`` over ``ledger`` until SIGTERM; then
    write its cycle statistics to ``stats`` (JSON)."""
    from controller.runtime import Runtime

    reader = LedgerReader(ledger)
    members = reader.members()
    config = parse_config(live_toml(members, ledger, port, reader.step), "bench-live.toml")
    ids = tuple(m.id for m in config.members)
    has_battery = np.array([m.device("battery") is not None for m in config.members])
    poller = SyntheticPoller(ids, has_battery)
    # The one seam: the controller's Poller is the synthetic one.
    controller.cycle.Poller = lambda *args, **kwargs: poller  # type: ignore[assignment,misc]
    # The controller's clock runs at wall speed from the ledger's last interval on, as
    # after a restart: from today's date it would first book the months in between as gaps.
    _, last_end, _ = reader.span()
    offset = (last_end or time.time()) - time.time()
    runtime = Runtime(config, clock=lambda: time.time() + offset)
    durations: list[float] = []
    snapshot_ms: list[float] = []
    original = runtime.cycle_once

    async def timed_cycle() -> Any:
        start = time.perf_counter()
        report = await original()
        total = time.perf_counter() - start
        if report is not None:
            durations.append(report.duration_s)
            snapshot_ms.append((total - report.duration_s) * 1e3)
        return report

    runtime.cycle_once = timed_cycle  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await runtime.run(stop)

    started = time.monotonic()
    asyncio.run(main())
    stats.write_text(json.dumps({
        "members": len(ids), "seconds": round(time.monotonic() - started, 1),
        "cycles": len(durations), "setpoint_writes": poller.writes,
        "cycle_ms_p50": round(statistics.median(durations) * 1e3, 2) if durations else None,
        "cycle_ms_max": round(max(durations) * 1e3, 2) if durations else None,
        "snapshot_and_publish_ms_p50": (round(statistics.median(snapshot_ms), 2)
                                        if snapshot_ms else None),
    }))
