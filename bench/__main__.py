"""``python -m bench [dispatch] [poll] [ledger] [island] [federation] [--quick]``: benchmarks, JSON.

``ledger`` runs only when named: at its default size it builds a ~2 GB ledger
(a year of 1,000 members) under /tmp, which takes several minutes. ``island``
too: it plans a day for 100 and 1,000 members, three times each (about a minute).
``federation``: one settlement interval of 100 coops × 1,000 households (seconds), then
10 coops on 10 real bridged mosquittos (about a minute; 3 coops with --quick).
``soak`` too: one controller against 1,000 simulated devices for ``--minutes`` (10).
``mqtt``: what the MQTT reader's limits cost per message, against the bare parser.
``api`` too: it builds a week of 10,000 members and a year of 1,000 (about 6 minutes
on a quiet machine) and drives the API with them, with a controller running behind it
and over the ledger alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("which", nargs="*",
                        metavar="dispatch|poll|ledger|island|federation|soak|api|mqtt",
                        help="benchmarks to run (default: dispatch and poll)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--members", type=int, default=None,
                        help="ledger: members (default 1000; 50 with --quick)")
    parser.add_argument("--days", type=int, default=None,
                        help="ledger: days of 15-min intervals (default 365; 7 with --quick)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="soak: how long (default 10)")
    parser.add_argument("--devices", type=int, default=1000,
                        help="soak: simulated devices, two per household (default 1000)")
    args = parser.parse_args(argv)
    which = args.which or ["dispatch", "poll"]
    unknown = sorted(set(which) - {"dispatch", "poll", "ledger", "island", "federation",
                                  "soak", "api", "mqtt"})
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; "
                     "choose from: dispatch, poll, ledger, island, federation, soak, api, mqtt")
    report: dict = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                                "cpus": os.cpu_count()}}
    if "dispatch" in which:
        from bench.dispatch_bench import run as run_dispatch

        report["dispatch"] = run_dispatch(args.quick)
        from bench.plan_bench import run as run_plan

        report["dispatch"]["plan"] = run_plan(args.quick)
    if "mqtt" in which:
        from bench.mqtt_guard_bench import run as run_mqtt

        report["mqtt"] = run_mqtt(args.quick)
    if "poll" in which:
        from bench.poll_bench import run as run_poll

        report["poll"] = run_poll(args.quick)
    if "ledger" in which:
        from bench.ledger_bench import run as run_ledger

        members = args.members or (50 if args.quick else 1000)
        days = args.days or (7 if args.quick else 365)
        report["ledger"] = run_ledger(members, days)
    if "island" in which:
        from bench.island_bench import run as run_island

        report["island"] = run_island(args.quick)
    if "federation" in which:
        from bench.federation_bench import run as run_federation

        report["federation"] = run_federation(args.quick)
        from bench.federation_brokers_bench import run as run_brokers

        report["federation_brokers"] = (run_brokers(3, 2, 1) if args.quick else run_brokers())
    if "soak" in which:
        from bench.soak_bench import run as run_soak

        report["soak"] = run_soak(args.minutes, args.devices)
    if "api" in which:
        from bench.api_bench import run as run_api

        report["api"] = run_api(args.quick)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
