"""``commonwatt service install CONFIG [--user NAME] [--unit PATH]``: a systemd unit.

Writes the unit (:mod:`controller.service`; default ``/etc/systemd/system/commonwatt.service``,
``-`` for stdout), creates the directories the controller writes, and prints the commands
that remain for root: create the user, hand it its directories, start the service.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from controller.cli.common import load_or_report


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``service`` to the top-level subparsers."""
    service = sub.add_parser("service", help="run the controller as a systemd service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="write a hardened systemd unit for CONFIG")
    install.add_argument("config", type=Path)
    install.add_argument("--user", default="commonwatt",
                         help="the dedicated system user it runs as (default commonwatt)")
    install.add_argument("--unit", default=None, metavar="PATH",
                         help="where to write it (default /etc/systemd/system/"
                         "commonwatt.service; '-' prints it)")
    install.set_defaults(func=install_command)


def install_command(args: argparse.Namespace) -> int:
    """0 written, 1 if it cannot be written, 2 on a bad config."""
    from controller.config_checks import machine_problems
    from controller.service import DEFAULT_UNIT, unit_text, writable_dirs

    config = load_or_report(args.config)
    if config is None:
        return 2
    problems = machine_problems(config, str(args.config))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    text = unit_text(config, args.config, args.user)
    if args.unit == "-":
        sys.stdout.write(text)
        return 0
    unit = Path(args.unit) if args.unit else DEFAULT_UNIT
    try:
        for d in writable_dirs(config):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        unit.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"service install: {exc.filename}: {exc.strerror} (run it as root, or give "
              "--unit a path you may write)", file=sys.stderr)
        return 1
    dirs = " ".join(shlex.quote(str(d)) for d in writable_dirs(config))
    name = unit.name
    print(f"wrote {unit} (ledger {config.storage.ledger})\nthen, as root:\n"
          f"  useradd --system --no-create-home --shell /usr/sbin/nologin {args.user}\n"
          f"  chown -R {args.user}: {dirs}\n"
          f"  chgrp {args.user} {shlex.quote(str(args.config.absolute()))} && "
          f"chmod 640 {shlex.quote(str(args.config.absolute()))}\n"
          f"  systemctl daemon-reload && systemctl enable --now {name}\n"
          f"  journalctl -u {name} -f    # its log; systemctl reload {name} rereads the config")
    return 0
