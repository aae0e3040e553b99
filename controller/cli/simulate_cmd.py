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
    sim.add_argument("--dispatch", choices=["greedy", "plan"], default="greedy",
                     help="greedy per-cycle dispatch (default), or the rolling plan, reported "
                          "beside greedy and the copper-plate LP bound")
    sim.add_argument("--forecast", choices=["perfect", "history"], default="history",
                     help="--dispatch plan: what the plan believes: the series itself, or each "
                          "member's mean at that time of day over the past week (default)")
    sim.add_argument("--replan-min", type=float, default=15.0,
                     help="--dispatch plan: minutes between plans (default 15)")
    sim.add_argument("--horizon-h", type=float, default=24.0,
                     help="--dispatch plan: hours each plan looks ahead (default 24)")
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
    if args.dispatch == "plan" and args.island:
        print("--dispatch plan is the on-grid plan; an island follows the island plan "
              "(commonwatt island plan)", file=sys.stderr)
        return 2
    report = run_study(study, args.policy, args.island)
    if args.dispatch == "plan":
        from controller.planning.offline import run_planned, side_by_side

        greedy = report
        report = run_planned(study, args.policy, args.forecast, args.replan_min, args.horizon_h)
        report["comparison"] = side_by_side(study, greedy, report)
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
    if "comparison" in report:
        _print_comparison(report)
    return 0


def _print_comparison(report: dict) -> None:
    """The plan beside greedy, both against the copper-plate bound."""
    c, p = report["comparison"], report["plan"]
    print(f"rolling plan: {p['forecast']} forecast, re-plan every {p['replan_min']:g} min over "
          f"{p['horizon_h']:g} h, {p['solves']} solves ({p['failures']} failed), median solve "
          f"{p['median_solve_s']} s")
    print(f"{'dispatch':>10}  {'import':>10}  {'liberated':>10}  {'export':>10}  "
          f"{'/ bound':>10}")
    for name in ("greedy", "plan"):
        row = c[name]
        print(f"{name:>10}  {row['import_kwh']:>10.3f}  {row['liberated_kwh']:>10.3f}  "
              f"{row['export_kwh']:>10.3f}  {_cell(row['ratio_to_bound']).strip():>10}")
    print(f"{'LP bound':>10}  {c['bound_import_kwh']:>10.3f}  (least import with perfect "
          f"foresight on a copper plate)")
    print(f"the plan imports {c['plan_saved_import_kwh']:.3f} kWh less than greedy")
