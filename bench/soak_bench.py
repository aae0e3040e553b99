"""Soak: one controller against 1,000 simulated devices at 1 Hz, with faults at random.

Half the devices' households speak Modbus (a SunSpec inverter and meter on one
port each, served by :mod:`bench.soak_modbus` in two processes of their own), the rest MQTT
(an OpenDTU inverter and a Shelly Pro 3EM meter, published by
:mod:`bench.soak_mqtt` in its own process through a real mosquitto on
127.0.0.1). Faults (:mod:`bench.soak_fleet`): Modbus timeouts, exceptions,
garbage registers and dropped connections; MQTT stale topics, garbage payloads
and devices that fall silent. The controller (:class:`controller.cycle.Controller`)
cycles once a second like :meth:`controller.runtime.Runtime.run`, books into a
fresh ledger (1-min settlement) and is closed; the ledger is then checked
(:mod:`bench.soak_ledger`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.progress import Progress
from bench.soak_fleet import FAULT_RATE_PER_MIN, FleetSpec, random_faults
from bench.soak_ledger import booked_vs_produced, conservation
from bench.soak_mqtt import topics
from bench.timing import percentile
from controller.config import CoopConfig, parse_config
from controller.cycle import Controller
from controller.ledger import LedgerReader
from simulators.coop import INVERTER_UNIT, METER_UNIT, free_port

MODBUS_SHARE = 0.6
CYCLE_S = 1.0
#: Wall seconds after which the controller's memory counts as warmed up.
WARM_S = 60.0
#: RSS growth after the warm-up that still counts as bounded, MB.
GROWTH_TARGET_MB = 20.0
#: Cycles left out of the cycle-time figures (reported apart as the start-up).
STARTUP_CYCLES = 5


def config_text(spec: FleetSpec, ports: list[int], broker: int, ledger: Path) -> str:
    """The controller's config: every household a member with a PV inverter and a meter."""
    lines = ["[controller]", f"cycle_s = {CYCLE_S}", "stale_after_s = 5",
             # A silent device costs its port this much of the cycle, once, before back-off.
             "request_timeout_s = 0.4",
             "[ledger]", "settlement_s = 60", "[storage]", f'ledger = "{ledger}"',
             "[mqtt]", f"port = {broker}"]
    for i, member in enumerate(spec.member_ids):
        lines += ["[[members]]", f'id = "{member}"', f'name = "Soak {i}"']
        if i < spec.modbus:
            port = ports[i]
            lines.append(f'devices = [{{ kind = "pv", host = "127.0.0.1", port = {port}, '
                         f'unit = {INVERTER_UNIT} }}, {{ kind = "meter", host = "127.0.0.1", '
                         f"port = {port}, unit = {METER_UNIT} }}]")
        else:
            base = topics(member)
            lines.append(f'devices = [{{ kind = "pv", protocol = "mqtt", family = "opendtu", '
                         f'topic = "{base["pv"]}", fresh_s = 5 }}, {{ kind = "meter", '
                         f'protocol = "mqtt", family = "shelly-pro3em", topic = "{base["meter"]}"'
                         ", fresh_s = 5 }]")
    return "\n".join(lines)


@contextlib.contextmanager
def _process(args: list[str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server process: its first stdout line, and stdin closed at the end to stop it."""
    proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(args)} exited before it was ready")
        yield proc, line
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def mosquitto(tmp: Path) -> Iterator[int]:
    """A real mosquitto on a free 127.0.0.1 port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with contextlib.closing(__import__("socket").create_connection(
                        ("127.0.0.1", port), timeout=1)):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _soak(config: CoopConfig, seconds: float) -> dict[str, Any]:
    """A controller (built on the loop its Modbus clients need), cycled, then closed."""
    # What the soak measures is what the controller did with a fault; pymodbus's own
    # lines about it ("Cancel send, because not connected!") would bury the progress.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    controller = Controller(config, time.time)
    try:
        return await _cycles(controller, seconds)
    finally:
        controller.close()


async def _cycles(controller: Controller, seconds: float) -> dict[str, Any]:
    """Cycle at 1 Hz for ``seconds`` (skipping ahead after an overrun, like the runtime)."""
    me = psutil.Process()
    durations: list[float] = []
    rss: list[tuple[float, float]] = []
    not_ok: list[int] = []
    t0 = time.monotonic()
    next_tick = t0
    with Progress(round(seconds / CYCLE_S), "soak cycles") as progress:
        while time.monotonic() - t0 < seconds:
            report = await controller.cycle()
            durations.append(report.duration_s)
            not_ok.append(sum(h["state"] != "ok" for h in controller.poller.health()))
            rss.append((time.monotonic() - t0, me.memory_info().rss / 2**20))
            progress.advance(1)
            next_tick += CYCLE_S
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)
    elapsed = time.monotonic() - t0
    return {"durations": durations, "rss": rss,
            "elapsed": elapsed, "not_ok": not_ok}


def run(minutes: float = 10.0, devices: int = 1000, seed: int = 0,
        fault_rate_per_min: float = FAULT_RATE_PER_MIN) -> dict[str, Any]:
    """The soak; a JSON-ready report with its targets.

    ``fault_rate_per_min``: fault starts per device and minute (a short run raises it
    to see every kind of fault).
    """
    households = devices // 2
    seconds = minutes * 60
    load = {"start": os.getloadavg()[0]}
    tmp = Path(tempfile.mkdtemp(prefix="commonwatt-soak-"))
    try:
        spec = FleetSpec(households, round(households * MODBUS_SHARE), time.time(), seed)
        spec.faults = random_faults(households, spec.modbus, seconds, seed, fault_rate_per_min)
        spec_path = tmp / "fleet.json"
        spec.save(spec_path)
        Progress.say(f"soak: {devices} devices ({2 * spec.modbus} Modbus, "
                     f"{2 * (households - spec.modbus)} MQTT), {len(spec.faults)} faults")
        started = time.monotonic()
        half = spec.modbus // 2
        with (mosquitto(tmp) as broker,
              _process(["-m", "bench.soak_modbus", str(spec_path), "0", str(half)]) as (_, a),
              _process(["-m", "bench.soak_modbus", str(spec_path), str(half),
                        str(spec.modbus)]) as (_, b),
              _process(["-m", "bench.soak_mqtt", str(spec_path), str(broker)])):
            ports = json.loads(a)["ports"] + json.loads(b)["ports"]
            config = parse_config(config_text(spec, ports, broker, tmp / "ledger.sqlite"))
            Progress.say(f"soak: servers up in {time.monotonic() - started:.1f} s")
            run_ = asyncio.run(_soak(config, seconds))
        load["end"] = os.getloadavg()[0]
        reader = LedgerReader(tmp / "ledger.sqlite")
        report = _report(run_, spec, devices)
        report["ledger"] = conservation(reader)
        report["energy"] = booked_vs_produced(reader, spec)
        report["load_average_1min"] = load | {"cpus": os.cpu_count()}
        report["targets"] = _targets(report)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _report(run_: dict[str, Any], spec: FleetSpec, devices: int) -> dict[str, Any]:
    # The first cycles discover every device and wait for the MQTT subscriptions.
    durations = run_["durations"][STARTUP_CYCLES:]
    rss = run_["rss"]
    warm = next((mb for t, mb in rss if t >= WARM_S), rss[len(rss) // 10][1])
    expected = round(run_["elapsed"] / CYCLE_S)
    kinds: dict[str, int] = {}
    for f in spec.faults:
        kinds[f"{'modbus' if f.household < spec.modbus else 'mqtt'}_{f.kind}"] = kinds.get(
            f"{'modbus' if f.household < spec.modbus else 'mqtt'}_{f.kind}", 0) + 1
    return {
        "devices": devices, "households": spec.households,
        "modbus_devices": 2 * spec.modbus, "mqtt_devices": 2 * (spec.households - spec.modbus),
        "seconds": round(run_["elapsed"], 1), "cycles": len(run_["durations"]),
        "faults_injected": kinds, "households_faulted": int(spec.faulted().sum()),
        "devices_not_ok_median": statistics.median(run_["not_ok"]),
        "devices_not_ok_max": max(run_["not_ok"]),
        "cycle": {"startup_cycles": STARTUP_CYCLES,
                  "startup_max_ms": round(max(run_["durations"][:STARTUP_CYCLES]) * 1e3, 1),
                  "p50_ms": round(statistics.median(durations) * 1e3, 1),
                  "p99_ms": round(percentile(durations, 99) * 1e3, 1),
                  "max_ms": round(max(durations) * 1e3, 1),
                  "over_1s": sum(d > CYCLE_S for d in durations)},
        "cycles_missed": max(0, expected - len(run_["durations"])),
        "memory": {"rss_start_mb": round(rss[0][1], 1), "rss_warm_mb": round(warm, 1),
                   "rss_end_mb": round(rss[-1][1], 1),
                   "growth_after_warmup_mb": round(rss[-1][1] - warm, 1),
                   "warm_after_s": WARM_S},
    }


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    clean = report["energy"].get("clean", {})
    ratio = clean.get("pv_booked_over_produced")
    return [
        {"name": "conservation_error_wh", "target": 0,
         "measured": report["ledger"]["error_wh"], "met": report["ledger"]["error_wh"] == 0},
        {"name": "cycle_p99_ms", "target": 1000, "measured": report["cycle"]["p99_ms"],
         "met": report["cycle"]["p99_ms"] < 1000},
        {"name": "rss_growth_after_warmup_mb", "target": GROWTH_TARGET_MB,
         "measured": report["memory"]["growth_after_warmup_mb"],
         "met": report["memory"]["growth_after_warmup_mb"] < GROWTH_TARGET_MB},
        {"name": "clean_pv_booked_over_produced", "target": "0.98-1.02", "measured": ratio,
         "met": ratio is not None and 0.98 <= ratio <= 1.02},
    ]
