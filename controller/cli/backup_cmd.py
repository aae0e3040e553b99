"""``commonwatt backup CONFIG [DEST]`` and ``commonwatt restore CONFIG BACKUP``.

``backup`` takes an online, checked copy of the ledger, tokens, audit log and plan
(:mod:`controller.backup`) into ``DEST`` (default: ``[backup] destination``), keeping
``--keep`` generations (default: ``[backup] keep``, else 7). It runs while the controller
runs. ``restore`` puts a backup in place; it refuses while a controller holds the ledger.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from controller.cli.common import load_or_report


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore`` to the top-level subparsers."""
    bk = sub.add_parser("backup", help="a checked copy of the ledger, tokens, audit log and "
                        "plan, while the controller runs")
    bk.add_argument("config", type=Path)
    bk.add_argument("dest", type=Path, nargs="?",
                    help="directory of the backups (default: [backup] destination)")
    bk.add_argument("--keep", type=int, help="backups kept (default: [backup] keep, else 7)")
    bk.set_defaults(func=backup_command)
    rs = sub.add_parser("restore", help="put a backup in place (the controller stopped)")
    rs.add_argument("config", type=Path)
    rs.add_argument("backup", type=Path, help="one backup's directory (DEST/<time>)")
    rs.set_defaults(func=restore_command)


def backup_command(args: argparse.Namespace) -> int:
    """0 with the backup checked, 1 if it failed, 2 on bad input."""
    from controller.backup import BackupError, backup

    config = load_or_report(args.config)
    if config is None:
        return 2
    dest = args.dest or (config.backup.destination if config.backup else None)
    if dest is None:
        print("backup: no DEST given and no [backup] destination in the config",
              file=sys.stderr)
        return 2
    keep = args.keep or (config.backup.keep if config.backup else 7)
    print(f"backup: ledger {config.storage.ledger}", file=sys.stderr)
    try:
        result = backup(config, dest.expanduser().absolute(), keep)
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup {result.path}: {', '.join(result.files)}; integrity ok; "
          f"{result.intervals} intervals, totals equal to the running ledger's")
    for old in result.removed:
        print(f"  removed the older {old.name} (keeping {keep})")
    return 0


def restore_command(args: argparse.Namespace) -> int:
    """0 restored, 1 refused (a controller runs, a bad backup), 2 on bad input."""
    from controller.backup import BackupError, restore
    from controller.ledger import LedgerLockedError

    config = load_or_report(args.config)
    if config is None:
        return 2
    try:
        moved = restore(config, args.backup)
    except (BackupError, LedgerLockedError, OSError) as exc:
        print(f"restore: refused: {exc}", file=sys.stderr)
        return 1
    print(f"restore: {args.backup} is in place at {config.storage.ledger.parent}")
    for path in moved:
        print(f"  kept the previous file as {path}")
    return 0
