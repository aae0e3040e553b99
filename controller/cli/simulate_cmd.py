"""``commonwatt simulate``: what-if study over CSV data (the work is in controller.simulate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the top-level subparsers."""
    sim = sub.add_parser("simulate", help="what-if study: batched dispatch over CSV data")
    sim.add_argument("--fleet", type=Path, required=True, metavar="FLEET.csv",
                     help="one row per member: battery size, limits, SoC, efficiency")
    sim.add_argument("--series", type=Path, required=True, metavar="SERIES.csv",
                     help="timestamp, member, pv_w, load_w (mean W per step)")
    sim.add_argument("--policy", choices=["prorata", "equal", "static", "tiers"],
                     default="prorata", help="sharing policy (default prorata)")
    sim.add_argument("--island", action="store_true", help="no grid: shed and curtail instead")
    sim.add_argument("--json", action="store_true", help="print JSON")
    sim.set_defaults(func=simulate_command)


def _cell(value: float | None) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.3f}"


def simulate_command(args: argparse.Namespace) -> int:
    """Print the study's per-member and coop totals; 2 if an input file is unusable."""
    from controller.simulate import InputError, load_study, run_study

    try:
        study = load_study(args.fleet, args.series, args.policy)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 2
    report = run_study(study, args.policy, args.island)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    coop = report["coop"]
    print(f"{len(report['members'])} members, {coop['ticks']} steps of {coop['step_s']:g} s, "
          f"policy {args.policy}{', islanded' if args.island else ''}")
    header = ("member", "load", "served", "shed", "liberated", "from_peers", "to_peers",
              "from_grid", "to_grid", "curtailed", "self_suff")
    print("  ".join(f"{h:>10}" for h in header))
    for member, m in [*report["members"].items(), ("COOP", coop)]:
        cells = [m[h] for h in header[1:-1]] + [m["self_sufficiency"]]
        print("  ".join([f"{member:>10}"] + [_cell(v) for v in cells]))
    print(f"self-sufficiency {coop['self_sufficiency']} (liberated / load: shed load counts "
          f"against it), Jain fairness {coop['jain_fairness']} (energies in kWh)")
    return 0
