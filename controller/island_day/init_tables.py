"""``commonwatt island init CONFIG``: the ``[site]`` and ``[island]`` tables, from the devices.

What the devices say is written as values; what they cannot say is written as a commented
choice, never guessed silently:

* one ``[[site.arrays]]`` per member with a PV inverter, its ``kwp`` the inverter's rating
  (SunSpec 121 ``WMax`` or 120 ``WRtg``, or a template's ``params.rated_w``): an AC rating,
  which is the array's DC peak only roughly (arrays are often 10-30 % larger), so the
  line says so. An inverter that does not answer or has no rating gets its array written
  commented out with the reason, and ``config check`` names it until it is filled in;
* one ``[[island.batteries]]`` per battery, its ``capacity_kwh`` the battery's own rating
  (SunSpec 802/713 ``WHRtg``); its SoC is left out, so the plan reads it when it is made;
* ``[site]``'s latitude, longitude and time zone from the command line (no device knows
  where it is); the tilt and azimuth default (30°, south) as a commented choice;
* ``[island]``'s load shares at their defaults, as commented choices.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.config import CoopConfig
from devices.modbus.transport import DeviceError


async def _pv_rating_w(factory: Any, dev: Any) -> float | str:
    """The inverter's AC rating in W, or why there is none."""
    if dev.params.get("rated_w"):
        return float(dev.params["rated_w"])
    driver, _ = factory.build(dev)
    if not hasattr(driver, "rated_power_w"):
        return f"{dev.family} reports no rating; give params.rated_w"
    try:
        return float(await driver.rated_power_w())
    except (DeviceError, OSError, TimeoutError) as exc:
        return str(exc)


async def read_ratings(config: CoopConfig) -> dict[str, float | str]:
    """Each PV member's inverter rating (W), or the reason it could not be read."""
    from controller.drivers import DriverFactory

    factory = DriverFactory(config)
    try:
        members = [(m.id, m.device("pv")) for m in config.members if m.device("pv")]
        ratings = await asyncio.gather(*(_pv_rating_w(factory, d) for _, d in members))
    finally:
        factory.close()
    return {member: rating for (member, _), rating in zip(members, ratings, strict=True)}


def tables(config: CoopConfig, latitude: float, longitude: float, tz: str,
           ratings: dict[str, float | str], batteries: dict[str, Any]) -> str:
    """The TOML of ``[site]`` and ``[island]`` (see the module's docstring)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    lines = ["", f"# [site] and [island]: written by 'commonwatt island init' on {day} from what",
             "# the devices reported. Check each value; see docs/island-setup.md.",
             "[site]", f"latitude = {latitude:g}", f"longitude = {longitude:g}",
             f'tz = "{tz}"', "# altitude_m = 0"]
    for member, rating in ratings.items():
        lines.append("")
        if isinstance(rating, float) and rating > 0:
            lines += ["[[site.arrays]]", f'member = "{member}"',
                      f"kwp = {rating / 1000:.1f}    # the inverter's AC rating; the panels' "
                      "DC peak is often 10-30 % more",
                      "# tilt = 30                  # degrees from horizontal",
                      "# azimuth = 180              # degrees from north (180 = south)"]
        else:
            lines += [f"# {member}: its inverter's rating could not be read ({rating}).",
                      "# Fill in its array; config check names it until you do:",
                      "# [[site.arrays]]", f'# member = "{member}"', "# kwp = ?"]
    lines += ["", "[island]", "# annual_kwh = 3500           # default yearly load of a member",
              "# critical_share = 0.15       # of each member's load: served first, shed last",
              "# essential_share = 0.35      # the rest is flexible, shed first"]
    for member, facts in batteries.items():
        lines.append("")
        capacity = getattr(facts, "capacity_wh", None)
        if capacity:
            lines += ["[[island.batteries]]", f'member = "{member}"',
                      f"capacity_kwh = {capacity / 1000:g}    # the battery's own rating; its "
                      "SoC is read when the plan is made"]
        else:
            why = facts if isinstance(facts, str) else "it reports no capacity"
            lines += [f"# {member}: its battery's capacity could not be read ({why}).",
                      "# The plan asks it again; if it stays silent, fill this in:",
                      "# [[island.batteries]]", f'# member = "{member}"', "# capacity_kwh = ?"]
    return "\n".join(lines) + "\n"
