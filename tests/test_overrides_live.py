"""A coordinator's overrides through real HTTP, applied by the controller to the simulated
coop over Modbus: one takes effect, a floor still wins, one lapses at its end time, one is
ended early, and the public and a member cannot create one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from controller.governance import TokenStore
from controller.governance.audit import AuditLog
from controller.ledger import LedgerReader
from tests.coop_harness import Harness, start_harness
from tests.test_auth import _serve

H01, H03 = 0, 2  # members with a battery in the demo coop


class _Live:
    """The API's view of a harness controller (what Runtime provides)."""

    cycle_s = 30.0
    settlement_s = 300

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.controller = harness.controller

    def grid_supervisor(self):
        return self.controller.grid

    def now(self) -> float:
        return self.h.clock.now()

    def devices(self):
        return self.controller.poller.health()

    def last_cycle_age_s(self):
        return 0.1

    def ledger_status(self):
        return self.controller.writer.status()

    def unwritten_wh(self, after_ts):
        return {}

    def open_interval_start(self):
        return None


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_an_override_takes_effect_a_floor_wins_and_it_lapses_at_its_end(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    seen: dict[str, object] = {}

    async def go() -> None:
        h = await start_harness(tmp_path, start_hour=12.0, settlement_s=300)
        tokens = TokenStore.beside(ledger)
        later = time.time() + 3600
        _, coordinator = tokens.create("coordinator", None, "Ada", later)
        _, member = tokens.create("member", "h01", "Bo", later)
        try:
            await h.step()
            app = create_app(LedgerReader(ledger), live=_Live(h), config=h.config)
            with _serve(app) as (url, _):
                api = httpx.Client(base_url=url, timeout=10)
                body = {"kind": "battery_setpoint", "member": "h01", "power_w": -2500,
                        "minutes": 5}
                seen["public"] = api.post("/api/v1/overrides", json=body).status_code
                seen["member"] = api.post("/api/v1/overrides", json=body,
                                          headers=_bearer(member)).status_code
                seen["no_end"] = api.post("/api/v1/overrides", headers=_bearer(coordinator),
                                          json={**body, "minutes": None})
                seen["too_long"] = api.post("/api/v1/overrides", headers=_bearer(coordinator),
                                            json={**body, "minutes": 25 * 60})
                made = api.post("/api/v1/overrides", json=body, headers=_bearer(coordinator))
                assert made.status_code == 201, made.text
                charge = made.json()
                assert charge["end_ts"] == pytest.approx(h.clock.now() + 300)
                # h03 at its floor: an override asking it to discharge is clamped to 0 W
                physics = h.coop.physics
                physics.stored_wh[H03] = physics.soc_min_wh[H03]
                floor = api.post("/api/v1/overrides", headers=_bearer(coordinator), json={
                    "kind": "battery_setpoint", "member": "h03", "power_w": 4000,
                    "minutes": 60}).json()
                report = await h.step()
                seen["charge_w"] = float(report.setpoints_w[H01])
                seen["battery_cmd_w"] = float(physics.setpoint_w[H01])
                seen["floor_w"] = float(report.setpoints_w[H03])
                listed = api.get("/api/v1/overrides", headers=_bearer(coordinator)).json()
                seen["listed"] = {o["id"]: (o["end_ts"], o["ended_ts"]) for o in listed}
                # ended early by the coordinator
                ended = api.delete(f"/api/v1/overrides/{floor['id']}",
                                   headers=_bearer(coordinator))
                seen["ended"] = ended.json()
                seen["ended_again"] = api.delete(f"/api/v1/overrides/{floor['id']}",
                                                 headers=_bearer(coordinator)).status_code
                after: list[float] = []
                while h.clock.now() < charge["end_ts"] + 60:
                    report = await h.step()
                    after.append(float(report.setpoints_w[H01]))
                seen["after"] = after
                listed = api.get("/api/v1/overrides", headers=_bearer(coordinator)).json()
                seen["lapsed"] = next(o for o in listed if o["id"] == charge["id"])
        finally:
            await h.close()

    asyncio.run(go())
    assert seen["public"] == 401 and seen["member"] == 403
    assert seen["no_end"].status_code == 422 and "until, minutes" in seen["no_end"].text
    assert seen["too_long"].status_code == 422 and "minutes" in seen["too_long"].text
    # in effect: the dispatch's request replaced, within the battery's 3.3 kW rating
    assert seen["charge_w"] == pytest.approx(-2500.0)
    assert seen["battery_cmd_w"] == pytest.approx(-2500.0, abs=5.0)  # what the battery got
    assert seen["floor_w"] == 0.0, "the SoC floor wins over the override"
    assert all(ended is None for _, ended in seen["listed"].values())
    assert seen["ended"]["ended_by"] == "Ada" and seen["ended_again"] == 404
    after = seen["after"]
    # in force until its end, then the dispatch's own setpoints again
    assert after[0] == pytest.approx(-2500.0) and after[-1] != pytest.approx(-2500.0), after
    lapsed = seen["lapsed"]
    assert lapsed["ended_ts"] == lapsed["end_ts"] and lapsed["ended_by"] == "lapsed"
    actions = [(r["action"], r["who"], r["outcome"]) for r in AuditLog.beside(ledger).rows()]
    assert ("override.create", "Ada", "accepted") in actions
    assert ("override.end", "Ada", "ended") in actions
    assert ("override.lapse", "controller", "lapsed") in actions
    assert AuditLog.beside(ledger).verify().ok
