"""``commonwatt island``: plan for a day without the grid.

``island plan CONFIG --start ISO [--hours 24] [--scenario clear|typical|cloudy] [--json]``
forecasts PV and load per member (see :mod:`controller.island.forecast`),
solves the island plan (:mod:`controller.island.plan`) and prints whether
each load tier holds, the starting SoC each battery and the coop need, the
shed schedule, hours of autonomy and the limits that bind.

``island report CONFIG --out DIR [--ledger PATH] [--plan PLAN.json] [--from ISO] [--to ISO]``
writes what the island day did, as booked, against its plan: ``report.html``
(self-contained), ``summary.json`` and the PNG charts
(:mod:`controller.island_day.report`).

``island rehearse [--hours 24] [--speed 1440] [--start HH:MM] [--out DIR] [--households N]
[--scenario NAME|list] [--test-island 5m]``
runs the island day on the simulated coop with the real controller, over
Modbus TCP, in about a minute, then writes the report and ``rehearsal.json``
into DIR (:mod:`controller.island_day.rehearse`); ``--scenario`` picks the day's events
from the library (:mod:`controller.island_day.scenarios`), ``--test-island`` islands
for that long and reconnects. It exits 3 when a verdict fails: the
coop never islanded, a tier its plan held was shed, or the grid-former reached its floor.

For ``plan`` the config file needs a ``[site]`` table and, for batteries and loads, an
``[island]`` table (:mod:`controller.island.site`); they are read beside the
coop's own tables. Load history comes from the config's ledger when it
exists. Bad input exits 2 with a message naming the field.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli import island_init_cmd
from controller.cli.common import number_in

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from controller.config import CoopConfig
    from controller.island.plan import Plan, Problem
    from controller.island.site import Coop, IslandConfig
    from controller.island_day.trust import Assessment

    History = tuple[NDArray[np.int64], NDArray[np.float64]]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``island`` group and its ``plan``, ``init``, ``report`` and ``rehearse``
    actions."""
    island = sub.add_parser("island", help="plan and rehearse a day without the grid")
    actions = island.add_subparsers(dest="island_command", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan", help="forecast the next hours and plan batteries, shedding and curtailment")
    plan.add_argument("config", type=Path)
    plan.add_argument("--start", required=True, metavar="ISO",
                      help="first step, ISO 8601; without an offset it is the site's local "
                      "time ([site] tz); rounded down to the quarter hour")
    plan.add_argument("--hours", type=_hours, default=24, help="horizon, 1-168 (default 24)")
    plan.add_argument("--scenario", choices=["clear", "typical", "cloudy"], default="typical",
                      help="PV: clear sky, the typical year's day, or an overcast one")
    plan.add_argument("--soc", type=_pct, default=None, metavar="PCT",
                      help="assume every battery is at this SoC now (default: each "
                      "[[island.batteries]] soc_pct)")
    plan.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    plan.add_argument("--no-odds", action="store_true", help="skip the survival odds and "
                      "operating reserve (controller/island_day/trust.py)")
    plan.set_defaults(func=plan_command)
    island_init_cmd.register(actions)

    report = actions.add_parser(
        "report", help="after an island day: what happened, against the plan (HTML, charts, "
        "JSON)")
    report.add_argument("config", type=Path)
    report.add_argument("--ledger", type=Path, metavar="PATH",
                        help="the ledger to read (default: the config's [storage] ledger)")
    report.add_argument("--plan", type=Path, metavar="PLAN.json",
                        help="a plan saved from 'island plan --json', drawn against the day")
    report.add_argument("--from", dest="from_", metavar="ISO",
                        help="window start, ISO 8601 (site time without an offset) or Unix "
                        "seconds (default: the ledger's last islanded intervals, else its "
                        "last 24 h)")
    report.add_argument("--to", metavar="ISO", help="window end, same forms; one of --from "
                        "and --to alone means 24 h")
    report.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="directory for report.html, summary.json and the PNG charts")
    report.set_defaults(func=report_command)

    rehearse = actions.add_parser(
        "rehearse", help="rehearse the island day on the simulated coop with the real "
        "controller, in about a minute, and write its report")
    rehearse.add_argument("--hours", type=_island_hours, default=None,
                          help="island length in simulated hours, up to 48 (default 24, or "
                          "the scenario's)")
    rehearse.add_argument("--speed", type=float, default=None,
                          help="simulated seconds per wall second (default 1440: a day a "
                          "minute; 120 with --test-island)")
    rehearse.add_argument("--start", default=None, metavar="HH:MM",
                          help="when the island starts on the simulated clock, UTC (default "
                          "00:00, or the scenario's); the cloudy afternoon is 13:00-17:00, "
                          "the second battery drops out at 14:00")
    rehearse.add_argument("--out", type=Path, default=Path("var/rehearsal"), metavar="DIR",
                          help="directory for the ledger, plan, report and rehearsal.json "
                          "(default var/rehearsal; its ledger is started afresh)")
    rehearse.add_argument("--households", type=int, default=10,
                          help="simulated households, 2-16 (default 10)")
    rehearse.add_argument("--no-events", action="store_true",
                          help="a clear day with every battery answering")
    rehearse.add_argument("--scenario", metavar="NAME", default=None,
                          help="a scenario of the library (controller/island_day/scenarios.py); "
                          "'list' prints them")
    rehearse.add_argument("--test-island", type=_duration, default=None, metavar="DURATION",
                          help="island for this long on the controller's clock (e.g. 5m, "
                          "90s, 1h), then reconnect; --speed defaults to 120 with it")
    rehearse.set_defaults(func=rehearse_command)


def _hours(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 168:
        raise argparse.ArgumentTypeError(f"expected whole hours from 1 to 168, got {text!r}")
    return int(text)


def _duration(text: str) -> float:
    """``5m``, ``90s``, ``1h`` (or plain seconds) → hours, more than 0 and at most 48."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    unit = units.get(text[-1:].lower()) if text else None
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1.0)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 48 * 3600:
        raise argparse.ArgumentTypeError(f"expected a duration such as 5m, 90s or 1h, more "
                                         f"than 0 and at most 48 h, got {text!r}")
    return seconds / 3600.0


_island_hours = number_in(0.0, 48.0, "hours", "more than 0 and at most 48 h", low_open=True)
_pct = number_in(0.0, 100.0, "a percentage", "0 to 100")


def parse_start(text: str, tz: tzinfo) -> datetime:
    """``--start``: an aware datetime on the quarter hour; naive input is the site's time."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start = {text!r}: expected ISO 8601 such as 2026-06-21T06:00 "
                         "or 2026-06-21T06:00+02:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when - timedelta(minutes=when.minute % 15, seconds=when.second,
                            microseconds=when.microsecond)


def _history(config: CoopConfig, coop: Coop, start: datetime,
             ) -> tuple[History | None, str | None]:
    """The ledger's hourly load per member, or ``None`` and why not."""
    import sqlite3

    from controller.island.forecast import read_history
    from controller.ledger import LedgerMissingError, LedgerReader

    path = config.storage.ledger
    try:
        reader = LedgerReader(path)
    except LedgerMissingError:
        return None, f"no ledger at {path}: every member's load is the H25 profile"
    except sqlite3.DatabaseError as exc:
        return None, f"[storage] ledger = {path}: not readable ({exc}); using H25 profiles"
    print(f"island plan: load history from ledger {path}", file=sys.stderr)
    return read_history(reader, coop.member_ids, start, coop.site.tzinfo), None


def plan_command(args: argparse.Namespace) -> int:
    """Print the island plan; 2 on bad input."""
    from controller.config import ConfigError
    from controller.island.device_facts import read_battery_facts_sync
    from controller.island.forecast import load_forecast_w, pv_forecast_w
    from controller.island.plan import Problem, plan_island
    from controller.island.site import load_island_config, resolve
    from controller.island_day.array_estimate import estimate_arrays
    from controller.island_day.plan_render import Context, render_text, to_dict
    from controller.island_day.trust import with_black_start

    try:
        config, site, island = load_island_config(args.config)
        start = parse_start(args.start, site.tzinfo)
        # A PV member without [[site.arrays]]: its array from the ledger's PV history.
        site, estimates, no_array = estimate_arrays(config, site, config.storage.ledger, start)
        # What [[island.batteries]] leaves out (capacity, SoC, limits) the batteries say.
        facts = read_battery_facts_sync(config, island)
        coop = resolve(config, site, island, str(args.config), facts, no_array)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"island plan: {exc}", file=sys.stderr)
        return 2
    steps = args.hours * 4
    history, note = _history(config, coop, start)
    load, from_history = load_forecast_w(start, steps, site.tzinfo, coop.annual_kwh, history)
    pv = pv_forecast_w(site, coop.member_ids, start, steps, args.scenario)
    stored = coop.stored_wh
    if args.soc is not None:
        stored = coop.fleet.capacity_wh * args.soc / 100.0
    problem = Problem.from_shares(pv, load, coop.critical_share, coop.essential_share,
                                  coop.fleet, stored, coop.battery_member,
                                  member_ids=coop.member_ids, start_ts=start.timestamp())
    problem = with_black_start(problem, config, coop, island.black_start_pct)
    problem = physics_options(problem, config, coop, island)
    plan = plan_island(problem)
    ctx = Context(coop.name, site.tzinfo, site.tz, args.scenario,
                  [m for m, h in zip(coop.member_ids, from_history, strict=True) if h])
    trust = None if args.no_odds else _assess(plan, config, coop, start, island, steps)
    stated = [e.statement() for e in estimates]
    if args.json:
        out = to_dict(plan, ctx)
        out["notes"] = stated + ([note] if note else [])
        if trust is not None:
            from controller.island_day.trust import to_json
            out.update(to_json(trust, plan, site.tzinfo))
        json.dump(out, sys.stdout)
        print()
    else:
        sys.stdout.write(render_text(plan, ctx))
        if trust is not None:
            from controller.island_day.trust import render_text as trust_text
            sys.stdout.write(trust_text(trust, plan, site.tzinfo))
        for line in [*stated, *([note] if note else [])]:
            print(f"\nNote: {line}")
    return 0


def physics_options(problem: Problem, config: CoopConfig, coop: Coop,
                    island: IslandConfig) -> Problem:
    """The plan keeps the operating reserve on the grid-formers and, with AC-coupled PV,
    the grid-formers' charge ceiling (issue 21.2, 21.3)."""
    import numpy as np

    from controller.island.ac_coupling import coupling
    from controller.island_day.trust import grid_forming_mask

    gf = grid_forming_mask(config, coop)
    ceiling = None
    if coupling(config).pv_va > 0:
        cap = coop.fleet.capacity_wh
        ceiling = np.where(gf, island.ac_charge_ceiling_pct / 100.0 * cap, cap)
    return replace(problem, grid_forming=gf, reserve_load_pct=island.reserve_load_pct,
                   reserve_pv_pct=island.reserve_pv_pct, charge_ceiling_wh=ceiling)


def _assess(plan: Plan, config: CoopConfig, coop: Coop, start: datetime,
            island: IslandConfig, steps: int) -> Assessment:
    """Survival odds (weather from the ledger's season, else synthetic) and reserve."""
    import contextlib
    import sqlite3

    from controller.island.forecast import pv_forecast_w
    from controller.island_day.trust import assess, grid_forming_mask, medical_w
    from controller.island_day.weather import ledger_weather, synthetic_weather
    from controller.ledger import LedgerMissingError, LedgerReader

    weather = None
    # No ledger, or one that cannot be read: the synthetic days (the plan notes the ledger).
    with contextlib.suppress(LedgerMissingError, OSError, ValueError, sqlite3.DatabaseError):
        weather = ledger_weather(LedgerReader(config.storage.ledger), coop.site,
                                 coop.member_ids, start, steps)
    if weather is None:
        weather = synthetic_weather(coop.site, start, steps)
    clear = pv_forecast_w(coop.site, coop.member_ids, start, steps, "clear")
    local = start.astimezone(coop.site.tzinfo)
    return assess(plan, clear, weather, grid_forming_mask(config, coop), island,
                  local.hour + local.minute / 60.0, medical_w(config, coop.member_ids))


def report_command(args: argparse.Namespace) -> int:
    """Write the island report; 2 on bad input."""
    from controller.config import ConfigError, load_config
    from controller.island_day.report import main

    if args.ledger is None:
        # Say which ledger is read ([storage] ledger is relative to the config file); a bad
        # config is left to main, which names every problem.
        with contextlib.suppress(ConfigError):
            print(f"island report: ledger {load_config(args.config).storage.ledger}",
                  file=sys.stderr)
    return main(args.config, args.out, args.ledger, args.plan, args.from_, args.to)


def rehearse_command(args: argparse.Namespace) -> int:
    """Run the rehearsal and print its outcome; 2 on bad input, 1 if it could not run, 3
    if it ran and a verdict failed (it never islanded, a tier its plan held was shed, the
    grid-former reached its floor: :mod:`controller.island_day.rehearse_verdicts`)."""
    import asyncio

    from controller.island_day import scenarios
    from controller.island_day.rehearse import RehearsalError, RehearsalOptions, rehearse
    from controller.island_day.rehearse_report import render_text
    from controller.ledger.lock import LedgerLockedError
    from devices.modbus.transport import quiet_pymodbus

    name, test_island = getattr(args, "scenario", None), getattr(args, "test_island", None)
    if name == "list":
        sys.stdout.write(scenarios.listing())
        return 0
    speed = args.speed if args.speed is not None else (120.0 if test_island else 1440.0)
    if not 2 <= args.households <= 16 or speed <= 0:
        print("island rehearse: --households from 2 to 16 and a --speed above 0, please",
              file=sys.stderr)
        return 2
    # pymodbus logs a late answer to a timed-out request as a warning; the controller
    # already counts it as that device's error (rehearsal.json: device_errors).
    quiet_pymodbus()
    try:
        scenario = scenarios.get(name) if name else None
    except ValueError as exc:
        print(f"island rehearse: {exc}", file=sys.stderr)
        return 2
    hours = test_island or args.hours or (scenario.hours if scenario else 24.0)
    start = args.start or (scenario.start if scenario else "00:00")
    options = RehearsalOptions(hours=hours, speed=speed, start=start, out=args.out,
                               households=args.households,
                               scenario=name)
    if args.no_events:
        options = replace(options, cloud=None, dropout_hour=None, scenario="clear")
    try:
        result = asyncio.run(rehearse(options))
    except ValueError as exc:
        print(f"island rehearse: {exc}", file=sys.stderr)
        return 2
    except (RehearsalError, LedgerLockedError) as exc:
        print(f"island rehearse: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(render_text(result))
    return 0 if result.summary["verdicts"]["ok"] else 3
