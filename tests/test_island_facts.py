"""The island plan's inputs: what ``[[island.batteries]]`` leaves out comes from the
batteries, every problem is named once (never two messages contradicting each other),
and a PV member without an array is an error, from ``config check`` as from the plan."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import ConfigError
from controller.island.device_facts import BatteryFacts, members_to_read
from controller.island.site import load_island_config, resolve
from tests.test_island_plan import write_config

FACTS = BatteryFacts(capacity_wh=7700.0, soc_pct=61.0, max_charge_w=2500.0,
                     max_discharge_w=3300.0)


def problems(path: Path, facts: dict | None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        resolve(*load_island_config(path), str(path), facts)
    return str(err.value).splitlines()


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "check", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_a_battery_without_an_entry_is_planned_from_what_it_reports(tmp_path: Path) -> None:
    entry = '[[island.batteries]]\nmember = "h01"\ncapacity_kwh = 10\nsoc_pct = 40\n'
    path = write_config(tmp_path, (entry, ""))
    config, site, island = load_island_config(path)
    assert members_to_read(config, island) == ["h01"]
    coop = resolve(config, site, island, str(path), {"h01": FACTS})
    assert coop.fleet.capacity_wh.tolist() == [7700.0]
    assert coop.stored_wh.tolist() == pytest.approx([7700.0 * 0.61])
    # the device's max_power_w (3000 W) is the installer's limit: it wins over the rating
    assert coop.fleet.max_charge_w.tolist() == [3000.0]
    # the file wins where it speaks: its SoC, its capacity
    coop = resolve(*load_island_config(write_config(tmp_path)), "x", {"h01": FACTS})
    assert coop.fleet.capacity_wh.tolist() == [10_000.0]
    assert coop.stored_wh.tolist() == [4000.0]
    # an entry without soc_pct takes the battery's own
    path = write_config(tmp_path, ("soc_pct = 40\n", ""))
    assert members_to_read(*load_island_config(path)[::2]) == ["h01"]
    coop = resolve(*load_island_config(path), "x", {"h01": FACTS})
    assert coop.stored_wh.tolist() == pytest.approx([6100.0])


def test_an_unreadable_battery_is_one_message_naming_the_reason(tmp_path: Path) -> None:
    entry = '[[island.batteries]]\nmember = "h01"\ncapacity_kwh = 10\nsoc_pct = 40\n'
    path = write_config(tmp_path, (entry, ""))
    lines = problems(path, {"h01": "refused (connection refused)"})
    assert len(lines) == 1, lines
    assert "member 'h01' has a battery device whose capacity could not be read" in lines[0]
    assert "refused (connection refused)" in lines[0]
    # no limit anywhere: one message, and not also "has a battery but no entry"
    path = write_config(tmp_path, (", max_power_w = 3000", ""))
    lines = problems(path, {})
    assert len(lines) == 1 and "island.batteries[0].max_charge_w: required" in lines[0], lines


def test_a_pv_member_without_an_array_is_an_error_in_config_check_too(tmp_path: Path) -> None:
    path = write_config(tmp_path, (
        '{ kind = "meter", host = "127.0.0.1", port = 5021, unit = 2 }',
        '{ kind = "meter", host = "127.0.0.1", port = 5021, unit = 2 },'
        ' { kind = "pv", host = "127.0.0.1", port = 5021, unit = 1 }'))
    text = path.read_text().replace('[[site.arrays]]\nmember = "h02"\nkwp = 2.0\nazimuth = 135\n',
                                    "")
    path.write_text(text)
    code, out, err = check(path)
    assert code == 2 and out == ""
    assert "member 'h02' (members[1]) has a PV inverter but no [[site.arrays]] entry" in err
    assert err.count("\n") == 1  # only that
    # the plan says the same
    assert any("h02" in line and "PV inverter" in line for line in problems(path, {}))


def test_config_check_runs_the_island_checks_without_asking_devices(tmp_path: Path) -> None:
    assert check(write_config(tmp_path))[0] == 0
    code, _, err = check(write_config(tmp_path, ("critical_share = 0.3",
                                                 "critical_share = 0.8")))
    assert code == 2 and "island.members[0]: critical_share + essential_share" in err
    # [island] without [site]: said plainly
    path = tmp_path / "coop.toml"
    path.write_text(path.read_text().replace("[site]\nlatitude = 45.76\nlongitude = 4.84\n"
                                             'tz = "+01:00"\n', "").split("[[site.arrays]]")[0]
                    + "[island]\nannual_kwh = 3000\n")
    code, _, err = check(path)
    assert code == 2 and "site: required with [island]" in err


def test_the_documented_example_is_a_valid_config(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs/island-setup.md").read_text()
    example = doc.split("```toml\n")[1].split("```")[0]
    members = "".join(
        f'[[members]]\nid = "{m}"\nname = "{m}"\ndevices = [\n'
        f'  {{ kind = "meter", host = "127.0.0.1", port = 5020, unit = {i + 1} }},\n'
        f'  {{ kind = "pv", host = "127.0.0.1", port = 5021, unit = {i + 1} }},\n]\n'
        for i, m in enumerate(("h01", "h02")))
    path = tmp_path / "coop.toml"
    path.write_text(f'[storage]\nledger = "ledger.sqlite"\n{members}{example}')
    code, out, err = check(path)
    assert code == 0, err
