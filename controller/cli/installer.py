"""The installer's commands: ``read`` (wiring check), ``scan`` (what is this device?) and
``devices`` (health of a running controller's devices, or the shipped templates)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from controller.cli.common import load_or_report, positive


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``read``, ``scan`` and ``devices`` to the top-level subparsers."""
    read = sub.add_parser("read", help="installer's wiring check: read every device once")
    read.add_argument("config", type=Path)
    read.add_argument("--json", action="store_true", help="print JSON")
    read.set_defaults(func=read_command)

    scan = sub.add_parser("scan", help="discover what a Modbus TCP device is (reads only)")
    scan.add_argument("target", metavar="HOST[:PORT]", help="device address (port default 502)")
    scan.add_argument("--unit", type=int, help="Modbus unit id (default: sweep the common "
                      "ones, 1 2 3 100 126 200 201 240 247; templates at their own)")
    scan.add_argument("--timeout", type=positive, default=1.0, help="seconds per request")
    scan.add_argument("--json", action="store_true", help="print JSON (see docs/reference.md)")
    scan.set_defaults(func=scan_command)

    devices = sub.add_parser("devices", help="health of every device of a running controller")
    devices.add_argument("--url", help="controller API (default from --config, else "
                         "http://127.0.0.1:8000)")
    devices.add_argument("--config", type=Path, help="take the API address from this config")
    devices.add_argument("--templates", action="store_true",
                         help="list the shipped device templates instead")
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.epilog = ("needs an installer or coordinator token in the environment variable "
                      "COMMONWATT_TOKEN ('commonwatt token create CONFIG --role installer')")
    devices.set_defaults(func=devices_command)


def read_command(args: argparse.Namespace) -> int:
    """Read every configured device once; 0 if all answered, 1 if not, 2 on a bad config."""
    from controller.wiring import format_report, read_all
    from devices.modbus.transport import quiet_pymodbus

    quiet_pymodbus()
    config = load_or_report(args.config)
    if config is None:
        return 2
    report = asyncio.run(read_all(config))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if all(entry["ok"] for entry in report) else 1


def _target(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 502
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def scan_command(args: argparse.Namespace) -> int:
    """Probe a Modbus TCP device; 0 if a template or model fits, 1 if not, 2 on bad options."""
    from controller.scan import format_scan, scan
    from devices.modbus.transport import quiet_pymodbus

    target = _target(args.target)
    if target is None:
        print(f"scan: target = {args.target!r}: expected HOST or HOST:PORT", file=sys.stderr)
        return 2
    if args.unit is not None and not 0 <= args.unit <= 255:
        print(f"scan: --unit = {args.unit}: expected 0…255", file=sys.stderr)
        return 2
    quiet_pymodbus()
    result = asyncio.run(scan(*target, unit=args.unit, timeout_s=args.timeout))
    print(json.dumps(result, indent=2) if args.json else format_scan(result))
    return 0 if result["suggested"] else 1


def devices_command(args: argparse.Namespace) -> int:
    """Device health from a running controller (0 if all ok, 1 if not, 2 if unreachable),
    or the shipped templates with ``--templates``."""
    from controller.devices_cmd import fetch_devices, format_devices

    if args.templates:
        from devices.templates.schema import shipped_templates

        rows = [{"family": t.id, "name": t.name, "kinds": t.kinds,
                 "capabilities": t.capabilities, "default_port": t.default_port,
                 "default_unit": t.default_unit} for t in shipped_templates().values()]
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            print(f"{r['family']:<24} {', '.join(r['kinds']):<20} {r['name']}")
        return 0
    url = args.url
    if url is None and args.config is not None:
        config = load_or_report(args.config)
        if config is None:
            return 2
        url = f"http://{config.api.host}:{config.api.port}"
    try:
        # From the environment, not an option: a command line is visible to every user.
        devices = fetch_devices(url or "http://127.0.0.1:8000",
                                token=os.environ.get("COMMONWATT_TOKEN"))
    except ConnectionError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(devices, indent=2) if args.json else format_devices(devices))
    return 0 if all(d["state"] == "ok" for d in devices) else 1
