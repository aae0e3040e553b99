"""Runs the controller: the cycle loop, the API server, MQTT and the time series together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from controller.accounts.export import pseudonym, pseudonym_salt
from controller.accounts.running import running_figures
from controller.config import ConfigError, CoopConfig
from controller.cycle import Controller, CycleReport
from controller.governance.audit import WALL, AuditLog, simulated_label, use_clock
from controller.governance.local import forget_local_secret, new_local_secret
from controller.ledger import LedgerReader
from controller.mqtt_publish import MqttPublisher
from controller.reload import reloaded_config
from controller.snapshot import Snapshot, take_snapshot
from controller.timeseries import TimeSeriesWriter, interval_points, live_points
from controller.web import load_surface

log = logging.getLogger(__name__)


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns Ctrl-C."""

    def capture_signals(self):  # type: ignore[override]  # noqa: ANN201
        return contextlib.nullcontext()


class Runtime:
    """One running coop controller; also the API's live view."""

    def __init__(
        self, config: CoopConfig, clock: Callable[[], float] = time.time,
        nominal_dt_s: float | None = None,
    ) -> None:
        self.config = config
        self.cycle_s = config.controller.cycle_s
        self.settlement_s = config.ledger.settlement_s
        self._nominal_dt_s = nominal_dt_s
        #: A config file to reload before the next cycle (SIGHUP, :meth:`request_reload`).
        self._reload_from: Path | None = None
        self.controller = Controller(config, clock, nominal_dt_s)
        #: Simulated seconds per wall second: the demo's and a rehearsal's ``--speed``.
        self.speed = nominal_dt_s / self.cycle_s if nominal_dt_s else 1.0
        #: Which clock the controller runs on: the pages and the audit log say it, so that a
        #: simulated time is never read as wall time (``simulated 60×``).
        self.clock_label = WALL if clock is time.time else simulated_label(self.speed)
        # Rows this process writes to the coop's audit log: on the controller's clock.
        use_clock(AuditLog.beside(config.storage.ledger).path,
                  None if clock is time.time else clock, self.clock_label)
        # Only the ledger's writer (the lock is taken above) writes the local secret, with
        # which the CLI on this host may command without a token (0600: the service user's).
        self._local_secret = new_local_secret(config.storage.ledger)
        self.reader = LedgerReader(config.storage.ledger)
        #: The last cycle's snapshot, the API's only view of the controller (swapped whole).
        self.snapshot: Snapshot | None = None
        self._seq = 0
        #: Held while a cycle runs; the API's island commands take it (api/island.py).
        self.cycle_lock = threading.Lock()
        #: The API and pages (controller/web.py: found by entry point, never imported).
        self.surface = load_surface(self.reader, self, config)
        self.app = self.surface.app
        # A changed config is a change of the coop's rules: it goes into the audit log.
        AuditLog.beside(config.storage.ledger).record_config(config.model_dump_json())
        self.timeseries: TimeSeriesWriter | None = None
        if config.timeseries is not None:
            ts = config.timeseries
            spool = ts.spool_dir or config.storage.ledger.parent / "timeseries-spool"
            self.timeseries = TimeSeriesWriter(ts.url, ts.bucket, ts.org, ts.token, spool,
                                               int(ts.max_spool_mb * 2**20))
        self.publisher: MqttPublisher | None = None
        self._published = -math.inf  # wall time of the last live MQTT publication
        self._figures_sent = False  # energy figures: at the start, then per interval
        if config.mqtt is not None:
            self.publisher = MqttPublisher(
                config.mqtt.host, config.mqtt.port, config.mqtt.topic_prefix,
                self._shown_names(), access=config.mqtt.access(),
                kinds={m.id: {d.kind for d in m.devices} for m in config.members},
                federated=config.federation is not None,
            )

    # -- the API's live view ---------------------------------------------------------

    # Everything the API reads of the running controller comes from :attr:`snapshot`,
    # swapped whole once per cycle (controller/snapshot.py): never the open book, the grid
    # state machine or the poller, which the cycle changes on its own thread.

    def devices(self) -> list[dict]:
        """Device health at the last cycle's end, for the API."""
        snap = self.snapshot
        return [] if snap is None else list(snap.devices)

    def last_cycle_age_s(self) -> float | None:
        """Wall seconds since the last finished cycle."""
        snap = self.snapshot
        return None if snap is None else time.monotonic() - snap.wall

    def grid_supervisor(self):  # noqa: ANN201 - controller.island.live.GridSupervisor
        """The grid state machine of the running controller."""
        return self.controller.grid

    def now(self) -> float:
        """The controller's clock (simulated in the demo)."""
        return self.controller.clock()

    def clock(self) -> dict[str, object]:
        """The controller's clock for the pages: now, whether simulated, how fast."""
        return {"now": self.now(), "clock": self.clock_label,
                "simulated": self.clock_label != WALL, "speed": self.speed}

    def ledger_status(self) -> dict[str, object]:
        """The ledger writer's state: ``ok`` or ``failing`` with the reason."""
        return self.controller.writer.status()

    def mqtt_reader(self) -> dict[str, object] | None:
        """The MQTT device reader's state (:meth:`MqttHub.reader_status`); None without one."""
        hub = self.controller.poller.factory.hub
        return None if hub is None else hub.reader_status()

    def plan_ahead(self, member_id: str | None = None) -> dict[str, object] | None:
        """The plan for the next hours (:func:`controller.planning.outlook.outlook`): the
        member's own battery and sharing, or the coop's together; None without a plan."""
        from controller.planning.outlook import outlook

        plan = self.controller.plan
        ahead = None if plan is None else plan.ahead()
        if ahead is None:
            return None
        ids = list(self.controller.member_ids)
        if member_id is not None and member_id not in ids:
            return None
        return outlook(*ahead, None if member_id is None else ids.index(member_id))

    def rolling_plan(self) -> dict[str, object] | None:
        """The rolling plan's state, forecast and skill (None: ``[dispatch] plan`` off)."""
        plan = self.controller.plan
        return None if plan is None else plan.status()

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
        """Per member, Wh booked but not on disk at or after ``after_ts``: intervals
        waiting for the writer and the open interval's provisional Wh, as of the last
        cycle (built once per cycle, :meth:`Snapshot.unwritten_wh`)."""
        snap = self.snapshot
        return {} if snap is None else snap.unwritten_wh(after_ts)

    def open_interval_start(self) -> int | None:
        """Start of the settlement interval still open at the last cycle's end."""
        snap = self.snapshot
        return None if snap is None else snap.open_start

    # -- figures for MQTT ------------------------------------------------------------

    def _shown_names(self) -> list[tuple[str, str]]:
        """Each member's name on MQTT: its own if ``public``, else the ledger's pseudonym
        (as the API shows it to anyone but the member)."""
        try:
            salt = pseudonym_salt(self.reader)
        except LookupError:  # a ledger before pseudonyms: no name rather than the real one
            return [(m.id, m.name if m.public else f"Member {i + 1}")
                    for i, m in enumerate(self.config.members)]
        return [(m.id, m.name if m.public else pseudonym(salt, m.id))
                for m in self.config.members]

    def figures(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Every member's and the coop's running figures, the open interval included."""
        snap = self.snapshot
        with self.reader.consistent():
            committed = self.reader.totals_by_member()
            _, last_end, count = self.reader.span()
        ids = self.controller.member_ids if snap is None else snap.member_ids
        if snap is not None:
            count += sum(1 for start, _ in snap.pending if last_end is None or start >= last_end)
        committed = {m: committed.get(m, {}) for m in ids}
        per_member, coop = running_figures(
            committed, {}, count, None if snap is None else snap.unwritten_columns(last_end))
        for figures in (*per_member.values(), coop):
            figures["provisional"] = True
        return per_member, coop

    def _live_values(self, report: CycleReport) -> dict[str, dict[str, float | None]]:
        image = report.image

        def value(x: float) -> float | None:
            return round(float(x), 1) if np.isfinite(x) else None

        load = np.where(image.valid, image.load_w, np.nan)
        return {m: {"pv_w": value(image.pv_w[i]), "load_w": value(load[i]),
                    "grid_w": value(image.meter_w[i]), "battery_w": value(image.battery_w[i]),
                    "soc_pct": value(image.soc_pct[i])}
                for i, m in enumerate(image.member_ids)}

    # -- the loop --------------------------------------------------------------------

    async def cycle_once(self) -> CycleReport | None:
        """One cycle, then publish; an unexpected error is logged and the loop goes on."""
        # A coordinator's island command (an API thread) waits for the cycle to finish:
        # the grid state machine is stepped by one thread at a time.
        with self.cycle_lock:
            try:
                report = await self.controller.cycle()
            except Exception:  # noqa: BLE001 - the loop must survive a bad cycle
                log.exception("cycle failed")
                self.surface.cycle_done(None)
                return None
            self._seq += 1
            try:
                snap = take_snapshot(self.controller, report, self._seq)
            except Exception:  # noqa: BLE001 - the API keeps the last snapshot; cycles go on
                log.exception("cycle snapshot failed")
            else:
                self.snapshot = snap  # one assignment: a route sees the old one or the new
        self.surface.cycle_done(report, None if self.snapshot is None else self.snapshot.grid)
        if self.timeseries is not None:
            image = report.image
            points = live_points(report.end_ts, image.member_ids, {
                "pv_w": image.pv_w, "meter_w": image.meter_w, "battery_w": image.battery_w,
                "soc_pct": image.soc_pct, "setpoint_w": report.setpoints_w}, image.valid)
            for interval in report.committed:
                points += interval_points(interval.start_ts, interval.end_ts,
                                          interval.member_ids, interval.booked)
            self.timeseries.submit(points)
        if self.publisher is not None:
            await self._publish(report)
        return report

    async def _publish(self, report: CycleReport) -> None:
        """Energy figures when an interval was committed (and once at the start); live
        power at most every ``[mqtt] publish_s`` wall seconds. Every message is a row in
        Home Assistant's recorder: once a second was 61 rows a second for 10 members."""
        assert self.publisher is not None and self.config.mqtt is not None
        if report.committed or not self._figures_sent:
            self._figures_sent = True
            per_member, coop = await asyncio.to_thread(self.figures)
            self.publisher.publish(per_member, coop, provisional=True)
        if time.monotonic() - self._published >= self.config.mqtt.publish_s:
            self._published = time.monotonic()
            self.publisher.publish_live(self._live_values(report))

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every ``cycle_s`` and serve the API until ``stop`` is set."""
        api = _ApiServer(uvicorn.Config(
            self.app, host=self.config.api.host, port=self.config.api.port,
            log_level="warning", lifespan="off",
            # Open live streams must not hold the shutdown up (they are closed first).
            timeout_graceful_shutdown=5,
        ))
        api_task = asyncio.create_task(api.serve())
        if self.publisher is not None:
            self.publisher.start()
        try:
            next_tick = time.monotonic()
            while not stop.is_set():
                if self._reload_from is not None:  # between cycles, never inside one
                    path, self._reload_from = self._reload_from, None
                    await self.reload(path)
                await self.cycle_once()
                next_tick += self.cycle_s
                delay = next_tick - time.monotonic()
                if delay < 0:  # overran: skip ahead instead of bursting to catch up
                    next_tick = time.monotonic()
                    delay = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            self.surface.close()
            api.should_exit = True
            await api_task
            await self.close()

    def request_reload(self, path: Path) -> None:
        """Reload the config from ``path`` before the next cycle (a signal handler's call)."""
        self._reload_from = Path(path)

    async def reload(self, path: Path) -> bool:
        """Take the config in ``path``; whether it was taken.

        A config with an error, or one that changes what only a restart can
        (:mod:`controller.reload`), leaves the running one in force; why is
        logged and written to the audit log (``config.reload``, ``refused``).
        Taken, the controller is rebuilt on the same ledger: the loads it held
        off go back on first, the grid state and the overrides carry over.
        """
        audit = AuditLog.beside(self.config.storage.ledger)
        try:
            new = await asyncio.to_thread(reloaded_config, path, self.config)
        except ConfigError as exc:
            log.error("config reload refused, the running config stays: %s", exc)
            audit.append("controller", "controller", "config.reload",
                         {"path": str(path), "error": str(exc)}, "refused")
            return False
        old = self.controller
        await old.release_loads()
        await asyncio.to_thread(old.close)
        try:
            fresh = Controller(new, old.clock, self._nominal_dt_s)
        except Exception as exc:  # noqa: BLE001 - the old config must come back whatever failed
            log.error("config reload refused, the running config stays: %s", exc)
            audit.append("controller", "controller", "config.reload",
                         {"path": str(path), "error": str(exc)}, "refused")
            self.controller = self._carry_over(old, Controller(self.config, old.clock,
                                                               self._nominal_dt_s))
            return False
        self.controller = self._carry_over(old, fresh)
        self.config, self.cycle_s = new, new.controller.cycle_s
        text = new.model_dump_json()
        audit.append("controller", "controller", "config.reload",
                     {"path": str(path), "sha256": hashlib.sha256(text.encode()).hexdigest()},
                     "loaded")
        audit.record_config(text)
        log.warning("config reloaded from %s", path)
        return True

    @staticmethod
    def _carry_over(old: Controller, new: Controller) -> Controller:
        """What a rebuilt controller keeps: the grid state (an island in force) and the
        coordinator's overrides."""
        new.grid, new.islanded, new.overrides = old.grid, old.islanded, old.overrides
        new.grid._on_record = new._record_transition  # transitions go to the open ledger
        return new

    async def close(self) -> None:
        """Stop publishing, hand batteries back, write what the ledger holds."""
        if self.publisher is not None:
            self.publisher.stop()
        await self.controller.poller.release_batteries()
        await self.controller.poller.release_pv_limits()
        await self.controller.release_loads()
        if self.timeseries is not None:
            await asyncio.to_thread(self.timeseries.close)
        # The local secret dies with the controller (a later one writes its own).
        forget_local_secret(self.config.storage.ledger, self._local_secret)
        use_clock(AuditLog.beside(self.config.storage.ledger).path, None)
        await asyncio.to_thread(self.controller.close)

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
