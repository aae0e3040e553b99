"""Unplanned grid loss (#21 point 7): seen from the meters' voltage or frequency or the
grid-former's status within one cycle; the flexible plugs off in that cycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.governance.overrides import LoadCommand
from controller.island.grid_loss import (
    FlexibleLoad,
    GridBounds,
    GridLossLoads,
    MeterGrid,
    grid_evidence,
    meter_verdict,
)
from controller.island.grid_model import GridInputs, GridMachine, GridState
from controller.island.grid_state import step

S = GridState

METERS = [  # (voltage V, frequency Hz) of each meter → a loss? (EN 50549-1: 195.5-253 V,
    # 47.5-51.5 Hz; a strict majority of the meters that report must agree)
    ("nominal", [(230.0, 50.0)] * 3, None),
    ("edges are in range", [(195.5, 47.5), (253.0, 51.5)], None),
    ("0 V everywhere: gone", [(0.0, None)] * 3, "h0/meter voltage 0.0 V outside 195.5-253.0 V"),
    ("under-voltage", [(190.0, 50.0)], "h0/meter voltage 190.0 V outside"),
    ("over-voltage", [(254.0, 50.0)], "h0/meter voltage 254.0 V outside"),
    ("under-frequency", [(230.0, 47.4)], "h0/meter frequency 47.40 Hz outside 47.5-51.5 Hz"),
    ("over-frequency", [(230.0, 51.6)], "h0/meter frequency 51.60 Hz outside"),
    ("one sagging feeder of three", [(180.0, 50.0), (230.0, 50.0), (231.0, 50.0)], None),
    ("half is no majority", [(180.0, 50.0), (230.0, 50.0)], None),
    ("two of three", [(0.0, 0.0), (0.0, 0.0), (230.0, 50.0)],
     "h0/meter voltage 0.0 V outside 195.5-253.0 V (and 1 of 3 meters more)"),
    ("meters without V or Hz say nothing", [(None, None), (0.0, None)], "h1/meter voltage"),
    ("none at all", [], None),
]


@pytest.mark.parametrize(("name", "readings", "cause"), METERS, ids=[m[0] for m in METERS])
def test_meter_voltage_and_frequency_bounds(name: str, readings: list, cause: str | None) -> None:
    meters = [MeterGrid(f"h{i}/meter", v, f) for i, (v, f) in enumerate(readings)]
    found = meter_verdict(meters)
    if cause is None:
        assert found is None
    else:
        assert found is not None and found.startswith(cause)


EVIDENCE = [  # state, grid-former, meters' cause → what the state machine gets
    (S.ON_GRID, "on", None, ("on", None)),
    (S.ON_GRID, "on", "h0/meter frequency 47.00 Hz", ("off", "grid lost (meters: h0/meter "
                                                        "frequency 47.00 Hz)")),
    (S.ON_GRID, "unknown", "x", ("off", "grid lost (meters: x)")),
    (S.UNDEFINED, "unknown", "x", ("off", "grid lost (meters: x)")),
    (S.ON_GRID, "off", None,
     ("off", "grid lost (grid-former reports the utility disconnected)")),
    # Islanded the meters see the grid-former (frequency-shift curtailment at 51.8 Hz is on
    # purpose): no news about the utility, and never a return.
    (S.OFF_GRID, "off", "x", ("off", "grid lost (grid-former reports the utility "
                                     "disconnected)")),
    (S.RETURNING, "on", "x", ("on", None)),
    (S.GOING_OFF_GRID, "on", "x", ("on", None)),
]


@pytest.mark.parametrize(("state", "device", "meters", "expected"), EVIDENCE)
def test_grid_evidence_and_its_cause(state: GridState, device: str, meters: str | None,
                                     expected: tuple[str, str | None]) -> None:
    assert grid_evidence(state, device, meters) == expected


def test_the_state_machine_records_the_cause_in_one_step() -> None:
    device, cause = grid_evidence(S.ON_GRID, "on", "h0/meter voltage 0.0 V outside 195.5-253.0 V")
    t = step(GridMachine(S.ON_GRID, since=0.0), GridInputs(device, True, 50.0,
                                                           grid_cause=cause), 30.0)
    assert t.machine.state is S.OFF_GRID and not t.machine.in_force
    assert t.record is not None and t.record.cause == (
        "grid lost (meters: h0/meter voltage 0.0 V outside 195.5-253.0 V)")


def test_bad_bounds_name_the_field() -> None:
    with pytest.raises(ValueError, match="v_low_pu"):
        GridBounds(v_low_pu=1.2)
    with pytest.raises(ValueError, match="f_low_hz"):
        GridBounds(f_low_hz=52.0)


def test_flexible_plugs_held_through_an_unplanned_loss_and_back_on_with_the_grid() -> None:
    loads = [FlexibleLoad("a/load2", ev=True, rated_w=7400.0), FlexibleLoad("b/load1"),
             FlexibleLoad("a/load1")]
    g = GridLossLoads(loads, mandate_s=300.0)
    off = [LoadCommand("a/load2", False), LoadCommand("b/load1", False),
           LoadCommand("a/load1", False)]
    assert g.step(0.0, S.ON_GRID, False) == []
    # The cycle that sees the loss: all off, the EV charger first; an override's plug stays.
    assert g.step(30.0, S.OFF_GRID, False, {"b/load1": True}) == [off[0], off[2]]
    assert g.step(60.0, S.OFF_GRID, False, {"b/load1": True}) == []  # sent, not yet due
    assert g.step(180.0, S.OFF_GRID, False) == off  # half the mandate: renewed
    assert g.holds("a/load2") and g.step(200.0, S.UNDEFINED, False) == []  # still held
    assert g.step(400.0, S.RETURNING, False) == off  # not yet the grid: renewed
    on = g.step(420.0, S.ON_GRID, False)
    assert sorted(on) == sorted(LoadCommand(c.load_id, True) for c in off)
    assert not g.holds("a/load2") and g.step(450.0, S.ON_GRID, False) == []
    # A planned island (in force) is the plan's business: nothing switched.
    assert g.step(500.0, S.OFF_GRID, True) == []


def test_the_simulator_drops_the_grid_and_the_ev_goes_off_in_that_cycle(
        tmp_path: Path, mosquitto: int) -> None:
    """No command, no warning: the simulated breaker opens at 19:00 with a 7 kW EV charging
    (a simulated Shelly on a real mosquitto). The grid-former's 701 ConnSt says so at the
    next poll; in that same cycle the state is OFF_GRID with its cause and the EV's plug is
    switched off (before the next cycle). When the grid is back it goes back on."""
    from controller.ledger import LedgerReader
    from simulators.mqtt_devices import SimulatedMqttDevice
    from tests.coop_harness import start_harness

    ev = ('\n[[members.devices]]\nkind = "load"\nprotocol = "mqtt"\nfamily = "shelly-plug"\n'
          'topic = "ev-h05"\ntier = "flexible"\nev_charger = true\nfresh_s = 600\n')
    seen: dict[str, object] = {}

    async def go() -> None:
        h = await start_harness(
            tmp_path, start_hour=19.0, settlement_s=300,
            **{"name = \"Emeka's house\"": "name = \"Emeka's house\"" + ev,
               "[ledger]": f"[mqtt]\nport = {mosquitto}\n\n[ledger]"})
        plug = SimulatedMqttDevice("shelly-plug", "ev-h05", mosquitto, clock=h.clock)

        async def wait_off(timeout_s: float) -> bool:
            for _ in range(int(timeout_s / 0.05)):
                if plug.values.get("on") is False:
                    return True
                await asyncio.sleep(0.05)
            return False

        try:
            for _ in range(3):
                plug.publish(power_w=7000.0, energy_wh=100.0)
                await h.step()
                await asyncio.sleep(0.2)
            assert h.controller.grid.machine.state is S.ON_GRID
            assert plug.values.get("on", True) is True
            h.coop.grid_connected = False  # the utility is gone, unannounced
            await h.step()
            seen["state"] = h.controller.grid.machine.state
            seen["off_in_that_cycle"] = await wait_off(3.0)  # no further cycle runs
            for _ in range(3):
                plug.publish(power_w=0.0, energy_wh=100.0)
                await h.step()
            seen["still_off"] = plug.values.get("on")
            h.coop.grid_connected = True
            await h.step()
            seen["back"] = h.controller.grid.machine.state
            for _ in range(40):
                if plug.values.get("on") is True:
                    break
                await asyncio.sleep(0.05)
            seen["on_again"] = plug.values.get("on")
            seen["transitions"] = LedgerReader(tmp_path / "ledger.sqlite").grid_transitions()
        finally:
            plug.close()
            await h.close()

    asyncio.run(go())
    assert seen["state"] is S.OFF_GRID
    assert seen["off_in_that_cycle"], "the EV's plug went off in the cycle that saw the loss"
    assert seen["still_off"] is False
    assert seen["back"] is S.ON_GRID and seen["on_again"] is True
    lost = [t for t in seen["transitions"] if t["to"] == "OFF_GRID"]  # type: ignore[union-attr]
    assert lost and lost[0]["from"] == "ON_GRID" and lost[0]["cause"] == (
        "grid lost (grid-former reports the utility disconnected)")
