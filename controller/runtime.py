"""Runs the controller: the cycle loop, the API server and the MQTT publisher together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
import uvicorn

from api.app import create_app
from api.energy import member_figures
from controller.config import CoopConfig
from controller.cycle import Controller
from controller.ledger import LedgerReader
from controller.mqtt_publish import MqttPublisher
from controller.timeseries import TimeSeriesWriter
from dispatch.rounding import LEDGER_FIELDS

log = logging.getLogger(__name__)


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns Ctrl-C."""

    def capture_signals(self):  # type: ignore[override]  # noqa: ANN201
        return contextlib.nullcontext()


class RunningTotals:
    """Cumulative integer Wh per member and ledger field, for publishing."""

    def __init__(self, reader: LedgerReader, member_ids: list[str]) -> None:
        self.member_ids = member_ids
        self.wh = np.array(
            [[reader.totals(m)[f] for f in LEDGER_FIELDS] for m in member_ids], dtype=np.int64
        ).reshape(len(member_ids), len(LEDGER_FIELDS))
        self.intervals = reader.span()[2]

    def add(self, booked: dict[str, np.ndarray]) -> None:
        """Add one committed interval."""
        self.wh += np.stack([booked[f] for f in LEDGER_FIELDS], axis=1)
        self.intervals += 1

    def figures(self) -> tuple[dict[str, dict], dict]:
        """Per-member and coop figures in kWh."""
        def fig(row: np.ndarray) -> dict:
            return member_figures(
                dict(zip(LEDGER_FIELDS, row.tolist(), strict=True)) | {"intervals": self.intervals}
            )

        return {m: fig(self.wh[i]) for i, m in enumerate(self.member_ids)}, fig(self.wh.sum(0))


class Runtime:
    """One running coop controller; also the API's live view."""

    def __init__(
        self, config: CoopConfig, clock: Callable[[], float] = time.time,
        nominal_dt_s: float | None = None,
    ) -> None:
        self.config = config
        self.cycle_s = config.controller.cycle_s
        self.controller = Controller(config, clock, nominal_dt_s)
        self.reader = LedgerReader(config.storage.ledger)
        self.app = create_app(self.reader, live=self)
        self.totals = RunningTotals(self.reader, self.controller.member_ids)
        self.timeseries: TimeSeriesWriter | None = None
        if config.timeseries is not None:
            ts = config.timeseries
            self.timeseries = TimeSeriesWriter(ts.url, ts.bucket, ts.org, ts.token)
        self.publisher: MqttPublisher | None = None
        if config.mqtt is not None:
            self.publisher = MqttPublisher(
                config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix,
                [(m.id, m.name) for m in config.members],
            )

    def devices(self) -> list[dict]:
        """Device health, for the API."""
        return self.controller.poller.health()

    def last_cycle_age_s(self) -> float | None:
        """Wall seconds since the last finished cycle."""
        last = self.controller.last_cycle_wall
        return None if last is None else time.monotonic() - last

    async def cycle_once(self) -> None:
        """One cycle, then publish; an unexpected error is logged and the loop goes on."""
        try:
            report = await self.controller.cycle()
        except Exception:  # noqa: BLE001 - the loop must survive a bad cycle
            log.exception("cycle failed")
            return
        if report.booked is not None and self.timeseries is not None:
            await asyncio.to_thread(self.timeseries.write, report)
        if report.booked is not None:
            self.totals.add(report.booked)
            if self.publisher is not None:
                self.publisher.publish(*self.totals.figures())

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``cycle_s`` and serve the API until ``stop`` is set."""
        api = _ApiServer(uvicorn.Config(
            self.app, host=self.config.api.host, port=self.config.api.port,
            log_level="warning", lifespan="off",
        ))
        api_task = asyncio.create_task(api.serve())
        if self.publisher is not None:
            self.publisher.start()
        try:
            next_tick = time.monotonic()
            while not stop.is_set():
                await self.cycle_once()
                next_tick += self.cycle_s
                delay = next_tick - time.monotonic()
                if delay < 0:  # overran: skip ahead instead of bursting to catch up
                    next_tick = time.monotonic()
                    delay = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            api.should_exit = True
            await api_task
            if self.publisher is not None:
                self.publisher.stop()
            await self.controller.poller.release_batteries()
            if self.timeseries is not None:
                self.timeseries.close()
            self.controller.close()

    async def wait_until_serving(self, timeout_s: float = 30.0) -> None:
        """Wait until the API accepts connections."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection(
                    self.config.api.host, self.config.api.port
                )
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError(f"API did not start on {self.config.api.host}:{self.config.api.port}")
