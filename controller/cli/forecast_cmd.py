"""``commonwatt forecast calibrate CONFIG``: the forecast's walk-forward score on the ledger."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``forecast`` and its actions to the top-level subparsers."""
    forecast = sub.add_parser("forecast", help="forecasts for the rolling plan")
    actions = forecast.add_subparsers(dest="forecast_command", metavar="ACTION", required=True)
    cal = actions.add_parser("calibrate", help="walk-forward MAE, RMSE and skill against "
                             "persistence over the ledger's history, per member and coop")
    cal.add_argument("config", type=Path)
    cal.add_argument("--json", action="store_true", help="print JSON")
    cal.set_defaults(func=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    """Print the report; 2 when the config or the ledger cannot be used."""
    from controller.cli.common import load_or_report
    from controller.ledger.reader import LedgerMissingError
    from controller.planning.calibrate import calibrate

    config = load_or_report(args.config)
    if config is None:
        return 2
    try:
        report = calibrate(config.storage.ledger, config.site)
    except (LedgerMissingError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['days']} days of {report['interval_s']} s intervals; forecast: "
          f"{report['forecast']}; against {report['baseline']} (MAE, RMSE in W)")
    if "pv_sky" in report:
        print(f"PV_SKY: {report['forecast_pv_sky']}")
    for kind in [k for k in ("pv", "pv_sky", "load") if k in report]:
        print(f"{kind.upper():>10}  {'mae':>9}  {'rmse':>9}  {'persist':>9}  {'skill':>7}")
        rows = [*report[kind]["members"].items(), ("COOP", report[kind]["coop"])]
        for who, r in rows:
            skill = "-" if r["skill"] is None else f"{r['skill']:.3f}"
            print(f"{who:>10}  {r['mae_w']:>9.1f}  {r['rmse_w']:>9.1f}  "
                  f"{r['persistence_mae_w']:>9.1f}  {skill:>7}")
    return 0
