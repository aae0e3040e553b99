"""The soak's Modbus households, served from their own process.

``python -m bench.soak_modbus SPEC.json FIRST END`` serves households
``FIRST..END-1`` (Modbus ones) of the :class:`~bench.soak_fleet.FleetSpec`: one
port each, a SunSpec inverter (unit 1) and meter (unit 2) behind it, registers
refreshed five times a second from the spec's power curves (counters
integrated), and the spec's faults applied when they are due. Prints one JSON
line with the ports, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from bench.soak_fleet import FleetSpec
from simulators.coop import INVERTER_UNIT, METER_UNIT, free_port, inverter_image, meter_image
from simulators.household import HouseholdSpec
from simulators.modbus_server import Fault, SimulatedModbusServer

TICK_S = 0.2
FAULTS = {"timeout": Fault.TIMEOUT, "exception": Fault.EXCEPTION, "garbage": Fault.GARBAGE,
          "dropout": Fault.DISCONNECT}
UNITS = {"pv": INVERTER_UNIT, "meter": METER_UNIT}


async def serve(spec: FleetSpec, first: int, end: int) -> None:
    """Serve households ``first..end-1`` until stdin closes."""
    # The soak reports what the controller saw; pymodbus's own log lines (hex dumps of
    # garbage, "not connected") would only bury the JSON's progress lines.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ids = spec.member_ids
    servers = []
    households = range(first, end)
    for i in households:
        household = HouseholdSpec(ids[i], "soak", 5.0, 3000.0)
        images = {INVERTER_UNIT: inverter_image(household), METER_UNIT: meter_image(household)}
        server = SimulatedModbusServer(free_port(), images)
        await server.start()
        servers.append(server)
    n = len(servers)
    pv_wh, imp_wh, exp_wh = [1.0] * n, [1.0] * n, [1.0] * n
    last = time.time()

    def refresh() -> None:
        nonlocal last
        now = time.time()
        dt_h = (now - last) / 3600
        last = now
        pv, load = spec.power_w(now)
        for k, (i, server) in enumerate(zip(households, servers, strict=True)):
            meter_w = load[i] - pv[i]
            pv_wh[k] += pv[i] * dt_h
            imp_wh[k] += max(meter_w, 0.0) * dt_h
            exp_wh[k] += max(-meter_w, 0.0) * dt_h
            inverter, meter = server.images[INVERTER_UNIT], server.images[METER_UNIT]
            inverter.set(103, "W", pv[i])
            inverter.set(103, "WH", pv_wh[k])
            meter.set(203, "W", meter_w)
            meter.set(203, "TotWhImp", imp_wh[k])
            meter.set(203, "TotWhExp", exp_wh[k])
            for device, unit in UNITS.items():
                kind = spec.active(i, device, now)
                server.faults[unit] = Fault.NONE if kind is None else FAULTS[kind]

    refresh()
    print(json.dumps({"ports": [s.port for s in servers]}), flush=True)
    done = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    while not done.done():
        refresh()
        await asyncio.wait([done], timeout=TICK_S)
    for server in servers:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(serve(FleetSpec.load(Path(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])))
