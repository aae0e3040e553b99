"""``commonwatt demo`` and ``commonwatt run``: the controller, simulated or on real devices."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from controller.cli.common import host_port, load_or_report, positive, time_of_day


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` and ``run`` to the top-level subparsers."""
    demo = sub.add_parser("demo", help="run a simulated coop, the controller and the API")
    demo.add_argument("--speed", type=positive, default=1.0,
                      help="simulated seconds per real second (default 1)")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument("--households", type=int, default=10, help="how many (default 10)")
    demo.add_argument("--start", type=time_of_day, default=9.0, metavar="HH:MM",
                      help="simulated time of day to start at (default 09:00)")
    demo.add_argument("--mqtt", type=host_port, metavar="HOST:PORT",
                      help="use this MQTT broker instead of the embedded one")
    demo.add_argument("--data-dir", type=Path, default=Path("var/demo"),
                      help="where the demo writes its config and ledger (default var/demo)")
    demo.add_argument("--fresh", action="store_true",
                      help="start a new ledger instead of continuing the one in --data-dir")
    demo.add_argument("--timeseries", metavar="URL", type=_http_url,
                      help="also write the time series to this InfluxDB v2 write API "
                      "(InfluxDB 2, InfluxDB 1.8+, VictoriaMetrics), e.g. http://127.0.0.1:8428")
    demo.add_argument("--federation", type=int, default=None, metavar="N",
                      help="N simulated coops, each with its own mosquitto, bridged into a "
                           "federation (API on --port, --port+1, ...)")
    demo.set_defaults(func=demo_command)

    run = sub.add_parser("run", help="run the controller on a configuration file")
    run.add_argument("config", type=Path)
    run.set_defaults(func=run_command)


def _http_url(text: str) -> str:
    """Argparse type: an http(s) URL (the time-series server's base URL)."""
    if not text.startswith(("http://", "https://")) or '"' in text or " " in text:
        raise argparse.ArgumentTypeError(f"expected a URL such as http://127.0.0.1:8428, "
                                         f"got {text!r}")
    return text


def demo_command(args: argparse.Namespace) -> int:
    """Run the simulated coop, the controller and the API until interrupted."""
    from controller.demo import DemoOptions, run_demo
    from controller.ledger import LedgerLockedError, LedgerSchemaError

    options = DemoOptions(args.speed, args.port, args.households, args.start, args.mqtt,
                          args.data_dir, args.fresh, args.timeseries)
    if args.federation is not None:
        from controller.demo_federation import DemoError, run_federation_demo

        try:
            asyncio.run(run_federation_demo(options, args.federation))
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        asyncio.run(run_demo(options))
    except (LedgerLockedError, LedgerSchemaError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the controller and API on a config until SIGINT or SIGTERM (batteries back to their
    own logic, loads switched off by Commonwatt back on); SIGHUP reloads the config; 2 if the
    config is bad."""
    from controller.backup import scheduled_backups
    from controller.config_checks import machine_problems
    from controller.ledger import LedgerLockedError, LedgerSchemaError
    from controller.runtime import Runtime

    config = load_or_report(args.config)
    if config is None:
        return 2
    problems = machine_problems(config, str(args.config))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runtime = Runtime(config)
        # SIGHUP: reload the config between cycles; an error keeps the running one.
        loop.add_signal_handler(signal.SIGHUP, runtime.request_reload, args.config)
        task = asyncio.create_task(runtime.run(stop))
        # [backup]: the daily checked backup, from the running controller
        backups = asyncio.create_task(scheduled_backups(config, stop))
        await runtime.wait_until_serving()
        print(f"Commonwatt running {len(config.members)} members; "
              f"API on http://{config.api.host}:{config.api.port}/; "
              f"ledger {config.storage.ledger}", flush=True)
        await task
        await backups

    try:
        asyncio.run(main())
    except (LedgerLockedError, LedgerSchemaError) as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 1
    return 0
