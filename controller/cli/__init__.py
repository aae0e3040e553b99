"""The ``commonwatt`` command line.

Each command group is one module of this package with a
``register(sub: argparse._SubParsersAction) -> None`` function that adds its
parsers to the top-level subparsers and gives each runnable parser
``set_defaults(func=...)``: a function of the parsed arguments that returns the
exit code. To add a command group, write the module and list it in
:data:`COMMAND_GROUPS` (its position there is its position in ``--help``).
"""

from __future__ import annotations

import argparse
import logging
import os

from controller.cli import (
    accounts_cmd,
    agent_cmd,
    backup_cmd,
    config_cmd,
    federation_cmd,
    forecast_cmd,
    init_cmd,
    installer,
    island_cmd,
    mqtt_cmd,
    run_cmd,
    service_cmd,
    simulate_cmd,
    token_cmd,
)

#: Command-group modules, in the order their commands appear in ``--help``.
COMMAND_GROUPS = (run_cmd, simulate_cmd, installer, init_cmd, config_cmd, accounts_cmd,
                  island_cmd, token_cmd, backup_cmd, service_cmd, agent_cmd, federation_cmd,
                  mqtt_cmd, forecast_cmd)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="commonwatt",
        description="Controller for micro-grid energy cooperatives: balances surplus between "
        "households, runs the batteries and publishes each member's liberated kWh.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


#: Commands that create the ledger, tokens, audit log or backups: owner-only files.
PRIVATE = frozenset({"run", "demo", "token", "rotate", "audit", "backup", "restore"})


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``commonwatt`` console script."""
    args = build_parser().parse_args(argv)
    if args.command in PRIVATE:
        # The ledger, tokens and audit log are the coop's books and keys: no other user
        # of the machine may read them (the service's unit says UMask=0077 too).
        os.umask(0o077)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)
