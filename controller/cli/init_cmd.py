"""``commonwatt init HOST[:PORT] ... [--out coop.toml]``: scan, write a commented config,
read every device once, check it (:mod:`controller.init_config`). No questions asked."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from controller.cli.common import positive


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``init`` to the top-level subparsers."""
    init = sub.add_parser("init", help="a first config: scan the households' devices, write "
                          "it commented, read each device once, check it")
    init.add_argument("targets", nargs="+", metavar="HOST[:PORT]",
                      help="one per household (port default 502)")
    init.add_argument("--out", type=Path, default=Path("coop.toml"),
                      help="the config to write (default ./coop.toml; never overwritten)")
    init.add_argument("--unit", type=int, help="Modbus unit id (default: sweep the common ones)")
    init.add_argument("--timeout", type=positive, default=1.0, help="seconds per request")
    init.add_argument("--name", default="Our coop", help="the coop's name")
    init.add_argument("--port", type=int, default=8000,
                      help="the API's port on 127.0.0.1 (default 8000)")
    init.set_defaults(func=init_command)


def init_command(args: argparse.Namespace) -> int:
    """0 written and checked, 1 written with problems to fix, 2 refused."""
    from controller.cli.config_cmd import island_problems
    from controller.cli.installer import _target
    from controller.config import ConfigError, load_config
    from controller.config_checks import machine_problems
    from controller.init_config import build
    from devices.modbus.transport import quiet_pymodbus

    targets = [_target(t) for t in args.targets]
    if None in targets:
        bad = args.targets[targets.index(None)]
        print(f"init: {bad!r}: expected HOST or HOST:PORT", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"init: {args.out} exists; it is never overwritten (give --out)",
              file=sys.stderr)
        return 2
    quiet_pymodbus()
    if not 1 <= args.port <= 65535:
        print(f"init: --port = {args.port}: expected 1 to 65535", file=sys.stderr)
        return 2
    text, homes, failed = asyncio.run(build(targets, args.unit, args.timeout,  # type: ignore[arg-type]
                                            args.name, args.port))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    members = sum(1 for h in homes if any(d["kind"] == "meter" and (h["id"], "meter")
                                          not in failed for d in h["devices"]))
    devices = sum(len(h["devices"]) for h in homes) - len(failed)
    print(f"init: wrote {args.out}: {members} of {len(homes)} households as members, "
          f"{devices} devices that read")
    for (member, kind), why in sorted(failed.items()):
        print(f"  {member}/{kind} did not read ({why}): written commented out")
    try:
        config = load_config(args.out)
    except ConfigError as exc:
        print(f"config check: {exc}", file=sys.stderr)
        return 1
    problems = machine_problems(config, str(args.out)) + island_problems(config, str(args.out))
    for problem in problems:
        print(f"config check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"config check: OK. Next: commonwatt read {args.out}, then commonwatt run {args.out}")
    return 0
