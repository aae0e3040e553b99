"""``commonwatt demo``: a whole simulated coop, controlled and served, with no setup.

Starts ten simulated households (SunSpec over Modbus TCP on 127.0.0.1), an
embedded MQTT broker (amqtt) unless one is given, the controller with its
SQLite ledger, and the API on http://127.0.0.1:8000.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import load_config
from controller.ledger import LedgerMissingError, LedgerReader
from controller.ledger.lock import WriterLock
from controller.runtime import Runtime
from devices.mqtt.access import ANONYMOUS, MqttAccess
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop, free_port
from simulators.demo_config import coop_toml
from simulators.household import demo_households


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``commonwatt demo`` was asked for."""

    speed: float = 1.0
    api_port: int = 8000
    households: int = 10
    start_hour: float = 9.0
    mqtt: tuple[str, int] | None = None
    data_dir: Path = Path("var/demo")
    fresh: bool = False
    #: An InfluxDB v2 write API (InfluxDB 2, 1.8+, VictoriaMetrics) for the time series.
    timeseries: str | None = None


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class EmbeddedBroker:
    """The demo's amqtt broker and the login every client of it needs."""

    broker: Any
    host: str
    port: int
    access: MqttAccess

    async def shutdown(self) -> None:
        """Stop the broker."""
        await self.broker.shutdown()


async def start_embedded_broker(port: int, state_dir: Path) -> EmbeddedBroker:
    """An amqtt broker bound to 127.0.0.1 only, that admits one user with a password
    generated now (its hash in ``state_dir/mqtt-passwd``): no other local process can
    publish readings on the simulated devices' topics."""
    from amqtt.broker import Broker
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    access = MqttAccess(username="commonwatt", password=secrets.token_urlsafe(24))
    state_dir.mkdir(parents=True, exist_ok=True)
    passwd = state_dir / "mqtt-passwd"
    passwd.touch(mode=0o600)
    passwd.write_text(f"{access.username}:{PasswordHash((Argon2Hasher(),)).hash(access.password)}\n",
                      encoding="utf-8")
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.FileAuthPlugin": {
            "password_file": str(passwd)}},
    })
    await broker.start()
    return EmbeddedBroker(broker, "127.0.0.1", port, access)


def booked_until(ledger: Path) -> float | None:
    """Simulated time up to which an existing demo ledger has booked, if any."""
    if not ledger.exists():
        return None
    try:
        return LedgerReader(ledger).booked_until()
    except LedgerMissingError:
        return None


def sim_day_start(start_hour: float) -> float:
    """Epoch seconds of today (UTC) at ``start_hour``: the simulated coop keeps UTC."""
    midnight = time.time() // 86400 * 86400
    return midnight + start_hour * 3600.0


async def play_breaker(runtime: Runtime, coop: SimulatedCoop, stop: asyncio.Event,
                       interval_s: float = 0.1) -> None:
    """The demo's grid-former and its coupling breaker, on the controller's command.

    A real grid-forming inverter opens the coop's coupling when the coordinator's island
    begins and closes it, resynchronised, when it ends; the controller then sees the
    grid go (SunSpec 701 ``ConnSt``) and come back. Here the simulated breaker follows the
    controller's grid state as :mod:`controller.island_day.rehearse` plays it: opened at
    ``GOING_OFF_GRID``, closed at ``RETURNING``. So ``POST /api/v1/island/command``
    islands the demo for real, and ``/island`` shows it.
    """
    from controller.island.grid_model import GridState

    while not stop.is_set():
        state = runtime.controller.grid.machine.state
        if state is GridState.GOING_OFF_GRID and coop.grid_connected:
            coop.grid_connected = False
            coop.step()  # the registers say so before the next cycle reads them
        elif state is GridState.RETURNING and not coop.grid_connected:
            coop.grid_connected = True
            coop.step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def run_demo(options: DemoOptions, stop: asyncio.Event | None = None,
                   ready: asyncio.Event | None = None) -> None:
    """Run the demo until ``stop`` is set (or Ctrl-C / SIGTERM when ``stop`` is None)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    data_dir = options.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    ledger = data_dir / "ledger.sqlite"
    # Fail fast, before deleting anything or starting devices, if a demo already runs here.
    WriterLock(ledger).release()
    if options.fresh:
        for old in data_dir.glob("ledger.sqlite*"):
            if not old.name.endswith(".lock"):
                old.unlink()
    # A restart continues the ledger's chain on the simulated clock where it stopped.
    resume = booked_until(ledger)
    start_s = sim_day_start(options.start_hour) if resume is None else resume
    clock = SimClock(start_s=start_s, speed=options.speed)
    broker = None
    mqtt, access = options.mqtt, ANONYMOUS
    if mqtt is None:
        port = 1883 if _port_free(1883) else free_port()
        broker = await start_embedded_broker(port, data_dir)
        mqtt, access = (broker.host, broker.port), broker.access
    # Every third house has a flexible appliance behind a smart plug on the broker.
    coop = SimulatedCoop(demo_households(options.households, plugs=True), clock, mqtt=mqtt,
                         mqtt_access=access)
    await coop.start()
    coop.run_in_background()
    config_path = data_dir / "coop.toml"
    # The config holds the broker's password: only its owner may read it.
    config_path.touch(mode=0o600)
    config_path.chmod(0o600)
    # The ledger relative to the config: the file works from any directory, and moved.
    text = coop_toml(coop, Path(ledger.name), options.api_port, mqtt, mqtt_access=access,
                     site=True)
    if options.timeseries is not None:
        text += f'\n[timeseries]\nurl = "{options.timeseries}"\n'
    config_path.write_text(text, encoding="utf-8")
    config = load_config(config_path)
    task: asyncio.Task[None] | None = None
    try:
        runtime = Runtime(config, clock.now,
                          nominal_dt_s=config.controller.cycle_s * options.speed)
        task = asyncio.create_task(runtime.run(stop))
        breaker = asyncio.create_task(play_breaker(runtime, coop, stop))
        await runtime.wait_until_serving()
        print(f"Commonwatt demo: {options.households} simulated households, "
              f"{options.speed:g}x speed", flush=True)
        print(f"  API and live page: http://127.0.0.1:{options.api_port}/", flush=True)
        print(f"  OpenAPI docs:      http://127.0.0.1:{options.api_port}/docs", flush=True)
        print(f"  MQTT:              {mqtt[0]}:{mqtt[1]} (topic commonwatt/#)", flush=True)
        if options.timeseries is not None:
            print(f"  time series:       {options.timeseries} (state in /healthz)", flush=True)
        print(f"  config: {config_path}   ledger: {ledger}"
              f"{' (continued)' if resume is not None else ''}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        if ready is not None:
            ready.set()
        await task
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await task
            with contextlib.suppress(Exception):
                await breaker
        await coop.stop()
        if broker is not None:
            await broker.shutdown()
        print("Commonwatt demo stopped.", flush=True)
