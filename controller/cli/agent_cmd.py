"""``commonwatt agent CONFIG``: the edge agent on a household's own small computer.

Reads the household's devices with the coop's drivers, publishes numbered,
timestamped readings to the coop broker (QoS 1), keeps them on disk while the
broker is unreachable, and obeys the coop's expiring setpoints and load
switches, falling back to the safe state when the coop goes silent
(:mod:`controller.agent`). Runs until SIGINT or SIGTERM. Bad config exits 2
with a message naming the field.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``agent`` command."""
    agent = sub.add_parser("agent", help="run the edge agent of one household")
    agent.add_argument("config", type=Path, help="agent configuration (TOML)")
    agent.add_argument("--check", action="store_true",
                       help="validate the configuration and exit")
    agent.set_defaults(func=_agent)


def _agent(args: argparse.Namespace) -> int:
    from controller.agent.config import AgentConfigError, load_agent_config

    try:
        config = load_agent_config(args.config)
    except AgentConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok: member {config.agent.member} of {config.agent.coop}, "
              f"{len(config.devices)} devices, broker {config.agent.broker}")
        return 0
    return asyncio.run(_run(config))


async def _run(config: object) -> int:
    from controller.agent.runner import EdgeAgent

    agent = EdgeAgent(config)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)
    return 0
