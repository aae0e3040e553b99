"""``commonwatt island init CONFIG --latitude LAT --longitude LON --tz TZ [--print]``.

Reads every PV inverter's rating and every battery's capacity once and appends the
``[site]`` and ``[island]`` tables to CONFIG (:mod:`controller.island_day.init_tables`), then
runs the island checks of ``config check`` on the result. ``--print`` writes them to
stdout instead. A config that has either table already is left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from controller.cli.common import load_or_report, number_in


def _tz(text: str) -> str:
    from controller.island.site_config import parse_tz

    try:
        parse_tz(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--tz = {text!r}: {exc}") from None
    return text


def register(actions: argparse._SubParsersAction) -> None:
    """Add ``island init`` to the ``island`` group's actions."""
    init = actions.add_parser("init", help="write [site] and [island] into CONFIG from what "
                              "the inverters and batteries report")
    init.add_argument("config", type=Path)
    init.add_argument("--latitude", required=True, metavar="DEG",
                      type=number_in(-90, 90, "a latitude", "a latitude from -90 to 90"))
    init.add_argument("--longitude", required=True, metavar="DEG",
                      type=number_in(-180, 180, "a longitude", "a longitude from -180 to 180"))
    init.add_argument("--tz", required=True, type=_tz,
                      help="the site's time zone: an IANA name (Europe/Paris) or +01:00")
    init.add_argument("--print", action="store_true",
                      help="print the tables instead of appending them to CONFIG")
    init.set_defaults(func=init_command)


def init_command(args: argparse.Namespace) -> int:
    """0 written and checked, 1 written but config check names what to fill in, 2 refused."""
    from controller.cli.config_cmd import island_problems
    from controller.config import ConfigError, load_config
    from controller.island.device_facts import read_battery_facts
    from controller.island_day.init_tables import read_ratings, tables

    config = load_or_report(args.config)
    if config is None:
        return 2
    if config.site is not None or "island" in config.model_fields_set:
        print(f"island init: {args.config} has [site] or [island] already; edit them there "
              "(or --print the tables to compare)", file=sys.stderr)
        if not args.print:
            return 2

    async def read() -> tuple[dict, dict]:
        batteries = [m.id for m in config.members if m.device("battery") is not None]
        return await asyncio.gather(read_ratings(config),
                                    read_battery_facts(config, batteries))

    ratings, batteries = asyncio.run(read())
    text = tables(config, args.latitude, args.longitude, args.tz, ratings, batteries)
    if args.print:
        sys.stdout.write(text)
        return 0
    with args.config.open("a", encoding="utf-8") as f:
        f.write(text)
    read_ok = sum(isinstance(r, float) for r in ratings.values())
    print(f"island init: appended [site] ({read_ok} of {len(ratings)} PV arrays from their "
          f"inverters) and [island] ({len(batteries)} batteries) to {args.config}")
    try:
        problems = island_problems(load_config(args.config), str(args.config))
    except ConfigError as exc:
        problems = [str(exc)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0
