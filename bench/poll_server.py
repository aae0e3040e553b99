"""A separate process serving N SunSpec meters for the poll benchmark.

``python -m bench.poll_server N UNITS_PER_PORT`` prints one JSON line with
the ports, then serves until stdin closes. Running the servers in their own
process keeps their CPU off the poller's core.
"""

from __future__ import annotations

import asyncio
import json
import sys

from simulators.coop import free_port, meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer


async def serve(devices: int, per_port: int) -> None:
    servers = []
    for first in range(0, devices, per_port):
        units = range(1, min(per_port, devices - first) + 1)
        images = {}
        for unit in units:
            spec = HouseholdSpec(f"m{first + unit}", "bench", 0.0, 3000.0)
            image = meter_image(spec)
            image.set(203, "W", 100.0 + unit)
            images[unit] = image
        server = SimulatedModbusServer(free_port(), images)
        await server.start()
        servers.append((server.port, list(units)))
    print(json.dumps({"ports": servers}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _ in servers:
        pass


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))
