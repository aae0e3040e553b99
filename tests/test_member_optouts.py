"""Overrides checked against the member's own devices, and members' opt-outs (#18: 8, 9).

The API side runs over a stand-in for the running controller: its override store is the
real one, its devices carry the names and kinds the poller gives (no transport is
involved in these checks); the shedder side is the real :class:`ShedPlanner`.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from controller.config import parse_config
from controller.governance import AuditLog
from controller.governance.overrides import OverrideStore, opted_out
from controller.island.shedding import Plug, ShedPlanner, State, SwitchableLoad
from controller.ledger import LedgerReader
from tests.accounts_ledgers import config_text
from tests.ledger_helpers import write_ledger
from tests.test_auth import MEMBERS, _flows, _Live, _token

#: h01: a battery and two plugs (flexible, essential); h02: one flexible plug, no battery;
#: h03: nothing switchable.
DEVICES = {"h01": [("battery", None), ("load", "flexible"), ("load", "essential")],
           "h02": [("load", "flexible")], "h03": []}


class _World(_Live):
    """The fake live view of tests/test_auth.py, with a controller's overrides and devices."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 1_000_000.0
        devices = []
        for member, kinds in DEVICES.items():
            counts: dict[str, int] = {}
            for kind, tier in kinds:
                counts[kind] = counts.get(kind, 0) + 1
                name = f"{member}/{kind}{counts[kind] if kind == 'load' else ''}"
                devices.append(SimpleNamespace(
                    health=SimpleNamespace(name=name),
                    config=SimpleNamespace(kind=kind, tier=tier, contactor=False)))
        self.controller = SimpleNamespace(member_ids=MEMBERS, overrides=OverrideStore(),
                                          poller=SimpleNamespace(devices=devices))

    def now(self) -> float:
        return self.t


@pytest.fixture()
def world(tmp_path: Path) -> tuple[LedgerReader, _World, FastAPI]:
    ledger = tmp_path / "ledger.sqlite"
    write_ledger(ledger, MEMBERS, 60, 1020.0, 60.0, [_flows() for _ in range(5)])
    reader, live = LedgerReader(ledger), _World()
    return reader, live, create_app(reader, live, parse_config(config_text(ledger, MEMBERS)))


def _as(app: FastAPI, reader: LedgerReader, role: str, member: str | None = None,
        label: str = "someone") -> TestClient:
    _, secret = _token(reader, role, member, label=label)
    return TestClient(app, headers={"Authorization": f"Bearer {secret}"})


def _audit(reader: LedgerReader, action: str) -> list[dict]:
    return [r | {"detail": json.loads(r["detail"])}
            for r in AuditLog.beside(reader.path).rows(0, 10_000) if r["action"] == action]


def test_a_battery_override_for_a_member_without_a_battery_is_422_naming_it(world) -> None:
    reader, _, app = world
    coordinator = _as(app, reader, "coordinator")
    got = coordinator.post("/api/v1/overrides", json={
        "kind": "battery_setpoint", "member": "h02", "power_w": 500, "minutes": 10})
    assert got.status_code == 422 and "member 'h02' has no battery" in got.json()["detail"]
    assert coordinator.post("/api/v1/overrides", json={
        "kind": "battery_setpoint", "member": "h01", "power_w": 500, "minutes": 10}
    ).status_code == 201
    assert _audit(reader, "override.create")[0]["outcome"] == "refused: no battery"


def test_a_load_switch_error_lists_only_that_members_loads(world) -> None:
    reader, _, app = world
    coordinator = _as(app, reader, "coordinator")
    got = coordinator.post("/api/v1/overrides", json={
        "kind": "load_switch", "member": "h02", "load": "load7", "on": False, "minutes": 5})
    assert got.status_code == 404, got.text
    detail = got.json()["detail"]
    assert "['h02/load1']" in detail and "h01" not in detail
    # another member's load under this member's name: no such load, and h01's not listed
    got = coordinator.post("/api/v1/overrides", json={
        "kind": "load_switch", "member": "h02", "load": "h01/load1", "on": False, "minutes": 5})
    assert got.status_code == 404 and "h01/load2" not in got.json()["detail"]
    nothing = coordinator.post("/api/v1/overrides", json={
        "kind": "load_switch", "member": "h03", "load": "load1", "on": False, "minutes": 5})
    assert nothing.status_code == 404 and "(it has none)" in nothing.json()["detail"]


def test_a_member_opts_its_own_flexible_plug_out_and_nothing_more(world, reliability) -> None:
    row = reliability("member-other-plug", "A member's token opts its own flexible plug out "
                      "(201, with an end); another member's plug, by that member's path or "
                      "named in the body, is 404, as are listing and ending another member's "
                      "opt-outs; overrides and island commands are 403; an essential plug "
                      "is 422; refusals are in the audit log.")
    reader, live, app = world
    bram = _as(app, reader, "member", "h02", label="Bram")
    made = bram.post("/api/v1/members/h02/optouts", json={"load": "load1", "minutes": 90})
    assert made.status_code == 201, made.text
    o = made.json()
    assert (o["kind"], o["load_id"], o["end_ts"]) == ("shed_optout", "h02/load1",
                                                       live.t + 5400)
    assert opted_out(live.controller.overrides.active(live.t)) == {"h02/load1"}
    # another member's plug: 404, by its path (as an unknown member) or named in the body
    others = [bram.post(path, json=body).status_code for path, body in (
        ("/api/v1/members/h01/optouts", {"load": "load1", "minutes": 5}),
        ("/api/v1/members/h02/optouts", {"load": "h01/load1", "minutes": 5}))]
    others.append(bram.get("/api/v1/members/h01/optouts").status_code)
    # nothing more: no override, no island command, no other member's opt-out ended
    beyond = [bram.post("/api/v1/overrides", json={
        "kind": "load_switch", "member": "h02", "load": "load1", "on": True, "minutes": 5}
    ).status_code, bram.post("/api/v1/island/command", json={"requested_by": "x", "hours": 1}
                             ).status_code]
    ada = _as(app, reader, "member", "h01", label="Ada")
    essential = ada.post("/api/v1/members/h01/optouts", json={"load": "load2", "minutes": 5})
    ends = [ada.delete(f"/api/v1/members/{m}/optouts/{o['id']}").status_code
            for m in ("h01", "h02")]
    row.observed = (f"own flexible plug {made.status_code} (ends after "
                    f"{(o['end_ts'] - live.t) / 60:.0f} min); another member's plug "
                    f"(post ×2, list) {others}; override and island command {beyond}; "
                    f"essential plug {essential.status_code}; another member ending it "
                    f"{ends}; opted out afterwards: "
                    f"{sorted(opted_out(live.controller.overrides.active(live.t)))}")
    assert others == [404, 404, 404]
    assert beyond == [403, 403]
    assert essential.status_code == 422 and "only its flexible plugs" in essential.text
    assert ends == [404, 404]
    # every opt-out has an end, at most a day
    assert bram.post("/api/v1/members/h02/optouts", json={"load": "load1"}).status_code == 422
    assert bram.post("/api/v1/members/h02/optouts",
                     json={"load": "load1", "minutes": 24 * 60 + 1}).status_code == 422
    # listed, ended early by its member, and lapses by itself: all in the audit log
    assert [x["id"] for x in bram.get("/api/v1/members/h02/optouts").json()] == [o["id"]]
    ended = bram.delete(f"/api/v1/members/h02/optouts/{o['id']}")
    assert ended.status_code == 200 and ended.json()["ended_by"] == "Bram"
    second = bram.post("/api/v1/members/h02/optouts", json={"load": "load1", "minutes": 1})
    live.t += 61
    assert opted_out(live.controller.overrides.active(live.t)) == frozenset()
    created = _audit(reader, "optout.create")
    assert [(r["who"], r["role"], r["outcome"]) for r in created][0] == (
        "Bram", "member", "accepted")
    assert {r["outcome"] for r in created} >= {"refused: no such load", "refused: essential"}
    assert [r["who"] for r in _audit(reader, "optout.end")] == ["Bram"]
    lapsed = _audit(reader, "override.lapse")
    assert [(r["detail"]["kind"], r["detail"]["id"]) for r in lapsed] == [
        ("shed_optout", second.json()["id"])]
    assert second.json()["id"] in {o.id for o in live.controller.overrides.listing(live.t)
                                   if o.ended_by == "lapsed"}


def test_the_public_and_an_installer_may_not_opt_out(world) -> None:
    reader, _, app = world
    body = {"load": "load1", "minutes": 5}
    assert TestClient(app).post("/api/v1/members/h02/optouts", json=body).status_code == 401
    assert _as(app, reader, "installer").post("/api/v1/members/h02/optouts",
                                              json=body).status_code == 403


def _planner() -> ShedPlanner:
    loads = [SwitchableLoad("h02/load1", 0, "flexible"), SwitchableLoad("h02/load2", 0,
                                                                         "flexible"),
             SwitchableLoad("h02/load3", 0, "critical", contactor=True)]
    return ShedPlanner(loads, ["essential"])


ALL_ON = {"h02/load1": Plug(800.0, True), "h02/load2": Plug(300.0, True),
          "h02/load3": Plug(1500.0, True)}


def test_the_shedder_keeps_an_opted_out_plug_on_and_gives_back_one_it_held() -> None:
    planner = _planner()
    flexible_shed = np.array([[0.0], [0.0], [900.0]])  # critical, essential, flexible
    plan = planner.plan(0.0, flexible_shed, ALL_ON, frozenset({"h02/load1"}))
    assert [a.load_id for a in plan.off] == ["h02/load2"]  # the smaller one, not the opted
    assert ("h02/load1", "opted out of shedding by its member") in plan.skipped
    # held off before the opt-out: back on at the next cycle
    planner = _planner()
    assert [a.load_id for a in planner.plan(0.0, np.array([700.0]), ALL_ON).off] == [
        "h02/load1"]
    plan = planner.plan(30.0, np.array([700.0]), ALL_ON | {"h02/load1": Plug(0.0, False)},
                        frozenset({"h02/load1"}))
    assert [a.load_id for a in plan.on] == ["h02/load1"]
    assert planner.state("h02/load1") is State.ON


def test_safety_wins_the_contactor_is_not_held_back_by_an_opt_out() -> None:
    planner = _planner()
    need = np.array([2500.0])  # more than both plugs: the member's own tier is shed
    plan = planner.plan(0.0, need, ALL_ON, frozenset({"h02/load1"}))
    assert {a.load_id for a in plan.off} == {"h02/load2", "h02/load3"}
