"""The ``commonwatt`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from controller.config import ConfigError, CoopConfig, load_config


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _hour(text: str) -> float:
    try:
        hours, minutes = text.split(":")
        value = int(hours) + int(minutes) / 60.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM, got {text!r}") from None
    if not 0 <= value < 24:
        raise argparse.ArgumentTypeError(f"expected a time of day 00:00–23:59, got {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="commonwatt",
        description="Controller for micro-grid energy cooperatives: balances surplus between "
        "households, runs the batteries and publishes each member's liberated kWh.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run a simulated coop, the controller and the API")
    demo.add_argument("--speed", type=_positive, default=1.0,
                      help="simulated seconds per real second (default 1)")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument("--households", type=int, default=10, help="how many (default 10)")
    demo.add_argument("--start", type=_hour, default=9.0, metavar="HH:MM",
                      help="simulated time of day to start at (default 09:00)")
    demo.add_argument("--mqtt", type=_host_port, metavar="HOST:PORT",
                      help="use this MQTT broker instead of the embedded one")
    demo.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                      help="where the demo writes its config and ledger (default var/demo)")

    run = sub.add_parser("run", help="run the controller on a configuration file")
    run.add_argument("config", type=Path)

    sim = sub.add_parser("simulate", help="what-if study: batched dispatch over CSV data")
    sim.add_argument("--fleet", type=Path, required=True, metavar="FLEET.csv",
                     help="one row per member: battery size, limits, SoC, efficiency")
    sim.add_argument("--series", type=Path, required=True, metavar="SERIES.csv",
                     help="timestamp, member, pv_w, load_w (mean W per step)")
    sim.add_argument("--policy", choices=["prorata", "equal", "static", "tiers"],
                     default="prorata", help="sharing policy (default prorata)")
    sim.add_argument("--island", action="store_true", help="no grid: shed and curtail instead")
    sim.add_argument("--json", action="store_true", help="print JSON")

    read = sub.add_parser("read", help="installer's wiring check: read every device once")
    read.add_argument("config", type=Path)
    read.add_argument("--json", action="store_true", help="print JSON")

    scan = sub.add_parser("scan", help="discover what a Modbus TCP device is (reads only)")
    scan.add_argument("target", metavar="HOST[:PORT]", help="device address (port default 502)")
    scan.add_argument("--unit", type=int, help="Modbus unit id (default: 1 for SunSpec, "
                      "each template's own)")
    scan.add_argument("--timeout", type=_positive, default=1.0, help="seconds per request")
    scan.add_argument("--json", action="store_true", help="print JSON (schema in README)")

    devices = sub.add_parser("devices", help="health of every device of a running controller")
    devices.add_argument("--url", help="controller API (default from --config, else "
                         "http://127.0.0.1:8000)")
    devices.add_argument("--config", type=Path, help="take the API address from this config")
    devices.add_argument("--templates", action="store_true",
                         help="list the shipped device templates instead")
    devices.add_argument("--json", action="store_true", help="print JSON")

    config = sub.add_parser("config", help="work with configuration files")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    return parser


def _load(path: Path) -> CoopConfig | None:
    """The validated config, or ``None`` after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return 2
    devices = sum(len(m.devices) for m in config.members)
    print(f"{args.file}: OK: {len(config.members)} members, {devices} devices, "
          f"sharing {config.policy.sharing}, ledger {config.storage.ledger}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import json

    from controller.simulate import InputError, load_study, run_study

    try:
        study = load_study(args.fleet, args.series)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    report = run_study(study, args.policy, args.island)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    coop = report["coop"]
    print(f"{len(report['members'])} members, {coop['ticks']} steps of {coop['step_s']:g} s, "
          f"policy {args.policy}{', islanded' if args.island else ''}")
    header = ("member", "load", "served", "liberated", "from_peers", "to_peers", "from_grid",
              "to_grid", "shed", "curtailed")
    print("  ".join(f"{h:>10}" for h in header))
    for member, m in [*report["members"].items(), ("COOP", coop)]:
        print("  ".join([f"{member:>10}"] + [f"{m[h]:>10.3f}" for h in header[1:]]))
    print(f"self-sufficiency {coop['self_sufficiency']}, Jain fairness {coop['jain_fairness']}"
          " (energies in kWh)")
    return 0


def _cmd_read(args: argparse.Namespace) -> int:
    import json

    from controller.wiring import format_report, read_all

    config = _load(args.config)
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


def _cmd_scan(args: argparse.Namespace) -> int:
    import json

    from controller.scan import format_scan, scan

    target = _target(args.target)
    if target is None:
        print(f"scan: target = {args.target!r}: expected HOST or HOST:PORT", file=sys.stderr)
        return 2
    if args.unit is not None and not 0 <= args.unit <= 255:
        print(f"scan: --unit = {args.unit}: expected 0…255", file=sys.stderr)
        return 2
    result = asyncio.run(scan(*target, unit=args.unit, timeout_s=args.timeout))
    print(json.dumps(result, indent=2) if args.json else format_scan(result))
    return 0 if result["suggested"] else 1


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

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
        config = _load(args.config)
        if config is None:
            return 2
        url = f"http://{config.api.host}:{config.api.port}"
    try:
        devices = fetch_devices(url or "http://127.0.0.1:8000")
    except ConnectionError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(devices, indent=2) if args.json else format_devices(devices))
    return 0 if all(d["state"] == "ok" for d in devices) else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import DemoOptions, run_demo

    options = DemoOptions(args.speed, args.port, args.households, args.start, args.mqtt,
                          args.data_dir)
    asyncio.run(run_demo(options))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from controller.runtime import Runtime

    config = _load(args.config)
    if config is None:
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runtime = Runtime(config)
        task = asyncio.create_task(runtime.run(stop))
        await runtime.wait_until_serving()
        print(f"Commonwatt running {len(config.members)} members; "
              f"API on http://{config.api.host}:{config.api.port}/", flush=True)
        await task

    asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``commonwatt`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"config": _cmd_config_check, "demo": _cmd_demo, "run": _cmd_run,
                "simulate": _cmd_simulate, "read": _cmd_read, "scan": _cmd_scan,
                "devices": _cmd_devices}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
