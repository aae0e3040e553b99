"""``commonwatt run CONFIG`` as a real subprocess against simulated devices (SunSpec over
Modbus, a Shelly plug on a real mosquitto): SIGHUP with a broken config keeps it running
on the old one and says why; SIGTERM hands every battery back to its own logic and switches
on every load Commonwatt switched off, before exit."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from controller.governance import TokenStore
from controller.governance.audit import AuditLog
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


class DeviceThread:
    """The simulated coop (Modbus servers, MQTT plugs) on its own event loop in a thread."""

    def __init__(self, mqtt_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        specs = demo_households(2)
        specs[0] = dataclasses.replace(specs[0], plug_w=800.0)  # h01: battery and a plug
        self.coop = SimulatedCoop(specs, SimClock(start_s=1_780_000_000 // 86400 * 86400
                                                  + 12 * 3600, speed=1.0),
                                  mqtt=("127.0.0.1", mqtt_port))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> None:
            await self.coop.start()
            self.coop.run_in_background(0.05)

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(20)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.coop.stop(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Controller:
    """``python -m controller.cli run CONFIG``, its output collected line by line."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", str(config)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.lines}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the output: {self.lines}")


def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture()
def devices(mosquitto: int) -> Iterator[DeviceThread]:
    d = DeviceThread(mosquitto)
    try:
        yield d
    finally:
        d.stop()


def test_sighup_keeps_a_broken_config_out_and_sigterm_leaves_devices_safe(
        tmp_path: Path, devices: DeviceThread, mosquitto: int, reliability) -> None:
    row = reliability("config-reload-error", "SIGHUP with a config that does not parse: the"
                      " controller keeps running on the old config, logs why (naming the file)"
                      " and writes a config.reload 'refused' audit row; a good config on the"
                      " next SIGHUP is taken")
    coop = devices.coop
    ledger = tmp_path / "ledger.sqlite"
    config = tmp_path / "coop.toml"
    port = free_port()
    good = coop_toml(coop, ledger, api_port=port, mqtt=("127.0.0.1", mosquitto), cycle_s=0.5)
    config.write_text(good)
    _, secret = TokenStore.beside(ledger).create("coordinator", None, "Ada", time.time() + 600)
    controller = Controller(config)
    try:
        controller.wait_for("Commonwatt running")
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                           headers={"Authorization": f"Bearer {secret}"})
        for body in ({"kind": "battery_setpoint", "member": "h01", "power_w": -1000,
                      "minutes": 10},
                     {"kind": "load_switch", "member": "h01", "load": "load1", "on": False,
                      "minutes": 10}):
            made = api.post("/api/v1/overrides", json=body)
            assert made.status_code == 201, made.text
        plug = coop.plugs[0]
        _until(lambda: coop.physics.setpoint_w[0] == pytest.approx(-1000.0, abs=5.0), 15,
               "the battery override reached the battery")
        _until(lambda: plug.values.get("on") is False, 15, "the plug was switched off")
        # SIGHUP with a broken config: refused, named, and the controller goes on
        config.write_text(good.replace("[controller]", "[controller\n"))
        controller.proc.send_signal(signal.SIGHUP)
        refused = controller.wait_for("config reload refused")
        assert "coop.toml" in refused
        cycles = api.get("/healthz").json()
        time.sleep(1.0)
        assert controller.proc.poll() is None
        assert api.get("/healthz").json()["checked_at"] > cycles["checked_at"]
        assert api.get("/healthz").status_code == 200
        said = refused.split(": ", 1)[-1].replace(f"{tmp_path}/", "")
        row.observed = (f"log: {said[:160]!r}; still cycling 1 s later "
                        "(healthz 200)")
        # a good one is taken; the overrides carry over
        config.write_text(good.replace("stale_after_s = 5.0", "stale_after_s = 6.0"))
        controller.proc.send_signal(signal.SIGHUP)
        controller.wait_for("config reloaded")
        assert len([o for o in api.get("/api/v1/overrides").json()
                    if o["ended_ts"] is None]) == 2
        _until(lambda: plug.values.get("on") is False, 5, "the plug stays off after reload")
        # SIGTERM: the battery back to its own logic, the plug on, then exit
        controller.proc.send_signal(signal.SIGTERM)
        assert controller.proc.wait(20) == 0, controller.lines
    finally:
        if controller.proc.poll() is None:
            controller.proc.kill()
            controller.proc.wait(10)
    storage = coop.households[0].battery
    assert storage.get_raw(124, "StorCtl_Mod") == 0, "model 124 released (no forced mode)"
    _until(lambda: coop.physics.setpoint_w[0] == 0.0, 5, "the battery idles")
    _until(lambda: plug.values.get("on") is True, 5, "the plug is back on")
    rows = [(r["action"], r["outcome"]) for r in AuditLog.beside(ledger).rows()]
    assert ("config.reload", "refused") in rows and ("config.reload", "loaded") in rows
    row.observed += ("; audit rows config.reload refused, then loaded for the fixed file; "
                     "overrides carried over")


def test_a_second_controller_on_the_same_ledger_is_refused(
        tmp_path: Path, devices: DeviceThread, mosquitto: int, reliability) -> None:
    row = reliability("second-controller", "A second `commonwatt run` on the same config (same"
                      " ledger) exits with status 1 naming the process that holds the ledger;"
                      " the first keeps running")
    ledger = tmp_path / "ledger.sqlite"
    config = tmp_path / "coop.toml"
    port = free_port()
    config.write_text(coop_toml(devices.coop, ledger, api_port=port, cycle_s=0.5))
    first = Controller(config)
    try:
        first.wait_for("Commonwatt running")
        second = Controller(config)
        code = second.proc.wait(30)
        time.sleep(0.2)  # the collector thread reads the last lines
        said = " ".join(second.lines)
        assert code == 1, second.lines
        assert f"process {first.proc.pid}" in said, said
        assert first.proc.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(20) == 0
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait(10)
    said = said.replace(f"{tmp_path}/", "")
    row.observed = (f"second exited {code}: {said[-200:]!r}; the first still served healthz "
                    "200 and stopped cleanly")
