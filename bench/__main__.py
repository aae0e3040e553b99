"""``python -m bench [dispatch] [poll] [island] [--quick]``: run benchmarks, print one JSON object.

``island`` runs only when named: it plans a day for 100 and 1,000 members,
three times each (about a minute).
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
    parser.add_argument("which", nargs="*", metavar="dispatch|poll|island",
                        help="benchmarks to run (default: dispatch and poll)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    which = args.which or ["dispatch", "poll"]
    unknown = sorted(set(which) - {"dispatch", "poll", "island"})
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; "
                     "choose from: dispatch, poll, island")
    report: dict = {"machine": {"python": platform.python_version(), "numpy": np.__version__,
                                "cpus": os.cpu_count()}}
    if "dispatch" in which:
        from bench.dispatch_bench import run as run_dispatch

        report["dispatch"] = run_dispatch(args.quick)
    if "poll" in which:
        from bench.poll_bench import run as run_poll

        report["poll"] = run_poll(args.quick)
    if "island" in which:
        from bench.island_bench import run as run_island

        report["island"] = run_island(args.quick)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
