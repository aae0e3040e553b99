"""``commonwatt init HOST[:PORT] ...``: a first config from what answers on the network.

Each target is one household (a hybrid inverter, or a gateway with its meter, PV and
battery behind unit ids): it is scanned (:func:`controller.scan.scan`, reads only), its
suggested devices become one ``[[members]]`` entry, every device is read once
(:func:`controller.wiring.read_all`) and the config is written with comments. Nothing is
asked: what the scan cannot decide is written as a commented choice:

* a device that was suggested but did not then read is written commented out, with the
  read's reason;
* a second device of a kind a member has already (a template beside SunSpec) is a
  commented alternative;
* the first battery that reports the grid's state (SunSpec 701 ``ConnSt``) is marked the
  island's grid-former, with a comment to check; other such batteries, a commented choice;
* a household without a meter (every member needs one) is written commented out whole;
* names, tiers, the sharing policy and the API's address are the defaults, with the
  alternatives in comments.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.config import ConfigError, CoopConfig, parse_config

KIND_ORDER = ("meter", "pv", "battery")


def _device_line(d: dict[str, Any], grid_forming: bool = False) -> str:
    extra = ", grid_forming = true" if grid_forming else ""
    return (f'{{ kind = "{d["kind"]}", family = "{d["family"]}", host = "{d["host"]}", '
            f'port = {d["port"]}, unit = {d["unit"]}{extra} }}')


def households(scans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One household per scanned target: its chosen devices (one per kind, SunSpec first)
    and the alternatives."""
    out = []
    for i, result in enumerate(scans):
        chosen: dict[str, dict[str, Any]] = {}
        others = []
        for d in result["suggested"]:
            if d["kind"] in chosen:
                others.append(d)
            else:
                chosen[d["kind"]] = d
        devices = [chosen[k] for k in KIND_ORDER if k in chosen]
        out.append({"id": f"h{i + 1:02d}", "target": result["target"], "devices": devices,
                    "alternatives": others, "reason": result.get("gave_up")})
    return out


def _members_toml(homes: list[dict[str, Any]], failed: dict[tuple[str, str], str],
                  formers: list[str]) -> list[str]:
    lines = []
    for h in homes:
        good = [d for d in h["devices"] if (h["id"], d["kind"]) not in failed]
        has_meter = any(d["kind"] == "meter" for d in good)
        c = "" if has_meter else "# "
        lines.append("")
        if not h["devices"]:
            lines.append(f"# {h['target']}: nothing recognised ({h['reason'] or 'no device'})"
                         "; check the address, the port and that Modbus TCP is enabled")
            continue
        if not has_meter:
            lines.append(f"# {h['target']}: no meter that reads, and every member needs one;"
                         " left out until its meter is wired:")
        lines += [f"{c}[[members]]", f'{c}id = "{h["id"]}"',
                  f'{c}name = "Household at {h["target"]}"   # the name its members know',
                  f'{c}# tier = "essential"    # or "critical" (medical device), "flexible"',
                  f"{c}devices = ["]
        for d in h["devices"]:
            why = failed.get((h["id"], d["kind"]))
            former = d["kind"] == "battery" and h["id"] in formers
            if former and h["id"] == formers[0]:
                lines.append(f"{c}  # reports the grid's state (SunSpec 701 ConnSt): the "
                             "island's grid-former; check with its installer")
                lines.append(f"{c}  {_device_line(d, True)},")
            elif former:
                lines.append(f"{c}  # also reports the grid's state; the grid-former instead?"
                             f" {_device_line(d, True)}")
                lines.append(f"{c}  {_device_line(d)},")
            elif why is None:
                lines.append(f"{c}  {_device_line(d)},")
            else:
                lines.append(f"{c}  # did not read ({why}): {_device_line(d)},")
        for d in h["alternatives"]:
            lines.append(f"{c}  # or: {_device_line(d)},")
        lines.append(f"{c}]")
    return lines


def config_text(homes: list[dict[str, Any]], failed: dict[tuple[str, str], str],
                name: str = "Our coop", port: int = 8000,
                formers: list[str] | None = None) -> str:
    """The commented config."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [f"# Written by 'commonwatt init' on {day} from what answered; check every line.",
             "# Relative paths are relative to this file. See README.md and docs/.",
             f'name = "{name}"', "",
             "[storage]", 'ledger = "ledger.sqlite"', "",
             "[policy]", 'sharing = "prorata"   # or "equal", "static" (keys), "tiers"', "",
             "[api]", 'host = "127.0.0.1"    # behind a TLS proxy: see docs/operator.md',
             f"port = {port}",
             *_members_toml(homes, failed, formers or [])]
    return "\n".join(lines) + "\n"


async def build(targets: list[tuple[str, int]], unit: int | None = None,
                timeout_s: float = 1.0, name: str = "Our coop", port: int = 8000,
                ) -> tuple[str, list[dict[str, Any]], dict[tuple[str, str], str]]:
    """Scan ``targets``, read what they suggested once, and return the config text, the
    households and the devices that did not read (``(member, kind)`` → reason)."""
    from controller.scan import scan
    from controller.wiring import read_all

    scans = await asyncio.gather(*(scan(h, p, unit=unit, timeout_s=timeout_s)
                                   for h, p in targets))
    homes = households(list(scans))
    failed: dict[tuple[str, str], str] = {}
    draft = config_text(homes, {}, name, port)
    try:
        config: CoopConfig | None = parse_config(draft, "<init>")
    except ConfigError:
        config = None  # nothing with a meter: nothing to read
    formers: list[str] = []
    if config is not None:
        report = await read_all(config)
        for entry in report:
            member, kind = str(entry["device"]).split("/")
            if not entry["ok"]:
                failed[(member, kind)] = str(entry["error"])
            elif kind == "battery" and entry["values"].get("grid", {}).get("value"):
                formers.append(member)  # it says whether the utility is there: 701 ConnSt
    return config_text(homes, failed, name, port, formers), homes, failed
