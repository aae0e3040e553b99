"""``commonwatt statement``, ``report`` and ``export``: the accounts read from the ledger.

The work is in :mod:`controller.accounts`; these commands load the config,
open its ledger read-only (the controller may be running) and print.
Bad input (config, month, member, time, a missing ledger) exits 2 with a
message naming the field.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.common import load_or_report
from controller.config import CoopConfig
from controller.config_tariff import wear_prices
from controller.planning.savings import savings_path

if TYPE_CHECKING:
    from controller.ledger import LedgerReader


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``statement``, ``report`` and ``export`` to the top-level subparsers."""
    st = sub.add_parser("statement", help="one member's month: energy, gaps, meter drift, money")
    st.add_argument("config", type=Path)
    st.add_argument("member", help="member id")
    st.add_argument("--month", required=True, metavar="YYYY-MM", help="calendar month (UTC)")
    st.add_argument("--format", choices=["text", "csv", "json"], default="text",
                    help="csv: one row per day and a total row (default text)")
    st.set_defaults(func=statement_command)

    rp = sub.add_parser("report", help="the coop's month: liberated kWh, fairness, budget")
    rp.add_argument("config", type=Path)
    rp.add_argument("--month", required=True, metavar="YYYY-MM", help="calendar month (UTC)")
    rp.add_argument("--format", choices=["text", "json"], default="text")
    rp.set_defaults(func=report_command)

    ex = sub.add_parser("export", help="the whole ledger as open data: CSV on stdout, one row "
                        "per member and settlement interval")
    ex.add_argument("config", type=Path)
    ex.add_argument("--from", dest="from_", metavar="ISO",
                    help="first interval start, ISO 8601 (UTC without offset) or Unix seconds")
    ex.add_argument("--to", metavar="ISO", help="last interval end, same forms")
    ex.add_argument("--pseudonymous", action="store_true",
                    help="name members by a keyed hash instead of their id")
    ex.set_defaults(func=export_command)


def _open(command: str, path: Path) -> tuple[CoopConfig, LedgerReader] | None:
    """The config and a reader over its ledger, or ``None`` after printing why not."""
    from controller.ledger import LedgerMissingError, LedgerReader

    config = load_or_report(path)
    if config is None:
        return None
    try:
        reader = LedgerReader(config.storage.ledger)
    except LedgerMissingError as exc:
        print(f"{command}: [storage] ledger = {exc}", file=sys.stderr)
        return None
    except sqlite3.DatabaseError as exc:
        print(f"{command}: [storage] ledger = {config.storage.ledger}: not a readable "
              f"ledger ({exc})", file=sys.stderr)
        return None
    # On stderr: stdout is the statement or CSV itself.
    print(f"{command}: ledger {config.storage.ledger}", file=sys.stderr)
    return config, reader


def _month(command: str, text: str) -> int | None:
    from controller.accounts import AccountsInputError, parse_month

    try:
        return parse_month(text, "--month")[0]
    except AccountsInputError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None


def _unknown_member(config: CoopConfig, exc: Exception, member: str) -> str:
    message = f"statement: {exc}"
    if member in {m.id for m in config.members}:
        message += ("; it is in the config but the ledger has no entry for it yet "
                    "(the controller registers members when it starts)")
    return message


def statement_command(args: argparse.Namespace) -> int:
    """Print one member's month; 2 on bad input."""
    from controller.accounts import UnknownMemberError, member_statement
    from controller.accounts.statement import render_csv, render_json, render_text

    opened = _open("statement", args.config)
    month = _month("statement", args.month)
    if opened is None or month is None:
        return 2
    config, reader = opened
    try:
        st = member_statement(reader, args.member, month, config.ledger, config.tariff,
                              wear_prices(config.members), savings_path(config.storage.ledger))
    except UnknownMemberError as exc:
        print(_unknown_member(config, exc, args.member), file=sys.stderr)
        return 2
    if args.format == "csv":
        render_csv(st, sys.stdout)
    else:
        sys.stdout.write(render_json(st) + "\n" if args.format == "json" else render_text(st))
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Print the coop's month; 2 on bad input."""
    from controller.accounts import coop_report
    from controller.accounts.report import render_json, render_text

    opened = _open("report", args.config)
    month = _month("report", args.month)
    if opened is None or month is None:
        return 2
    config, reader = opened
    report = coop_report(reader, month, config.tariff, config.ledger,
                         wear_prices(config.members), savings_path(config.storage.ledger))
    sys.stdout.write(render_json(report) + "\n" if args.format == "json"
                     else render_text(report))
    return 0


def export_command(args: argparse.Namespace) -> int:
    """Stream the ledger as CSV to stdout; 2 on bad input."""
    from controller.accounts import AccountsInputError, export_csv, parse_time

    try:
        start = None if args.from_ is None else parse_time(args.from_, "--from")
        end = None if args.to is None else parse_time(args.to, "--to")
    except AccountsInputError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    if start is not None and end is not None and start > end:
        print(f"export: --from = {args.from_!r} is after --to = {args.to!r}", file=sys.stderr)
        return 2
    opened = _open("export", args.config)
    if opened is None:
        return 2
    _, reader = opened
    try:
        export_csv(reader, start, end, args.pseudonymous, sys.stdout)
        sys.stdout.flush()
    except LookupError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (``| head``) left: stop quietly, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0
