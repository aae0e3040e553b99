"""Which limit a reading is held to: the device's own rating, else the member's main fuse."""

from __future__ import annotations

import pytest

from controller.config import parse_config
from controller.plausibility import MARGIN, check_power, power_limit_w
from devices.modbus.transport import DeviceError

COOP = """
[[members]]
id = "h01"
name = "One"
max_import_w = 17250
  [[members.devices]]
  kind = "meter"
  host = "127.0.0.1"
  port = 5020
  [[members.devices]]
  kind = "battery"
  host = "127.0.0.1"
  port = 5020
  unit = 3
  max_power_w = 5000
  [[members.devices]]
  kind = "pv"
  family = "huawei-sun2000"
  host = "127.0.0.1"
  port = 5021
  params = { rated_w = 6000 }
[[members]]
id = "h02"
name = "Two"
devices = [
  { kind = "meter", host = "127.0.0.1", port = 5022, unit = 1 },
  { kind = "pv", host = "127.0.0.1", port = 5022, unit = 2 },
  { kind = "battery", host = "127.0.0.1", port = 5022, unit = 3, grid_forming = true },
]
"""


def limits() -> dict[str, tuple[float, str] | None]:
    config = parse_config(COOP)
    return {f"{m.id}/{d.kind}": power_limit_w(m, d) for m in config.members for d in m.devices}


def test_rating_first_then_the_main_fuse() -> None:
    got = limits()
    assert got["h01/meter"][0] == 17250 * MARGIN
    assert "max_import_w 17250 W" in got["h01/meter"][1]
    assert got["h01/pv"][0] == 6000 * MARGIN and "params.rated_w 6000 W" in got["h01/pv"][1]
    assert got["h01/battery"][0] == 5000 * MARGIN and "max_power_w" in got["h01/battery"][1]
    assert got["h02/meter"][0] == 43_500 * MARGIN  # the default fuse: 3 × 63 A × 230 V
    assert got["h02/pv"][0] == 43_500 * MARGIN
    # Islanded, a grid-former serves the whole coop, not its member: no fuse limit.
    assert got["h02/battery"] is None


def test_check_power_names_the_limit_and_accepts_both_signs_within_it() -> None:
    limit = limits()["h01/pv"]
    check_power(7500.0, limit, "pv power")
    check_power(-7500.0, limit, "pv power")
    check_power(None, limit, "pv power")
    with pytest.raises(DeviceError) as err:
        check_power(-7501.0, limit, "pv power")
    assert err.value.reason == "implausible"
    assert "pv power = -7501 W is beyond its params.rated_w 6000 W × 1.25 = 7500 W" in str(
        err.value)
