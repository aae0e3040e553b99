"""`commonwatt read`: every device read once; failures named with their reason."""

from __future__ import annotations

from pathlib import Path

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml
from simulators.household import demo_households
from tests.conftest import free_port
from tests.serving import commonwatt, serving


def test_read_reports_values_and_names_failures(tmp_path: Path) -> None:
    with serving(lambda: SimulatedCoop(demo_households(2), SimClock(speed=0))) as coop:
        text = coop_toml(coop, tmp_path / "l.sqlite")
        host_port = f'port = {coop.households[1].server.port}\n  unit = 2'
        text = text.replace(host_port, f"port = {free_port()}\n  unit = 2")  # nobody there
        text = text.replace("  unit = 3", "  unit = 9", 1)  # wrong unit id for h01's battery
        config = tmp_path / "coop.toml"
        config.write_text(text)
        out = commonwatt("read", str(config), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "h01/pv" in out.stdout and "power_w" in out.stdout and " W " in out.stdout
    assert "h02/meter" in out.stdout and "refused" in out.stdout
    battery_block = out.stdout.split("h01/battery")[1].split("\n")[1]
    assert "exception 11 (wrong unit id" in battery_block, battery_block
    assert "devices answered" in out.stdout
