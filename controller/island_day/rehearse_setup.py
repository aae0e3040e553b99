"""The rehearsal's setup: its config, its held clock, its fresh ledger, its HTTP calls.

Split from :mod:`controller.island_day.rehearse` (which runs the day); see its
docstring for the timing these constants stand for.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path

from controller.governance.local import local_secret_path, read_local_secret
from controller.ledger.lock import WriterLock
from devices.mqtt.access import ANONYMOUS, MqttAccess
from simulators.clock import SimClock
from simulators.coop import SimulatedCoop
from simulators.demo_config import coop_toml

#: Wall seconds per controller cycle in a rehearsal (see controller/island_day/rehearse.py).
CYCLE_S = 0.05
#: Device timeouts in cycles (as in production's 1 s cycles with 5 s and 1 s; the
#: controller scales the staleness to its clock, the request timeout stays wall time):
#: a battery that stops answering costs a cycle its read and its write timeout, which
#: must stay below the controller's MAX_GAP_CYCLES or the whole coop is booked a gap.
STALE_AFTER_CYCLES = 10
REQUEST_TIMEOUT_CYCLES = 2
#: Battery setpoints last this many nominal cycles, on the simulated clock (1 s of wall
#: time at the rehearsal's 0.05 s cycle). The demo's 10 s stood for a seventh of a 72 s
#: cycle (the controller raised it to 5 cycles): a wall stall of 0.25 s on a loaded
#: machine let every battery idle and left the grid-former alone with the evening peak
#: (measured 12 h from 18:00 at 1440x, load average 5 on 2 cores: 124 of 577 cycles
#: missed, 3.05 kWh dropped). 10 cycles still failed at load average 11 (p99 cycle
#: 434 ms, max 560 ms); the rehearsal rehearses the dispatch, not the machine's stalls.
SETPOINT_EXPIRY_CYCLES = 20

class RehearsalError(RuntimeError):
    """The rehearsal could not run (the island was refused, the controller did not start)."""


class HeldClock(SimClock):
    """A :class:`SimClock` that stands still at ``start_s`` until :meth:`release`."""

    held: bool = True

    def now(self) -> float:
        """Simulated time: ``start_s`` while held."""
        return self.start_s + self._offset if self.held else SimClock.now(self)

    def release(self) -> None:
        """Let simulated time run from now on, at ``speed``."""
        self._wall0 = time.monotonic()
        self.held = False


def _request(request: urllib.request.Request) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _headers(ledger: Path) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    secret = read_local_secret(local_secret_path(ledger))
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return headers


def post_local(url: str, body: dict, ledger: Path) -> tuple[int, dict]:
    """POST as the CLI on the controller's host: with the local secret, not a token."""
    return _request(urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                           headers=_headers(ledger)))


def get_local(url: str, ledger: Path) -> tuple[int, dict]:
    """GET as the CLI on the controller's host (with the local secret)."""
    return _request(urllib.request.Request(url, headers=_headers(ledger)))


def rehearsal_toml(coop: SimulatedCoop, ledger: Path, api_port: int, cycle_s: float,
                   mqtt: tuple[str, int] | None = None,
                   mqtt_access: MqttAccess = ANONYMOUS, speed: float = 1440.0) -> str:
    """The demo's TOML for the rehearsal: its cycle, scaled timeouts and setpoint expiry
    (``speed``: simulated seconds per wall second), batteries offered, the smart plugs on
    ``mqtt``."""
    text = coop_toml(coop, ledger, api_port, mqtt, cycle_s=cycle_s, mqtt_access=mqtt_access)
    batteries = sum(1 for h in coop.households if h.battery is not None)
    # In the config's own terms (wall cycles of ``cycle_s``): the controller scales it to
    # the simulated clock (controller/cycle.py), as it does every timeout.
    expiry = max(1, math.ceil(SETPOINT_EXPIRY_CYCLES * cycle_s))
    edits = (("stale_after_s = 5.0\n", f"stale_after_s = {STALE_AFTER_CYCLES * cycle_s:g}\n"
              f"request_timeout_s = {REQUEST_TIMEOUT_CYCLES * cycle_s:g}\n", 1),
             ("setpoint_expiry_s = 10\n", f"setpoint_expiry_s = {expiry}\n", 1),
             ("  reserve_pct = 10\n", "  reserve_pct = 10\n  offered = true\n", batteries))
    for old, new, count in edits:
        if text.count(old) != count:  # the demo's TOML changed under us: say so, loudly
            raise RehearsalError(f"the demo config has {text.count(old)} x {old.strip()!r}, "
                                 f"expected {count}")
        text = text.replace(old, new)
    return text


def fresh_ledger(out: Path) -> Path:
    """``DIR/ledger.sqlite`` afresh (fails fast if a controller runs on it)."""
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / "ledger.sqlite"
    WriterLock(ledger).release()  # fail fast if a controller runs on it
    for old in out.glob("ledger.sqlite*"):
        if not old.name.endswith(".lock"):
            old.unlink()
    return ledger
