"""Polls every configured device concurrently and freezes the process image.

Readings are checked on the way in: a missing, NaN or absurd value is a
failed read ("garbage"), never a number that reaches the dispatch.

Device health (freshness, back-off, the counters' integration) runs on the
poller's ``clock``: the controller's clock when a :class:`~controller.cycle.Controller`
owns the poller, the monotonic wall clock for a standalone one (``commonwatt read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from controller.config import CoopConfig, DeviceConfig
from controller.counters import CounterCheck
from controller.drivers import READERS, DriverFactory
from controller.health import BACKOFF_MAX_S, DeviceHealth
from controller.load_ids import load_id
from controller.plausibility import check_power, power_limit_w
from controller.process_image import ProcessImage
from devices.kinds import BatteryReading, MeterReading, PvLimit, PvReading, Setpoint
from devices.modbus.transport import DeviceError
from devices.mqtt.hub import LoadReading
from devices.sunspec.client import SunSpecClient
from devices.templates.driver import TemplateDevice

MAX_ABS_POWER_W = 1_000_000.0
Reading = MeterReading | PvReading | BatteryReading | LoadReading
log = logging.getLogger(__name__)


@dataclass(slots=True)
class PolledDevice:
    """One configured device, its driver, health and last good reading."""

    member_index: int
    config: DeviceConfig
    driver: Any
    health: DeviceHealth
    reading: Reading | None = None
    client: SunSpecClient | None = None
    counters: CounterCheck = field(default_factory=CounterCheck)
    #: Clock time at which the last setpoint the battery accepted lapses on the device.
    setpoint_until: float = -math.inf
    #: The largest plausible |power|, W, and where it comes from (None: no limit).
    limit_w: tuple[float, str] | None = None


def _finite(name: str, value: float | None, low: float, high: float) -> float:
    if value is None or not math.isfinite(value) or not low <= value <= high:
        raise DeviceError("garbage", f"{name} = {value!r} (expected {low:g}…{high:g})")
    return float(value)


def _counter(value: float | None) -> float:
    """A counter value for the process image: NaN where the device has none."""
    return float(value) if value is not None and math.isfinite(value) and value >= 0 else np.nan


def check_reading(reading: Reading) -> Reading:
    """Reject readings the dispatch must not see; return the reading if usable."""
    if isinstance(reading, MeterReading):
        _finite("meter W", reading.power_w, -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
    elif isinstance(reading, PvReading):
        _finite("pv W", reading.power_w, -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
    elif isinstance(reading, LoadReading):
        _finite("load W", reading.power_w, -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
    else:
        _finite("battery W", reading.power_w, -MAX_ABS_POWER_W, MAX_ABS_POWER_W)
        _finite("battery SoC %", reading.soc_pct, 0.0, 100.0)
        _finite("battery capacity Wh", reading.capacity_wh, 1.0, 10_000_000.0)
    return reading


@dataclass
class Poller:
    """Reads every device of a coop and writes battery setpoints back.

    Args:
        config: the validated configuration.
        clock: seconds for device health; the controller passes a
            :class:`~controller.health.DeviceClock` over its own clock.
        stale_after_s: a reading older than this (``clock`` seconds) is unknown;
            None: the configured ``stale_after_s``.
    """

    config: CoopConfig
    clock: Callable[[], float] = time.monotonic
    stale_after_s: float | None = None
    backoff_max_s: float = BACKOFF_MAX_S
    stale_s: float = field(init=False)
    factory: DriverFactory = field(init=False)
    devices: list[PolledDevice] = field(init=False)
    started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.stale_s = (self.config.controller.stale_after_s if self.stale_after_s is None
                        else self.stale_after_s)
        self.factory = DriverFactory(self.config)
        self.devices = []
        for index, member in enumerate(self.config.members):
            loads = 0
            for dev in member.devices:
                driver, client = self.factory.build(dev)
                name = f"{member.id}/{dev.kind}"
                if dev.kind == "load":
                    loads += 1
                    name = load_id(member.id, loads)  # as controller/load_ids.py names it
                health = DeviceHealth(name, dev.endpoint, backoff_max_s=self.backoff_max_s)
                self.devices.append(PolledDevice(index, dev, driver, health, client=client,
                                                 limit_w=power_limit_w(member, dev)))

    async def start(self) -> None:
        """Connect to the MQTT broker, if any device needs it (Modbus connects lazily)."""
        if not self.started and self.factory.hub is not None:
            await asyncio.to_thread(self.factory.hub.start)
            await asyncio.to_thread(self.factory.hub.wait_subscribed)
        self.started = True

    async def _read(self, device: PolledDevice, now: float) -> None:
        if device.health.in_backoff(now):
            return
        try:
            reading: Reading = await getattr(device.driver, READERS[device.config.kind])()
            check_reading(reading)
            check_power(reading.power_w, device.limit_w, f"{device.config.kind} power")
            device.reading = reading
            # Device time, not wall time: the counters advance on the device's clock.
            note = device.counters.update(reading, self.clock())
            if note:
                device.health.note(note)
        except DeviceError as exc:
            if device.client is not None and exc.reason in ("garbage", "disconnected"):
                device.client.forget()
            device.health.failed(self.clock(), str(exc))
        except Exception as exc:  # noqa: BLE001 - one device must never stop the cycle
            device.health.failed(self.clock(), f"unexpected: {exc!r}")
        else:
            device.health.succeeded(self.clock())

    async def poll(self) -> None:
        """Read every device not in back-off, all at once."""
        if not self.started:
            try:
                await self.start()
            except DeviceError as exc:
                for d in self.devices:
                    if d.config.protocol == "mqtt":
                        d.health.failed(self.clock(), str(exc))
                self.started = True
        await self.read_devices(self.devices)

    async def read_devices(self, devices: Sequence[PolledDevice]) -> None:
        """Read ``devices`` (those not in back-off) at once; the broker must be started."""
        now = self.clock()
        await asyncio.gather(*(self._read(d, now) for d in devices))

    def freeze(self, timestamp: float) -> ProcessImage:
        """One consistent snapshot of the last fresh readings (NaN where unknown)."""
        n = len(self.config.members)
        stale = self.stale_s
        now = self.clock()
        values = {k: np.full(n, np.nan) for k in ProcessImage.ARRAYS}
        pv_hz = np.full(n, np.nan)
        has_pv = np.zeros(n, dtype=bool)
        has_battery = np.zeros(n, dtype=bool)
        idle = np.zeros(n, dtype=bool)
        failing = np.zeros(n, dtype=bool)
        for d in self.devices:
            i, kind = d.member_index, d.config.kind
            if kind == "pv":
                has_pv[i] = True
            if kind == "battery":
                has_battery[i] = True
            # A battery read before its last setpoint lapsed, and silent since, has
            # reverted: its last reading no longer says what it does.
            lapsed = (kind == "battery" and d.health.last_good is not None
                      and d.health.last_good < d.setpoint_until <= now)
            if d.reading is None or not d.health.fresh(now, stale) or lapsed:
                # The grid-former never idles islanded (it is the island's slack): unknown
                # stays unknown.
                if kind == "battery" and now > d.setpoint_until and not d.config.grid_forming:
                    # Unknown, but its last setpoint has lapsed: by the revert timer's
                    # contract it idles (its safe state). The member's meter and PV still
                    # say what the house drew; the battery is left out of the dispatch.
                    has_battery[i] = False
                    idle[i] = True
                continue
            r = d.reading
            if isinstance(r, LoadReading):
                continue
            if isinstance(r, MeterReading):
                values["meter_w"][i] = r.power_w
                values["import_wh"][i] = _counter(r.import_wh)
                values["export_wh"][i] = _counter(r.export_wh)
            elif isinstance(r, PvReading):
                values["pv_w"][i] = r.power_w
                values["pv_energy_wh"][i] = _counter(r.energy_wh)
                if r.frequency_hz is not None:
                    pv_hz[i] = r.frequency_hz
            else:
                values["battery_w"][i] = r.power_w
                failing[i] = d.health.consecutive_failures > 0
                values["soc_pct"][i] = r.soc_pct
                values["capacity_wh"][i] = r.capacity_wh
                values["max_charge_w"][i] = r.max_charge_w or 0.0
                values["max_discharge_w"][i] = r.max_discharge_w or 0.0
        return ProcessImage(
            timestamp=timestamp,
            member_ids=tuple(m.id for m in self.config.members),
            has_pv=has_pv,
            has_battery=has_battery,
            **values,
            battery_assumed_idle=idle & ~has_battery,
            battery_failing=failing & has_battery,
            pv_hz=pv_hz,
        )

    async def write_setpoints(
        self, power_w: np.ndarray, writable: np.ndarray, expiry_s: int
    ) -> None:
        """Send each reachable battery its setpoint (discharge > 0), expiring after ``expiry_s``."""
        expiry = expiry_s
        batteries = [d for d in self.devices if d.config.kind == "battery"]

        async def send(d: PolledDevice) -> None:
            try:
                await d.driver.write_setpoint(Setpoint(float(power_w[d.member_index]), expiry))
                d.setpoint_until = self.clock() + expiry
            except DeviceError as exc:
                d.health.failed(self.clock(), f"setpoint: {exc}")
            except Exception as exc:  # noqa: BLE001 - a failed write must not stop the cycle
                d.health.failed(self.clock(), f"setpoint: unexpected: {exc!r}")

        await asyncio.gather(*(send(d) for d in batteries if writable[d.member_index]))

    def can_limit_pv(self, d: PolledDevice) -> bool:
        """Whether ``d`` is a PV inverter whose output Commonwatt can cap."""
        if d.config.kind != "pv" or not hasattr(d.driver, "write_limit"):
            return False
        return not isinstance(d.driver, TemplateDevice) or d.driver.template.pv_limit is not None

    async def write_pv_limits(self, caps_w: np.ndarray, previous_w: np.ndarray,
                              expiry_s: int) -> None:
        """Cap each curtailable inverter at ``caps_w`` (W; NaN: none) with a revert timer.

        A cap is refreshed every cycle so its timer never runs out while it is
        wanted; a cap no longer wanted is released at once.
        """
        async def send(d: PolledDevice, cap: float | None) -> None:
            try:
                await d.driver.write_limit(None if cap is None else PvLimit(cap, expiry_s))
            except DeviceError as exc:
                d.health.failed(self.clock(), f"pv limit: {exc}")
            except Exception as exc:  # noqa: BLE001 - a failed write must not stop the cycle
                d.health.failed(self.clock(), f"pv limit: unexpected: {exc!r}")

        jobs = []
        for d in self.devices:
            if not self.can_limit_pv(d):
                continue
            i = d.member_index
            if math.isfinite(caps_w[i]):
                jobs.append(send(d, float(caps_w[i])))
            elif math.isfinite(previous_w[i]):
                jobs.append(send(d, None))
        await asyncio.gather(*jobs)

    async def release_batteries(self) -> None:
        """On shutdown: every battery back to its safe mode, its vendor's own logic.

        A template battery gets its ``release`` writes (those without a device-side
        watchdog would otherwise keep the last command forever; the others would keep it
        until it expires), a SunSpec battery ``StorCtl_Mod = 0`` (model 124) or
        ``WSetEna = 0`` (704).
        """
        async def release(d: PolledDevice) -> None:
            driver = d.driver
            try:  # best effort, one battery must not keep the others from their release
                if isinstance(driver, TemplateDevice):
                    await asyncio.wait_for(driver.write_setpoint(None), 5.0)
                else:
                    await asyncio.wait_for(driver.release(), 5.0)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: release on stop failed: %s", d.health.name, exc)

        await asyncio.gather(*(
            release(d) for d in self.devices if d.config.kind == "battery" and (
                (isinstance(d.driver, TemplateDevice) and d.driver.kmap.control is not None)
                or hasattr(d.driver, "release"))
        ))

    async def release_pv_limits(self) -> None:
        """On shutdown: release every PV cap (those without a revert timer would stay)."""
        async def release(d: PolledDevice) -> None:
            with contextlib.suppress(Exception):  # best effort: we are stopping anyway
                await asyncio.wait_for(d.driver.write_limit(None), 5.0)

        await asyncio.gather(*(release(d) for d in self.devices if self.can_limit_pv(d)))

    def grid_view(self) -> tuple[str, bool]:
        """What the grid-forming inverters say of the utility ("on", "off" or "unknown"),
        and whether one of them is present and healthy."""
        now = self.clock()
        stale = self.stale_s
        formers = [d for d in self.devices
                   if d.config.kind == "battery" and d.config.grid_forming]
        fresh = [d for d in formers if d.health.fresh(now, stale) and d.reading is not None]
        views = {getattr(d.reading, "grid", None) for d in fresh} - {None}
        # Two formers that disagree say nothing certain: unknown, never off.
        grid = views.pop() if len(views) == 1 else "unknown"
        return grid, bool(fresh)

    def meter_grid(self) -> list[tuple[str, float | None, float | None]]:
        """Each fresh meter's name, phase voltage (V) and frequency (Hz), None where it
        reports neither (controller/island/grid_loss.py judges them)."""
        now, stale = self.clock(), self.stale_s
        return [(d.health.name, d.reading.voltage_v, d.reading.frequency_hz)
                for d in self.devices if isinstance(d.reading, MeterReading)
                and d.health.fresh(now, stale)]

    def grid_overloaded(self) -> bool | None:
        """Whether a fresh grid-forming inverter reports more load than it can carry; None
        when no grid-former is fresh (nothing is known)."""
        now, stale = self.clock(), self.stale_s
        fresh = [d for d in self.devices if d.config.kind == "battery" and d.config.grid_forming
                 and d.reading is not None and d.health.fresh(now, stale)]
        if not fresh:
            return None
        return any(getattr(d.reading, "overloaded", False) for d in fresh)

    def load_readings(self) -> dict[str, LoadReading]:
        """Fresh readings of the switchable loads by device name (``member/loadN``).

        The shedding planner's input (:meth:`ShedPlanner.plan`); a stale plug is left out.
        """
        now, stale = self.clock(), self.stale_s
        return {d.health.name: d.reading for d in self.devices
                if isinstance(d.reading, LoadReading) and d.health.fresh(now, stale)}

    async def switch_loads(self, actions: Sequence[Any], mandate_s: int) -> dict[str, str]:
        """Send each shedding action (``load_id``, ``on``) to its plug; errors by load id.

        An off asks the plug to switch itself back on after ``mandate_s`` where
        its format can, so a plug stays off only while the controller lives:
        Shelly Gen2 (``Switch.Set`` with ``toggle_after``) and Tasmota
        (``RuleTimer8``, with the rule ``devices.mqtt.formats.TASMOTA_REVERT_RULE``
        installed once on the plug). Zigbee2MQTT has no such command (its
        ``on_time`` only turns a plug off after an on): such a plug stays off
        until Commonwatt switches it on, when the mandate lapses or on stop
        (``ShedPlanner.release_all``); if the controller dies first, by hand.
        """
        by_name = {d.health.name: d for d in self.devices if d.config.kind == "load"}
        errors: dict[str, str] = {}

        async def send(load_id: str, on: bool) -> None:
            device = by_name.get(load_id)
            try:
                if device is None:
                    raise DeviceError("not controllable", f"no switchable load {load_id!r}")
                await device.driver.switch(on, None if on else int(mandate_s))
            except Exception as exc:  # noqa: BLE001 - one plug must never stop the others
                errors[load_id] = str(exc)

        await asyncio.gather(*(send(a.load_id, a.on) for a in actions))
        return errors

    def unknown_devices(self) -> list[str]:
        """Names of the devices whose readings are not fresh now."""
        now = self.clock()
        stale = self.stale_s
        return [d.health.name for d in self.devices if not d.health.fresh(now, stale)]

    def health(self) -> list[dict[str, object]]:
        """Health of every device, for the API and the CLI, with its last good reading
        (``reading``: the driver's fields, W, Wh and %; ``None`` before the first)."""
        now = self.clock()
        stale = self.stale_s
        return [{**d.health.as_dict(now, stale), "kind": d.config.kind,
                 "reading": None if d.reading is None else asdict(d.reading),
                 "counters": d.counters.as_dict(),
                 # MQTT only: messages on its topics not read (over a limit, malformed).
                 "messages_refused": getattr(d.driver, "refused", None)}
                for d in self.devices]

    def close(self) -> None:
        """Close every Modbus connection and the MQTT hub."""
        self.factory.close()
