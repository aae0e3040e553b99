"""`read` and `scan` an installer can trust (issue 20, deliverable 2).

* `commonwatt read` on a live demo (its own config, a grid-forming battery whose
  ``grid`` is the word "on", three smart plugs over MQTT) prints every value in
  words and leaves the running controller's devices ok: its MQTT client has an id of
  its own, so it no longer takes over the controller's broker session.
* `commonwatt scan` suggests only devices that then read: the suggested lines,
  pasted into a config, all answer `read`.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.household import demo_households
from tests.demo_process import running_demo
from tests.serving import commonwatt, serving

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return commonwatt(*args, timeout=timeout)


def test_read_on_a_live_demo_leaves_the_controllers_devices_ok(tmp_path: Path) -> None:
    samples: list[dict] = []
    with running_demo(tmp_path / "demo", start="12:00") as demo:
        before = demo.wait_healthy()
        assert before["status"] == "ok", before
        config = str(tmp_path / "demo" / "coop.toml")

        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                samples.append(demo.healthz())
                time.sleep(0.5)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            as_json = cli("read", config, "--json")
            as_text = cli("read", config)
            time.sleep(12)  # on main the plugs went stale within 10 s and stayed so
        finally:
            stop.set()
            watcher.join()
        after = demo.healthz()
    out = demo.output
    assert as_json.returncode == 0, as_json.stdout[-2000:] + as_json.stderr[-2000:]
    report = json.loads(as_json.stdout)
    battery = next(e for e in report if e["device"] == "h01/battery")
    assert battery["values"]["grid"] == {"value": "on", "unit": "", "age_s":
                                         battery["values"]["grid"]["age_s"]}
    assert battery["values"]["overloaded"]["value"] is False
    assert as_text.returncode == 0 and "Traceback" not in as_text.stderr, as_text.stderr
    grid = next(line for line in as_text.stdout.splitlines() if line.strip().startswith("grid"))
    overloaded = next(line for line in as_text.stdout.splitlines()
                      if line.strip().startswith("overloaded"))
    assert grid.split()[1] == "on" and overloaded.split()[1] == "no", (grid, overloaded)
    plug = next(line for line in as_text.stdout.splitlines() if line.strip().startswith("on "))
    assert plug.split()[1] in ("yes", "no"), plug
    n = sum(before["devices"].values())  # every device of the demo's config (28 today)
    assert n >= 20 and f"{n} of {n} devices answered" in as_text.stdout, as_text.stdout[-500:]
    # The controller: every device ok in every sample, its reader never taken over.
    reader = before["mqtt_reader"]
    bad = [s for s in samples if s["devices"]["ok"] != n or s["status"] != "ok"]
    assert len(samples) >= 20 and not bad, bad[:3]
    assert after["mqtt_reader"]["client_id"] == reader["client_id"]
    assert after["mqtt_reader"]["state"] == "running" and after["mqtt_reader"]["restarts"] == 0
    assert after["mqtt_reader"]["since"] == reader["since"], (reader, after["mqtt_reader"])
    assert "Traceback" not in out


def test_scan_suggests_only_devices_that_then_read(tmp_path: Path) -> None:
    with serving(lambda: SimulatedCoop(demo_households(1),
                                       SimClock(start_s=12 * 3600, speed=0))) as coop:
        modbus = coop.households[0].server.port
        scanned = cli("scan", f"127.0.0.1:{modbus}", "--json")
        text = cli("scan", f"127.0.0.1:{modbus}")
        result = json.loads(scanned.stdout)
        suggested = result["suggested"]
        devices = ",\n  ".join(
            f'{{ kind = "{d["kind"]}", family = "{d["family"]}", host = "{d["host"]}", '
            f'port = {d["port"]}, unit = {d["unit"]} }}' for d in suggested)
        config = tmp_path / "coop.toml"
        config.write_text(f'[storage]\nledger = "{tmp_path / "l.sqlite"}"\n'
                          f'[[members]]\nid = "h01"\nname = "H01"\ndevices = [\n  {devices}\n]\n')
        read = cli("read", str(config), "--json")
    # The battery's unit has an inverter model (701) but no PV: named, not suggested.
    battery_unit = next(s for s in result["sunspec_units"] if "battery" in s["kinds"])
    assert "error" in battery_unit["kinds"].get("pv", {}), battery_unit["kinds"]
    assert {(d["kind"], d["unit"]) for d in suggested} == {("pv", 1), ("meter", 2),
                                                           ("battery", 3)}, suggested
    assert "does not read" in text.stdout and "not suggested" in text.stdout, text.stdout
    assert read.returncode == 0, read.stdout + read.stderr
    report = json.loads(read.stdout)
    assert len(report) == len(suggested) and all(e["ok"] for e in report), report
