"""The island eve (#21 point 4): a pure state machine, and in the controller over real
Modbus the prior mode restored by read-back."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.island.eve import (
    EveInputs,
    EveMachine,
    EveState,
    battery_orders_w,
    eve_mandate,
    step,
)

S = EveState
T_ISLAND = 100_000.0
MANDATE = eve_mandate("Ada", T_ISLAND, [60.0, 40.0, math.nan], eve_h=24.0)
BEGIN = MANDATE.begins_ts
LOW, AT = np.array([50.0, 40.0, 0.0]), np.array([60.0, 40.0, 0.0])


def m(state: EveState, mandate=MANDATE) -> EveMachine:
    return EveMachine(state, BEGIN, None if state is S.IDLE else mandate)


# (name, machine, inputs, now) → (state after, cause, charge per member, hold per member)
ROWS = [
    ("idle before the eve", m(S.IDLE), EveInputs(MANDATE, LOW), BEGIN - 1,
     S.IDLE, None, [0, 0, 0], [0, 0, 0]),
    ("eve opens, one below", m(S.IDLE), EveInputs(MANDATE, LOW), BEGIN,
     S.CHARGING, "eve began: batteries below the plan's starting SoC", [1, 0, 0], [0, 1, 0]),
    ("eve opens, all at", m(S.IDLE), EveInputs(MANDATE, AT), BEGIN + 60,
     S.HOLDING, "eve began: batteries at the plan's SoC", [0, 0, 0], [1, 1, 0]),
    ("a mandate already past its start is never taken up", m(S.IDLE),
     EveInputs(MANDATE, LOW), T_ISLAND, S.IDLE, None, [0, 0, 0], [0, 0, 0]),
    ("charging, still below", m(S.CHARGING), EveInputs(MANDATE, LOW), BEGIN + 600,
     S.CHARGING, None, [1, 0, 0], [0, 1, 0]),
    ("charging reaches the target", m(S.CHARGING), EveInputs(MANDATE, AT), BEGIN + 900,
     S.HOLDING, "every battery at the plan's starting SoC", [0, 0, 0], [1, 1, 0]),
    ("holding within the band", m(S.HOLDING), EveInputs(MANDATE, np.array([59.5, 40, 0])),
     BEGIN + 1000, S.HOLDING, None, [0, 0, 0], [1, 1, 0]),
    ("holding sags below the band", m(S.HOLDING), EveInputs(MANDATE, np.array([58.9, 40, 0])),
     BEGIN + 1100, S.CHARGING, "a battery fell below the plan's starting SoC", [1, 0, 0],
     [0, 1, 0]),
    ("an unknown SoC charges (the safe side)", m(S.CHARGING),
     EveInputs(MANDATE, np.array([60.0, math.nan, 0])), BEGIN + 1200, S.CHARGING, None,
     [0, 1, 0], [1, 0, 0]),
    ("the island starts", m(S.HOLDING), EveInputs(MANDATE, AT, island_started=True),
     T_ISLAND, S.RESTORING, "island started", [0, 0, 0], [0, 0, 0]),
    ("the mandate expires at the start time", m(S.CHARGING), EveInputs(MANDATE, LOW),
     T_ISLAND, S.RESTORING, "mandate expired at the island's start time", [0, 0, 0],
     [0, 0, 0]),
    ("cancelled", m(S.CHARGING), EveInputs(MANDATE, LOW, cancelled_by="Bo"), BEGIN + 5,
     S.RESTORING, "cancelled by Bo", [0, 0, 0], [0, 0, 0]),
    ("withdrawn (the island command went)", m(S.HOLDING), EveInputs(None, AT), BEGIN + 5,
     S.RESTORING, "mandate withdrawn", [0, 0, 0], [0, 0, 0]),
    ("read-back disagrees: still restoring", m(S.RESTORING),
     EveInputs(MANDATE, AT, restored=False), T_ISLAND + 30, S.RESTORING, None, [0, 0, 0],
     [0, 0, 0]),
    ("read-back agrees", m(S.RESTORING), EveInputs(MANDATE, AT, restored=True),
     T_ISLAND + 60, S.RESTORED, "prior modes restored (read back)", [0, 0, 0], [0, 0, 0]),
    ("restored stays restored", m(S.RESTORED), EveInputs(MANDATE, LOW), T_ISLAND - 10,
     S.RESTORED, None, [0, 0, 0], [0, 0, 0]),
]


@pytest.mark.parametrize(("name", "machine", "inputs", "now", "to", "cause", "charge", "hold"),
                         ROWS, ids=[r[0] for r in ROWS])
def test_eve_state_machine(name, machine, inputs, now, to, cause, charge, hold) -> None:
    s = step(machine, inputs, now)
    assert s.machine.state is to
    assert (None if s.record is None else s.record.cause) == cause
    assert s.charge.tolist() == [bool(x) for x in charge]
    assert s.hold.tolist() == [bool(x) for x in hold]
    assert s.active == (to in (S.CHARGING, S.HOLDING))
    if to is S.RESTORING and cause:
        assert s.machine.end_cause == cause  # kept for the audit row at the end


def test_orders_charge_to_the_target_and_hold_never_discharges() -> None:
    s = step(m(S.IDLE), EveInputs(MANDATE, LOW), BEGIN)
    # 10 kWh batteries: member 0 is 10 % (1 kWh) short: at most 3 kW, but in a 15 min
    # cycle only 4 kW would reach the target: 3 kW. Member 1 holds: its dispatch's 500 W
    # discharge becomes 0, a PV charge stays. Member 2 (no battery in the plan) is the
    # dispatch's.
    cap = np.full(3, 10_000.0)
    orders = battery_orders_w(s, np.array([800.0, 500.0, 200.0]), np.full(3, 3000.0), LOW,
                              cap, 900.0)
    assert orders.tolist() == [-3000.0, 0.0, 200.0]
    orders = battery_orders_w(s, np.array([800.0, -700.0, 200.0]), np.full(3, 3000.0), LOW,
                              cap, 7200.0)  # 2 h cycle: 1 kWh in 2 h is 500 W
    assert orders.tolist() == [-500.0, -700.0, 200.0]


def test_bad_mandates_name_the_field() -> None:
    with pytest.raises(ValueError, match="eve_h"):
        eve_mandate("Ada", T_ISLAND, [50.0], eve_h=0)
    with pytest.raises(ValueError, match="targets_pct"):
        eve_mandate("Ada", T_ISLAND, [120.0])


def test_the_eve_in_the_controller_charges_then_restores_by_read_back(tmp_path) -> None:
    """The simulated coop on Modbus (127.0.0.1) at 02:00, an island commanded for 04:00
    needing 90 %: the eve begins at once (24 h window), force-charges every battery below
    90 % from the grid (model 124 ChaGriSet 1 in the simulator's registers), exports
    nothing; a coordinator cancels it through the API and in the next cycle every
    battery's prior mode is written back and read back; the audit log has the eve's rows."""
    import asyncio

    from fastapi.testclient import TestClient

    from api.app import create_app
    from controller.governance.audit import AuditLog
    from controller.ledger import LedgerReader
    from tests.auth_helpers import bearer
    from tests.coop_harness import start_harness
    from tests.test_island_live import _Live

    seen: dict = {}

    async def go() -> None:
        h = await start_harness(tmp_path, households=4, start_hour=2.0, settlement_s=300)
        try:
            await h.step()
            await h.step()
            batteries = [x for x in h.coop.households if x.battery is not None]
            for b in batteries:  # the owner's setting, as a Fronius has it: no grid charging
                b.battery.set_raw(124, "ChaGriSet", 0)
            seen["grid_before"] = [b.battery.get_raw(124, "ChaGriSet") for b in batteries]
            now = h.clock.now()
            assert h.controller.grid.request_island("Ada", now + 7200, now + 10800, 90.0, now)
            report = await h.step()
            eve = h.controller.eve
            seen["state"] = eve.machine.state
            seen["export_cap"] = h.controller.limits().export_cap_w
            soc = report.image.soc_pct
            has = report.image.has_battery
            seen["charging"] = bool((report.setpoints_w[has & (soc < 89.0)] < 0).all())
            await h.step()
            seen["grid_during"] = [b.battery.get_raw(124, "ChaGriSet") for b in batteries]
            # A coordinator cancels it through the API (recorded under the token's label).
            class Live(_Live):
                controller = h.controller

            reader = LedgerReader(tmp_path / "ledger.sqlite")
            api = TestClient(create_app(reader, live=Live(h)),
                             headers=bearer(reader, "coordinator", label="Bo (coordinator)"))
            answer = api.post("/api/v1/island/eve/cancel", json={"requested_by": "Bo"})
            assert answer.status_code == 202, answer.text
            await h.step()
            again = api.post("/api/v1/island/eve/cancel", json={"requested_by": "Bo"})
            seen["again"] = (again.status_code, again.text)
            seen["after"] = eve.machine.state
            seen["grid_after"] = [b.battery.get_raw(124, "ChaGriSet") for b in batteries]
            seen["export_after"] = h.controller.limits().export_cap_w
            seen["rows"] = [r for r in AuditLog.beside(tmp_path / "ledger.sqlite").rows()
                            if r["action"] == "island_eve"]
        finally:
            await h.close()

    asyncio.run(go())
    import json

    assert seen["state"] is S.CHARGING and seen["charging"]
    assert seen["export_cap"] == 0.0, "no export during the eve"
    assert set(seen["grid_during"]) == {1}, "charged from the grid"
    assert seen["after"] is S.RESTORED
    assert seen["grid_after"] == seen["grid_before"], "the owner's grid-charging setting back"
    assert seen["export_after"] == float("inf")
    details = [json.loads(r["detail"]) for r in seen["rows"]]
    assert [(d["from"], d["to"]) for d in details] == [
        ("idle", "charging"), ("charging", "restoring"), ("restoring", "restored")]
    assert all(v is not None for v in details[0]["prior_modes"].values())
    assert details[1]["cause"] == "cancelled by Bo (coordinator)"
    assert seen["again"][0] == 409 and "no island eve in force" in seen["again"][1]
    assert all(b["target_pct"] == 90.0 for b in details[1]["batteries"].values())
    assert set(details[2]["restored"].values()) == {"read back as recorded"}
