"""Poll speed: the controller's poller against a bare pymodbus read loop, same devices.

Both poll every simulated SunSpec meter once per cycle (one 105-register
model read each, after discovery) against servers in a separate process.
The poller's cycle includes validation, health bookkeeping and the frozen
process image; the bare loop only reads. Reported: p50/p99 cycle time, the
ratio of medians, and the poller's CPU time per cycle (it runs on one core,
one asyncio loop).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from bench.timing import percentile
from controller.config import parse_config
from controller.polling import Poller

MODEL_203_ADDRESS = 40000 + 2 + 68  # after "SunS" and model 1 (ID, L, 66 registers)


def _config(ports: list[tuple[int, list[int]]]) -> str:
    lines = ["[controller]", "stale_after_s = 30", "request_timeout_s = 5"]
    for port, units in ports:
        for unit in units:
            lines += ["[[members]]", f'id = "m{port}-{unit}"', 'name = "bench"',
                      f'devices = [{{ kind = "meter", host = "127.0.0.1", port = {port}, '
                      f"unit = {unit} }}]"]
    return "\n".join(lines)


async def _poller_cycles(ports: list[tuple[int, list[int]]], cycles: int) -> dict[str, Any]:
    poller = Poller(parse_config(_config(ports)))
    await poller.poll()  # discovery
    wall, cpu = [], []
    for _ in range(cycles):
        w0, c0 = time.perf_counter(), time.process_time()
        await poller.poll()
        poller.freeze(time.time())
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    bad = sum(h["state"] != "ok" for h in poller.health())
    poller.close()
    return {"wall": wall, "cpu": cpu, "devices_not_ok": bad}


async def _bare_cycles(ports: list[tuple[int, list[int]]], cycles: int) -> list[float]:
    clients = []
    for port, units in ports:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
        await client.connect()
        clients.append((client, units))

    async def one_port(client: AsyncModbusTcpClient, units: list[int]) -> None:
        for unit in units:  # one request at a time per connection, like the poller
            await client.read_holding_registers(MODEL_203_ADDRESS, count=107, device_id=unit)

    wall = []
    for _ in range(cycles + 1):
        w0 = time.perf_counter()
        await asyncio.gather(*(one_port(c, u) for c, u in clients))
        wall.append(time.perf_counter() - w0)
    for client, _ in clients:
        client.close()
    return wall[1:]


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(percentile(samples, 99) * 1000, 2)}


def run_size(devices: int, cycles: int, per_port: int = 4) -> dict[str, Any]:
    """One size: servers in a subprocess, then poller and bare loop, interleaved."""
    server = subprocess.Popen([sys.executable, "-m", "bench.poll_server", str(devices),
                               str(per_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None
        ports = [(p, u) for p, u in json.loads(server.stdout.readline())["ports"]]
        poller_wall, poller_cpu, bare, not_ok = [], [], [], 0
        for _ in range(2):  # interleave so machine noise hits both alike
            result = asyncio.run(_poller_cycles(ports, cycles // 2))
            poller_wall += result["wall"]
            poller_cpu += result["cpu"]
            not_ok = max(not_ok, result["devices_not_ok"])
            bare += asyncio.run(_bare_cycles(ports, cycles // 2))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    poller = _stats(poller_wall)
    return {
        "devices": devices, "ports": len(ports), "cycles": len(poller_wall),
        "poller": {**poller, "cpu_p50_ms": round(statistics.median(poller_cpu) * 1000, 2)},
        "bare_pymodbus": _stats(bare),
        "ratio_p50_poller_to_bare": round(statistics.median(poller_wall) / statistics.median(bare),
                                          2),
        "fits_1hz_cycle": percentile(poller_wall, 99) < 1.0,
        "devices_not_ok": not_ok,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """The poll benchmark at 100 and 1000 devices."""
    cycles = 6 if quick else 30
    return {"note": "cycle time for one read of every device; 1 Hz target means p99 < 1000 ms",
            "sizes": [run_size(n, cycles) for n in (100, 1000)]}
