"""``commonwatt agent``: read the household's devices, publish frozen readings, obey mandates.

Every ``period_s`` the agent polls the household's devices with the coop's
own :class:`~controller.polling.Poller` (same drivers, checks and health),
freezes one reading, numbers it, writes it to the disk spool and publishes
it (:mod:`.link`). It also publishes each device's newest values on
``live/<kind>`` (switchable loads on ``live/load<N>``) for the coop's dispatch,
which reads them as ordinary MQTT devices (``family = "commonwatt-agent"``), with
the same staleness and health as any.
Commands from the coop hold until they expire or the coop goes silent; then
the agent returns to the safe state (:mod:`.mandates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from controller.agent.config import AgentConfig
from controller.agent.link import AgentLink
from controller.agent.mandates import Mandates, parse_command
from controller.agent.spool import DiskSpool
from controller.polling import Poller
from controller.process_image import ProcessImage

log = logging.getLogger(__name__)
#: What each device kind publishes live, as (name in the message, process-image array).
LIVE = {"meter": {"power_w": "meter_w", "import_wh": "import_wh", "export_wh": "export_wh"},
        "pv": {"power_w": "pv_w", "energy_wh": "pv_energy_wh"},
        "battery": {"power_w": "battery_w", "soc_pct": "soc_pct", "capacity_wh": "capacity_wh",
                    "max_charge_w": "max_charge_w", "max_discharge_w": "max_discharge_w"}}


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def frozen_reading(image: ProcessImage, member: str, seq: int, oldest: int,
                   unknown: list[str], epoch: int = 0) -> dict[str, object]:
    """One numbered, timestamped reading of the household (``None`` where unknown).

    ``oldest`` is the oldest number the agent still holds: anything older is
    booked or was dropped, so the coop never waits for it.
    """
    return {"member": member, "epoch": epoch, "seq": seq, "oldest": oldest,
            "ts": image.timestamp,
            **{name: _num(getattr(image, name)[0]) for name in ProcessImage.ARRAYS},
            "unknown": unknown}


class EdgeAgent:
    """One household's agent."""

    def __init__(self, config: AgentConfig, clock: Callable[[], float] = time.time) -> None:
        self.config, self.clock = config, clock
        household = config.household()
        self.poller = Poller(household)
        self.kinds = {d.kind for d in config.devices}
        self.spool = DiskSpool(config.agent.spool, config.agent.max_spool_rows)
        self.mandates = Mandates(config.agent.coop_silent_s)
        self._commands: list[dict] = []
        self.link = AgentLink(config, self.spool, self._commands.append, clock)
        self.safe = True
        self.rejected_commands: list[str] = []

    def start(self) -> None:
        """Connect to the coop broker."""
        self.link.start()

    async def tick(self) -> dict[str, object]:
        """Poll, freeze, spool, publish, apply mandates; return the reading."""
        await self.poller.poll()
        now = self.clock()
        image = self.poller.freeze(now)
        seq = self.spool.next_seq()
        oldest = self.spool.oldest() or seq
        reading = frozen_reading(image, self.config.agent.member, seq, oldest,
                                 self.poller.unknown_devices(), self.spool.epoch)
        self.spool.append(seq, json.dumps(reading).encode())
        self.link.resend_if_stuck()
        self.link.send_pending()
        for kind in self.kinds & set(LIVE):
            values = {k: reading[v] for k, v in LIVE[kind].items()}
            if values["power_w"] is not None:  # unknown here: the coop sees it go stale
                self.link.publish_live(kind, values)
        for name, load in self.poller.load_readings().items():  # fresh plugs only
            self.link.publish_live(name.split("/")[-1], {
                "power_w": load.power_w, "energy_wh": load.energy_wh, "on": load.on})
        await self._obey(now)
        return reading

    async def _obey(self, now: float) -> None:
        while self._commands:
            command = self._commands.pop(0)
            try:
                self.mandates.accept(parse_command(command, now))
            except ValueError as exc:
                self.rejected_commands.append(str(exc))
                log.warning("agent: command refused: %s", exc)
        in_force = self.mandates.in_force(now, self.link.last_heard)
        battery = next((m for m in in_force if m.kind == "battery"), None)
        if battery is not None and battery.power_w is not None:
            # The device's own timer ends the command with the mandate, even if we die.
            expiry = max(1, min(self.poller.config.controller.setpoint_expiry_s,
                                int(battery.expires_at - now)))
            await self.poller.write_setpoints(np.array([battery.power_w]), np.array([True]),
                                              expiry)
        wanted_off = {m.target for m in in_force if m.kind == "load" and m.on is False}
        actions = [SimpleNamespace(load_id=t, on=False) for t in sorted(wanted_off)]
        actions += [SimpleNamespace(load_id=t, on=True)
                    for t in sorted(self.mandates.switched_off - wanted_off)]
        if actions:
            mandate_s = max(1, int(min((m.expires_at for m in in_force if m.kind == "load"),
                                       default=now + 1) - now))
            errors = await self.poller.switch_loads(actions, mandate_s)
            self.mandates.switched_off = (wanted_off - set(errors)) | (
                {a.load_id for a in actions if a.on} & set(errors))
        was_safe, self.safe = self.safe, not in_force
        if self.safe and not was_safe:
            log.warning("agent: no mandate in force (coop silent or commands expired): "
                        "safe state")
            await self.poller.release_batteries()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``period_s`` until ``stop`` is set."""
        self.start()
        period = self.config.agent.period_s
        try:
            while not stop.is_set():
                started = self.clock()
                try:
                    await self.tick()
                except Exception:  # the agent must outlive one bad reading
                    log.exception("agent: tick failed")
                left = period - (self.clock() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(left, 0.0))
        finally:
            self.close()

    def close(self) -> None:
        """Disconnect and close the devices and the spool."""
        self.link.stop()
        self.poller.close()
        self.spool.close()
