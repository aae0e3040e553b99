"""``commonwatt init``: from the simulated coop's addresses to a commented config that
checks, one member per household, each device read once; what cannot be decided is a
commented choice."""

from __future__ import annotations

import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.household import demo_households
from tests.conftest import free_port
from tests.serving import commonwatt, serving


@pytest.fixture()
def coop() -> Iterator[SimulatedCoop]:
    with serving(lambda: SimulatedCoop(demo_households(3), SimClock(speed=0))) as sim:
        yield sim


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return commonwatt(*args, cwd=cwd)


def test_init_writes_a_config_that_checks_from_the_simulated_coop(
        coop: SimulatedCoop, tmp_path: Path) -> None:
    targets = [f"{h.server.host}:{h.server.port}" for h in coop.households]
    nobody = f"127.0.0.1:{free_port()}"
    out_path = tmp_path / "site" / "coop.toml"
    out = cli("init", *targets, nobody, "--out", str(out_path), "--name", "Rue Verte",
              cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 of 4 households as members" in out.stdout and "config check: OK" in out.stdout
    text = out_path.read_text()
    assert f"# {nobody}: nothing recognised" in text
    config = tomllib.loads(text)
    assert config["name"] == "Rue Verte" and config["storage"]["ledger"] == "ledger.sqlite"
    # what the simulator was built with: a meter each, PV and battery where it has them
    for member, h in zip(config["members"], coop.households, strict=True):
        kinds = {d["kind"]: d for d in member["devices"]}
        expected = {"meter"} | ({"pv"} if h.spec.pv_kwp > 0 else set()) | (
            {"battery"} if h.battery is not None else set())
        assert set(kinds) == expected, (member, h.spec)
        assert all(d["port"] == h.server.port for d in kinds.values())
    # the installer's next step works on it as written (--json: the text output's
    # booleans are another engineer's fix of `read`, issue 20 part 2)
    read = cli("read", str(out_path), "--json", cwd=tmp_path)
    assert read.returncode == 0, read.stdout + read.stderr
    again = cli("init", targets[0], "--out", str(out_path), cwd=tmp_path)
    assert again.returncode == 2 and "never overwritten" in again.stderr


def test_what_init_cannot_decide_is_a_commented_choice() -> None:
    from controller.config import parse_config
    from controller.init_config import config_text, households

    def dev(kind: str, family: str = "sunspec", unit: int = 1) -> dict:
        return {"kind": kind, "family": family, "host": "192.0.2.10", "port": 502, "unit": unit}

    scans = [{"target": "192.0.2.10:502", "suggested": [dev("meter", unit=2), dev("pv"),
                                                         dev("pv", "fronius-sunspec"),
                                                         dev("battery", unit=3)]},
             {"target": "192.0.2.11:502", "suggested": [dev("pv")]},
             {"target": "192.0.2.12:502", "suggested": [], "gave_up": "connection refused"}]
    homes = households(scans)
    text = config_text(homes, {("h01", "battery"): "timeout"})
    assert '# or: { kind = "pv", family = "fronius-sunspec"' in text
    assert '# did not read (timeout): { kind = "battery"' in text
    assert "# 192.0.2.11:502: no meter that reads, and every member needs one" in text
    assert "# 192.0.2.12:502: nothing recognised (connection refused)" in text
    config = parse_config(text)
    assert [m.id for m in config.members] == ["h01"]
    assert [d.kind for d in config.members[0].devices] == ["meter", "pv"]
