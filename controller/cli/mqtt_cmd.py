"""``commonwatt mqtt acl CONFIG --out DIR``: the broker's ACL and password file, so that each
household's Home Assistant reads only its own member and the coop's totals
(:mod:`controller.mqtt_acl`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.cli.common import load_or_report


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mqtt acl`` to the top-level subparsers."""
    mqtt = sub.add_parser("mqtt", help="the MQTT broker's access rules for the coop")
    mqtt_sub = mqtt.add_subparsers(dest="mqtt_command", metavar="COMMAND", required=True)
    acl = mqtt_sub.add_parser(
        "acl", help="write a mosquitto ACL and password file: each household's Home "
        "Assistant reads only its own member and the coop's totals")
    acl.add_argument("config", type=Path)
    acl.add_argument("--out", type=Path, default=None,
                     help="directory for acl, passwd, credentials.txt and mosquitto.conf "
                     "(default: mosquitto/ beside the config)")
    acl.add_argument("--discovery-prefix", default="homeassistant",
                     help="Home Assistant's MQTT discovery prefix (default homeassistant)")
    acl.add_argument("--group", default=None,
                     help="the broker's group, which may read acl and passwd (default: "
                     "mosquitto, where that group exists; 'none': owner-only)")
    acl.set_defaults(func=acl_command)


def acl_command(args: argparse.Namespace) -> int:
    """Write the files; 0 on success, 2 on a bad config."""
    from controller.mqtt_acl import broker_group, write_acl

    config = load_or_report(args.config)
    if config is None:
        return 2
    out = args.out or args.config.resolve().parent / "mosquitto"
    group = (None if args.group == "none" else args.group) if args.group else broker_group()
    try:
        new = write_acl(config, out, args.discovery_prefix, group)
    except KeyError:
        print(f"mqtt acl: --group = {args.group!r}: no such group", file=sys.stderr)
        return 2
    readable = f"readable by group {group}" if group else "owner-only"
    print(f"wrote {out / 'acl'} and {out / 'passwd'} ({readable}) and "
          f"{out / 'mosquitto.conf'}; include the last in the broker's configuration and "
          "restart it")
    if new:
        print(f"{len(new)} new user(s), their passwords in {out / 'credentials.txt'}: "
              + ", ".join(new))
        print("give each household its ha-<member> user and password for its Home "
              "Assistant's MQTT integration; dev-<member> is for that member's MQTT devices")
    mqtt = config.mqtt
    if mqtt is None or not mqtt.username:
        print("the controller logs in as 'commonwatt': set [mqtt] username = \"commonwatt\" "
              "and its password from credentials.txt in the config")
    return 0
