"""The household agent runs without scipy, matplotlib, pandas or pvlib (the ``agent``
extra installs none of them): the real ``commonwatt agent`` process, with those imports
made to fail, reads a simulated meter over Modbus and publishes to a real mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.coop import battery_image, meter_image
from simulators.modbus_server import SimulatedModbusServer
from tests.conftest import free_port
from tests.test_agent_outage import SPEC, agent_toml

ROOT = Path(__file__).resolve().parents[1]
#: What a Raspberry Pi should not have to install for its agent.
HEAVY = ("scipy", "matplotlib", "pandas", "pvlib", "demandlib", "numba", "fastapi",
         "uvicorn", "influxdb_client", "amqtt", "sse_starlette", "rich")
BLOCKER = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError("blocked for the agent: " + name)
sys.meta_path.insert(0, Blocker())
from controller.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_agent_runs_without_the_coops_heavy_dependencies(tmp_path: Path,
                                                              mosquitto: int) -> None:
    meter, battery = meter_image(SPEC), battery_image(SPEC)
    meter.set(203, "W", 420)
    meter.set(203, "TotWhImp", 1000)
    meter.set(203, "TotWhExp", 10)
    battery.set(802, "SoC", 55)
    battery.set(124, "ChaState", 55)
    ready, stop = threading.Event(), threading.Event()
    holder: dict = {}

    def serve() -> None:
        async def main() -> None:
            server = SimulatedModbusServer(free_port(), {1: meter, 2: battery})
            await server.start()
            holder["port"] = server.port
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    got: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-extra-{os.getpid()}")
    client.on_message = lambda _c, _u, msg: got.append(msg.topic)
    client.connect("127.0.0.1", mosquitto)
    client.subscribe("coop/coop-a/agents/m1/#")
    client.loop_start()
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(mosquitto, holder["port"], tmp_path / "spool.db"))
    proc = subprocess.Popen([sys.executable, "-c", BLOCKER, "agent", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        client.loop_stop()
        client.disconnect()
        stop.set()
        thread.join(30)
    assert got, out  # it read the meter and published
    assert "blocked for the agent" not in out and proc.returncode == 0, out


def test_the_agent_extra_leaves_them_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower().replace("_", "-")
             for d in project["dependencies"] + project["optional-dependencies"]["agent"]}
    heavy = {h.replace("_", "-") for h in HEAVY} | {"influxdb-client", "sse-starlette"}
    assert not names & heavy, names & heavy
