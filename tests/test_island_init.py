"""``commonwatt island init``: the ``[site]``/``[island]`` tables written from what the
simulated coop's inverters and batteries report, checked against what the simulator was
built with; an inverter that does not answer is a commented choice that ``config check``
names until it is filled in."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import HouseholdSpec, demo_households
from tests.serving import commonwatt, serving


@pytest.fixture()
def coop() -> Iterator[SimulatedCoop]:
    with serving(lambda: SimulatedCoop(demo_households(10), SimClock(speed=0))) as sim:
        yield sim


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return commonwatt(*args, cwd=cwd)


def test_island_init_writes_what_the_devices_report(coop: SimulatedCoop, tmp_path: Path) -> None:
    specs: dict[str, HouseholdSpec] = {h.spec.member_id: h.spec for h in coop.households}
    text = coop_toml(coop, Path("ledger.sqlite")).split("\n[site]")[0] + "\n"
    # h01's inverter at a unit id nobody answers on: its rating cannot be read
    first_pv = '  kind = "pv"\n  family = "sunspec"\n'
    head, tail = text.split(first_pv, 1)
    text = head + first_pv + tail.replace("  unit = 1\n", "  unit = 9\n", 1)
    config = tmp_path / "coop.toml"
    config.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = cli("island", "init", str(config), "--latitude", "36.1", "--longitude", "0",
              "--tz", "UTC", cwd=elsewhere)
    # written, and config check names the one array left to fill in
    assert out.returncode == 1, out.stderr
    assert "appended [site] (8 of 9 PV arrays from their inverters)" in out.stdout
    assert "member 'h01' (members[0]) has a PV inverter but no [[site.arrays]]" in out.stderr
    written = config.read_text()
    assert "# h01: its inverter's rating could not be read" in written
    tables = tomllib.loads(written)
    arrays = {a["member"]: a["kwp"] for a in tables["site"]["arrays"]}
    # what the simulator was built with: each inverter's WRtg is its kWp
    assert arrays == {m: s.pv_kwp for m, s in specs.items() if s.pv_kwp > 0 and m != "h01"}
    capacities = {b["member"]: b["capacity_kwh"] for b in tables["island"]["batteries"]}
    assert capacities == {m: s.battery_wh / 1000 for m, s in specs.items() if s.battery_wh}
    assert "soc_pct" not in written.split("[island]")[1].replace("# ", "")
    # a second run leaves the file alone
    again = cli("island", "init", str(config), "--latitude", "36.1", "--longitude", "0",
                "--tz", "UTC", cwd=elsewhere)
    assert again.returncode == 2 and "has [site] or [island] already" in again.stderr
    # filled in, the file checks and the plan runs, SoC read from the batteries
    config.write_text(written.replace("# [[site.arrays]]\n# member = \"h01\"\n# kwp = ?",
                                      f"[[site.arrays]]\nmember = \"h01\"\n"
                                      f"kwp = {specs['h01'].pv_kwp}"))
    assert cli("config", "check", str(config), cwd=elsewhere).returncode == 0
    plan = cli("island", "plan", str(config), "--start", "2026-06-21T06:00", cwd=elsewhere)
    assert plan.returncode == 0, plan.stderr
    assert "Batteries: 6" in plan.stdout
