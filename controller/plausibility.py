"""The power a device can plausibly report, from its configuration.

A value beyond it is a bad reading, not a fact: a spoofed MQTT message (any client
on a broker can publish on a device's topic), a wrong scale factor, a corrupted
register. Booking it would hand one member most of the coop's surplus, so the
poller fails the read (the device is unknown for the cycle) and names the limit.

The limit is the device's own rating where the config gives one (a PV inverter's
``params.rated_w``, a battery's ``max_power_w``), else the member's main fuse
(``max_import_w``): no household device moves more power than its connection
carries for long. A grid-forming battery without ``max_power_w`` is bounded only
by :data:`controller.polling.MAX_ABS_POWER_W`, since islanded it serves the
whole coop, not its own member.
"""

from __future__ import annotations

from controller.config import DeviceConfig, MemberConfig
from devices.modbus.transport import DeviceError

#: Readings may exceed a rating by this factor: a gG fuse carries 1.25 × its rated
#: current indefinitely (IEC 60269 conventional non-fusing current), and inverters
#: and meters read a few percent high.
MARGIN = 1.25


def power_limit_w(member: MemberConfig, device: DeviceConfig) -> tuple[float, str] | None:
    """The largest plausible |power| of ``device``, W, and where it comes from; None: no
    limit from the configuration."""
    rating = device.rating_w
    if rating is not None:
        key = "max_power_w" if device.kind == "battery" else "params.rated_w"
        return rating * MARGIN, f"its {key} {rating:g} W × {MARGIN:g}"
    if device.kind == "battery" and device.grid_forming:
        return None
    return (member.max_import_w * MARGIN,
            f"member {member.id}'s main fuse max_import_w {member.max_import_w:g} W × {MARGIN:g}")


def check_power(power_w: float | None, limit: tuple[float, str] | None, what: str) -> None:
    """Raise a ``implausible`` :class:`DeviceError` if ``power_w`` is beyond ``limit``."""
    if limit is None or power_w is None or abs(power_w) <= limit[0]:
        return
    raise DeviceError("implausible", f"{what} = {power_w:g} W is beyond {limit[1]}"
                                     f" = {limit[0]:g} W; reading refused")
