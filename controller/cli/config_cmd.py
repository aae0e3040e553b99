"""``commonwatt config check``: validate a configuration file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.cli.common import load_or_report
from controller.config import CoopConfig
from controller.config_checks import machine_problems, secret_warnings


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``config`` and its actions to the top-level subparsers."""
    config = sub.add_parser("config", help="work with configuration files")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=config_check)


def island_problems(config: CoopConfig, source: str, stated: list[str] | None = None,
                    ) -> list[str]:
    """Every check ``island plan`` makes of the file itself (not of the devices, which it
    asks for what ``[[island.batteries]]`` leaves out), one line each. A PV member without
    an array is estimated from the ledger as the plan would (its statement is appended to
    ``stated``), or an error saying why it cannot be."""
    from datetime import UTC, datetime

    from controller.config import ConfigError
    from controller.island.site import resolve
    from controller.island_day.array_estimate import estimate_arrays

    if config.site is None:
        if "island" in config.model_fields_set:
            return [f"{source}: site: required with [island] (latitude, longitude, tz and the "
                    "PV arrays; see docs/island.md)"]
        return []
    site, estimates, no_array = estimate_arrays(config, config.site, config.storage.ledger,
                                                datetime.now(UTC))
    if stated is not None:
        stated += [e.statement() for e in estimates]
    try:
        resolve(config, site, config.island, source, no_array=no_array)
    except ConfigError as exc:
        return str(exc).splitlines()
    return []


def config_check(args: argparse.Namespace) -> int:
    """Print a one-line summary of a valid config (0), or its problems to stderr (2)."""
    config = load_or_report(args.file)
    if config is None:
        return 2
    stated: list[str] = []
    problems = machine_problems(config, str(args.file)) + island_problems(
        config, str(args.file), stated)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    # Warnings, not errors: a coop may choose a shared group on purpose.
    for line in secret_warnings(config, args.file):
        print(line, file=sys.stderr)
    devices = sum(len(m.devices) for m in config.members)
    print(f"{args.file}: OK: {len(config.members)} members, {devices} devices, "
          f"sharing {config.policy.sharing}, ledger {config.storage.ledger}")
    for line in stated:
        print(f"{args.file}: {line}")
    return 0
