"""The installer, coordinator, household and operator guides, followed as written on the
simulated coop: every command in their ``sh`` blocks is run by bash from a directory that
is not the coop's, with an absolute config path in an empty directory, and must exit 0.
The guides' own ``export`` lines for the coop's path, its addresses, the API, the unit and
the backups are replaced by this test's; ``commonwatt run`` is started and left running
for the commands after it. The coop's breaker is played as its grid-former would: opened
when the controller goes off the grid, closed when it returns."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.household import demo_households
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
#: Variables the guides ask the reader to set: this test sets them to its own coop.
PROVIDED = ("COOP", "HOUSEHOLDS", "API", "UNIT", "BACKUPS")


def commands(guide: str) -> list[str]:
    """Every command line of the guide's ``sh`` blocks, in order."""
    text = (ROOT / "docs" / guide).read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


class Coop:
    """The simulated coop in its own thread, with a breaker the test opens and closes."""

    def __init__(self) -> None:
        self.ready, self.stop = threading.Event(), threading.Event()
        self.grid = True
        self.coop: SimulatedCoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.coop = SimulatedCoop(demo_households(3), SimClock(speed=0))
        await self.coop.start()
        self.ready.set()
        while not self.stop.is_set():
            if self.coop.grid_connected != self.grid:
                self.coop.grid_connected = self.grid  # the grid-former's breaker
            self.coop.step()  # registers (701 ConnSt among them) follow, on its own loop
            await asyncio.sleep(0.05)
        await self.coop.stop()


@pytest.fixture()
def coop() -> Iterator[Coop]:
    c = Coop()
    c.thread.start()
    assert c.ready.wait(30)
    try:
        yield c
    finally:
        c.stop.set()
        c.thread.join(30)


def island_state(api: str) -> str:
    with urllib.request.urlopen(f"{api}/api/v1/island", timeout=10) as answer:
        return str(json.loads(answer.read())["state"])


def play_breaker(coop: Coop, api: str, stop: threading.Event) -> None:
    """Open the breaker when the controller goes off the grid, close it when it returns."""
    while not stop.is_set():
        try:
            state = island_state(api)
        except OSError:
            state = ""
        if state == "GOING_OFF_GRID":
            coop.grid = False
        elif state == "RETURNING":
            coop.grid = True
        time.sleep(0.1)


def wait_for_islanded_interval(ledger: Path, timeout_s: float = 150) -> None:
    """Until the ledger has committed an interval with islanded time (the day after)."""
    from controller.ledger import LedgerReader

    deadline = time.monotonic() + timeout_s
    while LedgerReader(ledger).islanded_seconds() <= 0:
        assert time.monotonic() < deadline, "no islanded interval committed"
        time.sleep(1)


def test_the_installer_and_coordinator_guides_work_as_written(coop: Coop,
                                                              tmp_path: Path) -> None:
    assert coop.coop is not None
    home, elsewhere = tmp_path / "etc-commonwatt", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()  # the shell is never in the coop's directory
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "COOP": str(home / "coop.toml"), "PORT": str(port),
           "UNIT": str(tmp_path / "commonwatt.service"), "BACKUPS": str(tmp_path / "backups"),
           "API": f"http://127.0.0.1:{port}",
           "HOUSEHOLDS": " ".join(f"{h.server.host}:{h.server.port}"
                                  for h in coop.coop.households)}
    controller: subprocess.Popen[str] | None = None
    stop_breaker = threading.Event()
    breaker = threading.Thread(target=play_breaker, args=(coop, env["API"], stop_breaker),
                               daemon=True)
    ran: list[str] = []
    try:
        for guide in ("installer.md", "coordinator.md", "household.md", "operator.md"):
            for line in commands(guide):
                name = re.match(r"export (\w+)=", line)
                if name and name.group(1) in PROVIDED:
                    continue  # the reader's own values: this coop's are set
                if name:  # a value the next commands use (a token)
                    out = subprocess.run(["bash", "-c", f"set -eo pipefail; {line}; "
                                          f"printf %s \"${name.group(1)}\""], env=env,
                                         cwd=elsewhere, capture_output=True, text=True,
                                         timeout=300)
                    assert out.returncode == 0 and out.stdout, (guide, line, out.stderr)
                    env[name.group(1)] = out.stdout
                elif line.startswith("commonwatt run "):
                    controller = subprocess.Popen(["bash", "-c", f"exec {line}"], env=env,
                                                  cwd=elsewhere, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)
                    first = controller.stdout.readline()
                    assert "Commonwatt running" in first, first + controller.stdout.read()
                    assert str(home / "ledger.sqlite") in first  # beside the config
                    breaker.start()
                else:
                    if "island report" in line:
                        wait_for_islanded_interval(home / "ledger.sqlite")
                    out = subprocess.run(["bash", "-c", f"set -eo pipefail; {line}"],
                                         env=env, cwd=elsewhere, capture_output=True,
                                         text=True, timeout=300)
                    assert out.returncode == 0, (guide, line, out.stdout, out.stderr)
                    if "/api/v1/island/command" in line:
                        # the island the guide asked for: the grid-former opens, and
                        # the public status says so
                        deadline = time.monotonic() + 60
                        while island_state(env["API"]) != "OFF_GRID":
                            assert time.monotonic() < deadline, "the coop never islanded"
                            time.sleep(0.2)
                    if "/api/v1/island/return" in line:
                        deadline = time.monotonic() + 60
                        while island_state(env["API"]) != "ON_GRID":
                            assert time.monotonic() < deadline, "the coop never returned"
                            time.sleep(0.2)
                ran.append(line)
                if line.startswith("commonwatt init "):
                    # The installer's edit of the file: minute intervals, so that the
                    # island is booked while the test waits (the default is 15 min).
                    with (home / "coop.toml").open("a") as f:
                        f.write("\n[ledger]\nsettlement_s = 60\n")
    finally:
        stop_breaker.set()
        if controller is not None:
            controller.send_signal(signal.SIGINT)
            controller.communicate(timeout=60)
    assert any(line.startswith("commonwatt init") for line in ran)
    assert any("island report" in line for line in ran)
    assert (home / "island-report" / "report.html").is_file()
    assert any("--role member --member h01 --link" in line for line in ran)
    assert (tmp_path / "commonwatt.service").is_file() and any(
        p.name[:8].isdigit() for p in (tmp_path / "backups").iterdir())  # taken while running
    assert not list(elsewhere.iterdir())  # nothing landed where the shell was
