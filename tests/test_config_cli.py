"""Config validation names the bad key; the CLI exposes its subcommands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import ConfigError, parse_config

GOOD = """
name = "Test coop"
[[members]]
id = "h01"
name = "Ada"
devices = [
  { kind = "meter", host = "127.0.0.1", port = 5020, unit = 2 },
  { kind = "battery", host = "127.0.0.1", port = 5020, unit = 3, reserve_pct = 15 },
]
"""


def test_good_config_parses() -> None:
    config = parse_config(GOOD, "coop.toml")
    assert config.members[0].device("battery").reserve_pct == 15
    assert config.controller.cycle_s == 1.0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("port = 5020, unit = 2", "port = 70000, unit = 2"),
         "members[0].devices[0].port = 70000"),
        (("unit = 2 }", "unti = 2 }"), "members[0].devices[0].unti: unknown key"),
        (('kind = "meter"', 'kind = "metre"'), "members[0].devices[0].kind = 'metre'"),
        (("reserve_pct = 15", "reserve_pct = 150"), "members[0].devices[1].reserve_pct = 150"),
        (('name = "Test coop"', 'name = "Test coop"\n[controler]\ncycle_s = 2'),
         "controler: unknown key"),
        (('id = "h01"', 'id = "h 01"'), "members[0].id = 'h 01'"),
        (('kind = "meter", ', 'kind = "pv", '), "member 'h01' has no meter"),
    ],
)
def test_errors_name_file_key_and_value(change: tuple[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(GOOD.replace(*change), "coop.toml")
    message = str(err.value)
    assert message.startswith("coop.toml: ")
    assert expected in message


def test_toml_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"coop.toml: not valid TOML: .*line 2"):
        parse_config('name = "x"\nmembers = [1,,]\n', "coop.toml")


def test_duplicate_member_ids_rejected() -> None:
    doubled = GOOD + GOOD.split("name = \"Test coop\"")[1].replace("port = 5020", "port = 5021")
    with pytest.raises(ConfigError, match=r"members\[1\].id = .h01.: repeated; members\[0\].id"):
        parse_config(doubled, "coop.toml")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_help_lists_subcommands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ("demo", "run", "config"):
        assert command in out.stdout


def test_config_check_broken_file_exits_nonzero_naming_key(tmp_path: Path) -> None:
    broken = tmp_path / "coop.toml"
    broken.write_text(GOOD.replace("port = 5020, unit = 2", "port = 5020, unit = 2, colour = 1"))
    out = run_cli("config", "check", str(broken))
    assert out.returncode != 0
    assert f"{broken}: members[0].devices[0].colour: unknown key" in out.stderr


def test_config_check_good_file(tmp_path: Path) -> None:
    good = tmp_path / "coop.toml"
    good.write_text(GOOD)
    out = run_cli("config", "check", str(good))
    assert out.returncode == 0, out.stderr
    assert "OK: 1 members, 2 devices" in out.stdout


def test_config_check_missing_file(tmp_path: Path) -> None:
    out = run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert out.returncode != 0
    assert "nope.toml: cannot read" in out.stderr


def test_a_member_cannot_take_the_coops_own_id() -> None:
    import pytest

    from controller.config import ConfigError, parse_config

    text = ('[[members]]\nid = "_coop"\nname = "X"\n[[members.devices]]\nkind = "meter"\n'
            'host = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match=r"members\[0\].*'_coop' is reserved"):
        parse_config(text, "c.toml")


def test_config_check_refuses_expiry_below_the_cycle_naming_the_field(tmp_path: Path) -> None:
    """A setpoint that lapses before the next cycle renews it is refused, not raised."""
    short = tmp_path / "coop.toml"
    short.write_text(GOOD.replace('name = "Test coop"',
                                  'name = "Test coop"\n[controller]\ncycle_s = 60\n'
                                  'setpoint_expiry_s = 10', 1))
    out = run_cli("config", "check", str(short))
    assert out.returncode == 2
    assert "controller.setpoint_expiry_s = 10" in out.stderr
    assert "cycle_s = 60" in out.stderr
    ok = parse_config(GOOD.replace('name = "Test coop"', 'name = "Test coop"\n[controller]\n'
                                   'cycle_s = 60\nsetpoint_expiry_s = 60', 1), "coop.toml")
    assert ok.controller.setpoint_expiry_s == 60
