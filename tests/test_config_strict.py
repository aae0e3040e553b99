"""Config that means what it says: each bad text is refused with the key named.

A table: a change to a valid coop.toml → the line the error must contain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import ConfigError, parse_config

BASE = """
[controller]
stale_after_s = 5.0
[api]
port = 8000
[mqtt]
port = 1883
[[members]]
id = "h01"
name = "One"
  [[members.devices]]
  kind = "meter"
  host = "127.0.0.1"
  port = 5020
  [[members.devices]]
  kind = "battery"
  host = "127.0.0.1"
  port = 5020
  unit = 2
  efficiency = 0.9
[[members]]
id = "h02"
name = "Two"
  [[members.devices]]
  kind = "meter"
  protocol = "mqtt"
  family = "tasmota"
  topic = "meter-h02"
"""

THIRD = """
[[members]]
id = "{id}"
name = "Three"
  [[members.devices]]
  kind = "meter"
  protocol = "mqtt"
  family = "{family}"
  topic = "{topic}"
"""

CASES = [
    # (what, old, new, expected in the error)
    ("port as a string", "port = 5020\n  [[members.devices]]\n  kind = \"battery\"",
     "port = \"502\"\n  [[members.devices]]\n  kind = \"battery\"",
     "members[0].devices[0].port = '502': Input should be a valid integer"),
    ("efficiency as a bool", "efficiency = 0.9", "efficiency = true",
     "members[0].devices[1].efficiency = True: Input should be a valid number"),
    ("infinite staleness", "stale_after_s = 5.0", "stale_after_s = inf",
     "controller.stale_after_s = inf: Input should be a finite number"),
    ("nan key", 'name = "Two"', 'name = "Two"\nkey = nan', "members[1].key = nan"),
    ("api port as a float", "port = 8000", "port = 8000.0", "api.port = 8000.0"),
    ("URL as a Modbus host", 'host = "127.0.0.1"\n  port = 5020\n  [[members.devices]]\n'
     '  kind = "battery"', 'host = "http://10.0.0.5"\n  port = 5020\n  [[members.devices]]\n'
     '  kind = "battery"', "members[0].devices[0].host = 'http://10.0.0.5': expected an IP"),
    ("host:port", "[mqtt]\nport = 1883", '[mqtt]\nhost = "broker:1883"\nport = 1883',
     "mqtt.host = 'broker:1883': expected an IP address or a host name"),
    ("space in a host name", "[mqtt]\nport = 1883", '[mqtt]\nhost = "my broker"\nport = 1883',
     "mqtt.host = 'my broker'"),
    ("API beyond loopback", "[api]\nport = 8000", '[api]\nhost = "0.0.0.0"\nport = 8000',
     "api.host = '0.0.0.0': not a loopback address"),
    ("API on a LAN name", "[api]\nport = 8000", '[api]\nhost = "coop-pi.local"\nport = 8000',
     "api.host = 'coop-pi.local': not a loopback address"),
    ("password without user", "[mqtt]\nport = 1883", '[mqtt]\nport = 1883\npassword = "x"',
     "mqtt: a password needs a username"),
    ("password twice", "[mqtt]\nport = 1883",
     '[mqtt]\nport = 1883\nusername = "u"\npassword = "x"\npassword_file = "/etc/pw"',
     "mqtt: password and password_file: give one, not both"),
    ("client cert without key", "[mqtt]\nport = 1883",
     '[mqtt]\nport = 1883\ntls_cert = "/etc/c.pem"', "mqtt: tls_cert and tls_key go together"),
    ("main fuse as a string", 'name = "Two"', 'name = "Two"\nmax_import_w = "43 kW"',
     "members[1].max_import_w = '43 kW': Input should be a valid number"),
]


@pytest.mark.parametrize(("what", "old", "new", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_refused_naming_the_key(what: str, old: str, new: str,
                                             expected: str) -> None:
    assert old in BASE, what
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.replace(old, new, 1), "coop.toml")
    assert f"coop.toml: {expected}" in str(err.value), str(err.value)


def test_the_base_is_valid_and_public_api_may_listen_anywhere() -> None:
    parse_config(BASE, "coop.toml")
    config = parse_config(BASE.replace("[api]\n", '[api]\npublic = true\nhost = "0.0.0.0"\n'))
    assert config.api.host == "0.0.0.0" and config.api.public
    for loopback in ("localhost", "127.0.0.2", "::1"):
        parse_config(BASE.replace("[api]\n", f'[api]\nhost = "{loopback}"\n'))


def test_duplicate_member_ids_are_named_by_path() -> None:
    text = BASE + THIRD.format(id="h03", family="tasmota", topic="m3") + THIRD.format(
        id="h01", family="tasmota", topic="m4")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "coop.toml")
    assert ("coop.toml: members[3].id = 'h01': repeated; members[0].id has it already"
            in str(err.value)), str(err.value)


def test_two_devices_on_one_topic_are_refused_naming_both() -> None:
    text = BASE + THIRD.format(id="h03", family="tasmota", topic="meter-h02")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "coop.toml")
    message = str(err.value)
    assert "members[2].devices[0]: topic 'tele/meter-h02/SENSOR' is configured twice" in message
    assert "members[1].devices[0] and members[2].devices[0]" in message, message


def test_same_topic_in_two_formats_is_refused_too() -> None:
    json_dev = ('[[members]]\nid = "h03"\nname = "Three"\n  [[members.devices]]\n'
                '  kind = "meter"\n  protocol = "mqtt"\n  family = "json"\n'
                '  topic = "tele/meter-h02/SENSOR"\n  paths = { power_w = "ENERGY.Power" }\n')
    with pytest.raises(ConfigError, match=r"members\[1\].devices\[0\] and members\[2\]"):
        parse_config(BASE + json_dev, "coop.toml")


def test_password_never_reaches_a_dump() -> None:
    config = parse_config(BASE.replace("[mqtt]\n", '[mqtt]\nusername = "u"\npassword = "pw1"\n'))
    assert "pw1" not in config.model_dump_json()
    assert "pw1" not in repr(config) and "pw1" not in repr(config.mqtt.access())
    assert config.mqtt.access().password == "pw1"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_config_check_names_a_ledger_in_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    path = tmp_path / "coop.toml"
    path.write_text(f'[storage]\nledger = "{locked}/sub/ledger.sqlite"\n' + BASE)
    out = check(path)
    assert out.returncode == 2
    assert f"storage.ledger = '{locked}/sub/ledger.sqlite': cannot be created" in out.stderr


def test_config_check_names_a_ledger_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    path = tmp_path / "coop.toml"
    path.write_text(f'[storage]\nledger = "{blocker}/ledger.sqlite"\n' + BASE)
    out = check(path)
    assert out.returncode == 2, out.stdout
    assert (f"coop.toml: storage.ledger = '{blocker}/ledger.sqlite': cannot be created: "
            f"{blocker} is not a directory") in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    run = subprocess.run([sys.executable, "-m", "controller.cli", "run", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "cannot be created" in run.stderr
    assert "Traceback" not in run.stderr


def test_config_check_names_missing_mqtt_files(tmp_path: Path) -> None:
    path = tmp_path / "coop.toml"
    path.write_text(f'[storage]\nledger = "{tmp_path}/ledger.sqlite"\n' + BASE.replace(
        "[mqtt]\n", f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path}/pw"\n'
                    f'tls_ca = "{tmp_path}/ca.pem"\n'))
    out = check(path)
    assert out.returncode == 2
    assert f"mqtt.password_file = '{tmp_path}/pw': no such file" in out.stderr
    assert f"mqtt.tls_ca = '{tmp_path}/ca.pem': no such file" in out.stderr
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "ca.pem").write_text("not checked here\n")
    assert check(path).returncode == 0
