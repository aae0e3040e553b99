"""``commonwatt demo --federation N``: N simulated coops sharing surplus over bridged brokers.

Each coop gets its own simulated households (odd-numbered coops are blocks
of flats without PV, so some coops have surplus and others need it), its own
mosquitto on 127.0.0.1 (spawned, open: a demo), bridged to every other as
``federation bridge-conf`` writes it, its own controller, ledger and API (on
``--port``, ``--port`` + 1, ...), and one shared charter with 60 s intervals.
Everything lives under ``--data-dir``/federation and starts fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from controller.config import parse_config
from controller.demo import DemoOptions, sim_day_start
from controller.federation.bridge import Peer, mosquitto_conf
from controller.federation.offers import generate_key, private_pem, public_b64
from controller.runtime import Runtime
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop, free_port
from simulators.demo_config import coop_toml
from simulators.household import demo_households

STEP = 60


class DemoError(RuntimeError):
    """The federation demo cannot start (the message says why)."""


def charter_text(ids: list[str], me: str, keys: dict[str, str], ports: dict[str, int],
                 key_file: Path) -> str:
    """The charter as coop ``me`` holds it (connections sized for ten households each)."""
    lines = ["[federation]", 'name = "demo valley"', 'rule = "prorata"', f"interval_s = {STEP}",
             "", "[self]", f'id = "{me}"', f'private_key = "{key_file}"',
             f'broker = "127.0.0.1:{ports[me]}"']
    for c in ids:
        lines += ["", "[[members]]", f'id = "{c}"', f'public_key = "{keys[c]}"',
                  "expires = 2099-01-01T00:00:00Z", f'broker = "127.0.0.1:{ports[c]}"',
                  "connection_kw = 250"]
    return "\n".join(lines) + "\n"


def _wait_port(port: int, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        import time

        time.sleep(0.05)
    raise DemoError(f"mosquitto did not start on 127.0.0.1:{port}")


async def run_federation_demo(options: DemoOptions, n: int, stop: asyncio.Event | None = None,
                              ready: asyncio.Event | None = None) -> None:
    """Run ``n`` coops until ``stop`` is set (or Ctrl-C / SIGTERM when ``stop`` is None)."""
    if n < 2:
        raise DemoError(f"--federation {n}: a federation needs at least 2 coops")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise DemoError("--federation needs mosquitto (apt install mosquitto): each coop "
                        "runs its own broker, bridged to the others")
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    root = options.data_dir / "federation"
    shutil.rmtree(root, ignore_errors=True)  # always fresh: N coops and their brokers
    ids = [f"coop-{k + 1}" for k in range(n)]
    ports = {c: free_port() for c in ids}
    secret = {c: generate_key() for c in ids}
    public = {c: public_b64(k) for c, k in secret.items()}
    clock = SimClock(start_s=sim_day_start(options.start_hour), speed=options.speed)
    procs: list[subprocess.Popen[bytes]] = []
    coops: list[SimulatedCoop] = []
    tasks: list[asyncio.Task[None]] = []
    runtimes: list[Runtime] = []
    try:
        for c in ids:
            d = root / c
            d.mkdir(parents=True)
            (d / "mosquitto.conf").write_text(mosquitto_conf(
                c, ports[c], [Peer(p, "127.0.0.1", ports[p]) for p in ids if p != c],
                restart_s=1, persistence=False))
            key_file = d / f"{c}.key"
            key_file.touch(mode=0o600)
            key_file.write_bytes(private_pem(secret[c]))
            (d / "federation.toml").write_text(charter_text(ids, c, public, ports, key_file))
            procs.append(subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for c in ids:
            _wait_port(ports[c])
        for k, c in enumerate(ids):
            d = root / c
            homes = demo_households(options.households, seed=7 + k)
            if k % 2:  # a block of flats: no roofs of its own, it needs the others' surplus
                homes = [dataclasses.replace(h, pv_kwp=0.0) for h in homes]
            mqtt = ("127.0.0.1", ports[c])
            coop = SimulatedCoop(homes, clock, mqtt=mqtt)
            await coop.start()
            coop.run_in_background()
            coops.append(coop)
            text = coop_toml(coop, d / "ledger.sqlite", options.api_port + k, mqtt,
                             settlement_s=STEP)
            text += f'\n[federation]\ncharter = "{d / "federation.toml"}"\n'
            (d / "coop.toml").write_text(text, encoding="utf-8")
            config = parse_config(text, str(d / "coop.toml"))
            runtime = Runtime(config, clock.now,
                              nominal_dt_s=config.controller.cycle_s * options.speed)
            runtimes.append(runtime)
            tasks.append(asyncio.create_task(runtime.run(stop)))
        for runtime in runtimes:
            await runtime.wait_until_serving()
        print(f"Commonwatt federation demo: {n} coops of {options.households} households, "
              f"{STEP} s intervals, {options.speed:g}x speed", flush=True)
        for k, c in enumerate(ids):
            kind = "flats, no PV" if k % 2 else "houses with PV"
            print(f"  {c} ({kind}): API http://127.0.0.1:{options.api_port + k}/  broker "
                  f"127.0.0.1:{ports[c]}", flush=True)
        print(f"  status: commonwatt federation status {root / ids[0] / 'coop.toml'}",
              flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        for coop in coops:
            await coop.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        print("Commonwatt federation demo stopped.", flush=True)
