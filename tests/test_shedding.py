"""The shedding planner: table rows (cycles in, switch actions out) and two properties."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import parse_config
from controller.island.shedding import (
    TABLE,
    Event,
    Plug,
    ShedPlan,
    ShedPlanner,
    State,
    SwitchableLoad,
)

NAN = math.nan


def load(name: str, tier: str = "flexible", member: int = 0, **kw: Any) -> SwitchableLoad:
    return SwitchableLoad(name, member, tier, **kw)  # type: ignore[arg-type]


def run(loads: list[SwitchableLoad], tiers: list[str], cycles: list[tuple], **kw: Any
        ) -> tuple[ShedPlanner, ShedPlan]:
    """Feed ``(now, shed, {id: (power, on)})`` cycles; the planner and its last plan."""
    planner = ShedPlanner(loads, tiers, **kw)  # type: ignore[arg-type]
    plan = None
    for now, shed, readings in cycles:
        plan = planner.plan(now, np.asarray(shed, dtype=float),
                            {k: Plug(*v) for k, v in readings.items()})
    assert plan is not None
    return planner, plan


F5, F8, F3 = load("f500"), load("f800"), load("f300")
E2 = load("e2000", "essential")
C1 = load("c1000", "critical")
ON = {"f500": (500.0, True), "f800": (800.0, True), "f300": (300.0, True),
      "e2000": (2000.0, True), "c1000": (1000.0, True)}


def pick(*names: str) -> dict[str, tuple[float, bool | None]]:
    return {n: ON[n] for n in names}


# (loads, member tiers, cycles, expected off ids, expected on ids, {id: skip reason part},
#  unrealised W of member 0)
ROWS = [
    pytest.param([F5, E2], ["essential"], [(0, [400], pick("f500", "e2000"))],
                 ["f500"], [], {}, 0.0, id="flexible before a larger essential"),
    pytest.param([F5, E2], ["essential"], [(0, [1000], pick("f500", "e2000"))],
                 ["f500", "e2000"], [], {}, 0.0, id="then essential"),
    pytest.param([F3, F8, F5], ["essential"], [(0, [700], pick("f300", "f800", "f500"))],
                 ["f800"], [], {}, 0.0, id="largest first"),
    pytest.param([F3, F8, F5], ["essential"], [(0, [1000], pick("f300", "f800", "f500"))],
                 ["f800", "f500"], [], {}, 0.0, id="largest first until covered"),
    pytest.param([F3, C1], ["essential"], [(0, [1000], pick("f300", "c1000"))],
                 ["f300"], [], {"c1000": "critical tier is not shed"}, 700.0,
                 id="critical only when the critical tier is shed"),
    pytest.param([F3, C1], ["critical"], [(0, [1000], pick("f300", "c1000"))],
                 ["f300", "c1000"], [], {}, 0.0, id="member tier critical: critical too"),
    pytest.param([F3, C1], ["essential"], [(0, [[100], [0], [900]], pick("f300", "c1000"))],
                 ["f300", "c1000"], [], {}, 0.0, id="per-tier shed reaching critical"),
    pytest.param([load("fx"), C1], ["critical"],
                 [(0, [1000], {"fx": (NAN, True), "c1000": (1000.0, True)})],
                 [], [], {"fx": "no rated_w", "c1000": "flexible or essential plug"}, 1000.0,
                 id="critical waits while a flexible plug is on"),
    pytest.param([load("fx", rated_w=1200.0), F3], ["essential"],
                 [(0, [1000], {"fx": (NAN, True), "f300": (300.0, True)})],
                 ["fx"], [], {}, 0.0, id="unknown power is rated_w"),
    pytest.param([load("f0"), F3], ["essential"],
                 [(0, [200], {"f0": (0.0, True), "f300": (300.0, True)})],
                 ["f300"], [], {}, 0.0, id="a plug drawing nothing is no use"),
    pytest.param([load("f500", min_on_s=60.0)], ["essential"],
                 [(0, [0], {"f500": (0.0, False)}), (10, [0], {"f500": (500.0, True)}),
                  (20, [400], {"f500": (500.0, True)})],
                 [], [], {"f500": "on for 10 s < min_on_s 60"}, 400.0, id="min on time"),
    pytest.param([load("f500", min_on_s=60.0)], ["essential"],
                 [(0, [0], {"f500": (0.0, False)}), (10, [0], {"f500": (500.0, True)}),
                  (70, [400], {"f500": (500.0, True)})],
                 ["f500"], [], {}, 0.0, id="min on time passed"),
    pytest.param([load("f500", min_off_s=60.0)], ["essential"],
                 [(0, [400], pick("f500")), (30, [0], {})],
                 [], [], {"f500": "off for 30 s < min_off_s 60"}, 0.0, id="min off time"),
    pytest.param([load("f500", min_off_s=60.0)], ["essential"],
                 [(0, [400], pick("f500")), (60, [0], {})],
                 [], ["f500"], {}, 0.0, id="min off time passed"),
    pytest.param([F8, F5], ["essential"], [(0, [1200], pick("f800", "f500")), (1, [900], {})],
                 [], [], {}, 0.0, id="hysteresis: 800 W stay off for 900 W, margin too small"),
    pytest.param([F8, F5], ["essential"], [(0, [1200], pick("f800", "f500")), (1, [690], {})],
                 [], ["f500"], {}, 0.0, id="hysteresis: last off comes back"),
    pytest.param([F8, F5, F3], ["essential"],
                 [(0, [1500], pick("f800", "f500", "f300")), (1, [0], {})],
                 [], ["f300", "f500", "f800"], {}, 0.0, id="no shed: all back, reverse order"),
    pytest.param([F8, F5, load("f300", min_off_s=99.0)], ["essential"],
                 [(0, [1500], pick("f800", "f500", "f300")), (1, [0], {})],
                 [], [], {"f300": "min_off_s"}, 0.0, id="reverse order: the last blocks"),
    pytest.param([load("f500", min_on_s=60.0)], ["essential"],
                 [(0, [400], pick("f500")), (301, [400], {})],
                 [], ["f500"], {"f500": "min_on_s"}, 400.0, id="mandate lapse: back on"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (301, [400], pick("f500"))],
                 ["f500"], [], {}, 0.0, id="mandate lapse: on, then shed again"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (100, [400], {})],
                 [], [], {}, 0.0, id="mandate running: nothing to send"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (160, [400], {})],
                 ["f500"], [], {}, 0.0, id="mandate half gone: renewed"),
    pytest.param([F5], ["essential"], [(0, [0], {"f500": (0.0, False)}), (1, [0], {})],
                 [], [], {}, 0.0, id="never on what Commonwatt did not switch off"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (5, [400], pick("f500"))],
                 [], [], {}, 0.0, id="a reading just after the command does not count"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (20, [0], pick("f500"))],
                 [], [], {}, 0.0, id="switched on by hand: left on, not sent"),
    pytest.param([F3, load("k", contactor=True, rated_w=3000.0)], ["essential"],
                 [(0, [2000], pick("f300"))], ["f300", "k"], [], {}, 0.0, id="contactor last"),
    pytest.param([load("f300", min_on_s=60.0), load("k", contactor=True, rated_w=3000.0)],
                 ["essential"], [(0, [0], {"f300": (0.0, False)}),
                                 (1, [0], {"f300": (300.0, True)}), (2, [2000], {})],
                 [], [], {"f300": "min_on_s", "k": "plugs still on (f300)"}, 2000.0,
                 id="no contactor while a plug is on"),
    pytest.param([F3, load("k", contactor=True, rated_w=3000.0)], ["critical"],
                 [(0, [[0], [0], [2000]], pick("f300"))], ["f300"], [],
                 {"k": "own tier (critical) is not shed"}, 1700.0,
                 id="no contactor unless the member's tier is shed"),
    pytest.param([F5], ["essential"], [(0, [400], pick("f500")), (1, [NAN], {})],
                 [], [], {}, NAN, id="unknown shed: hold what is held"),
]


@pytest.mark.parametrize(("loads", "tiers", "cycles", "off", "on", "skipped", "unrealised"), ROWS)
def test_table(loads: list[SwitchableLoad], tiers: list[str], cycles: list[tuple],
               off: list[str], on: list[str], skipped: dict[str, str],
               unrealised: float) -> None:
    _, plan = run(loads, tiers, cycles)
    assert [a.load_id for a in plan.off] == off
    assert [a.load_id for a in plan.on] == on
    notes = dict(plan.skipped)
    for name, part in skipped.items():
        assert part in notes.get(name, ""), plan.skipped
    np.testing.assert_allclose(plan.unrealised_w[0], unrealised)


def test_actions_carry_power_reason_and_mandate() -> None:
    _, plan = run([F8, F5], ["essential"], [(10, [1200], pick("f800", "f500"))], mandate_s=300)
    first = plan.off[0]
    assert (first.power_w, first.until, first.event) == (800.0, 310.0, Event.SHED)
    assert first.reason == "shed: flexible 800 W for a shed of 1200 W (0 W off before)"
    planner, plan = run([F5], ["essential"], [(0, [400], pick("f500")), (301, [400],
                                                                            pick("f500"))])
    assert plan.off[0].reason.startswith("mandate lapsed without renewal; then shed")
    assert planner.held_w()[0] == 500.0


def test_release_all_switches_on_only_what_commonwatt_holds_off() -> None:
    planner, plan = run([F8, F5, F3], ["essential"],
                        [(0, [0], {"f300": (0.0, False)}), (1, [1000], pick("f800", "f500"))])
    assert {a.load_id for a in plan.off} == {"f800", "f500"}
    released = planner.release_all(2)
    assert sorted(a.load_id for a in released) == ["f500", "f800"]
    assert all(a.on and a.event is Event.RELEASE for a in released)
    assert planner.state("f300") is State.OFF_EXTERNAL and planner.release_all(3) == []


def test_members_are_planned_apart() -> None:
    loads = [load("a1"), load("b1", member=1), load("b2", "critical", member=1)]
    readings = {"a1": (500.0, True), "b1": (200.0, True), "b2": (900.0, True)}
    _, plan = run(loads, ["essential", "essential"], [(0, [0, 600], readings)])
    assert [a.load_id for a in plan.off] == ["b1"]
    np.testing.assert_allclose(plan.unrealised_w, [0.0, 400.0])


def test_from_config_names_loads_as_the_poller_does() -> None:
    devices = [
        'kind = "meter"\nfamily = "shelly-pro3em"\ntopic = "em-a"',
        'kind = "load"\nfamily = "shelly-plug"\ntopic = "p1"\nrated_w = 800',
        'kind = "load"\nfamily = "tasmota"\ntopic = "k"\ncontactor = true',
        'kind = "load"\nfamily = "zigbee2mqtt"\ntopic = "z/p"\ntier = "critical"\n'
        'min_on_s = 60\nmin_off_s = 120',
    ]
    config = parse_config('[mqtt]\n[[members]]\nid = "a"\nname = "A"\ntier = "critical"\n'
                          + "".join(f'[[members.devices]]\nprotocol = "mqtt"\n{d}\n'
                                    for d in devices))
    planner = ShedPlanner.from_config(config, hysteresis_w=50)
    assert planner.loads == (
        SwitchableLoad("a/load1", 0, "flexible", 800.0),
        SwitchableLoad("a/load2", 0, "critical", contactor=True),
        SwitchableLoad("a/load3", 0, "critical", None, 60.0, 120.0))
    assert planner.member_tiers == ("critical",) and planner.hysteresis_w == 50


def test_config_refuses_load_fields_on_other_kinds() -> None:
    from controller.config import ConfigError
    with pytest.raises(ConfigError, match="contactor: only for a switchable load"):
        parse_config("""
[[members]]
id = "a"
name = "A"
devices = [{ kind = "meter", host = "10.0.0.2", contactor = true }]
""")


def test_the_table_only_enters_off_by_commonwatt_by_shedding() -> None:
    for (state, event), (target, command, _) in TABLE.items():
        if target is State.OFF_BY_COMMONWATT and state is not target:
            assert event is Event.SHED and command is False
        if command is True:
            assert state is State.OFF_BY_COMMONWATT


TIER_NAMES = ("critical", "essential", "flexible")
loads_st = st.lists(st.tuples(st.integers(0, 1), st.sampled_from(TIER_NAMES),
                              st.sampled_from([0.0, 30.0, 120.0]),
                              st.sampled_from([0.0, 30.0, 120.0]),
                              st.sampled_from([None, 700.0]), st.booleans()),
                    min_size=1, max_size=6)
cycle_st = st.tuples(
    st.sampled_from([1.0, 10.0, 40.0, 200.0, 400.0]),
    st.one_of(st.lists(st.sampled_from([0.0, 300.0, 900.0, 2500.0, NAN]), min_size=2,
                       max_size=2),
              st.lists(st.lists(st.sampled_from([0.0, 200.0, 1500.0]), min_size=2, max_size=2),
                       min_size=3, max_size=3)),
    st.lists(st.tuples(st.sampled_from([NAN, 0.0, 150.0, 600.0, 2000.0]),
                       st.sampled_from([True, False, None])), min_size=6, max_size=6))


@settings(max_examples=300, deadline=None)
@given(loads_st, st.sampled_from(TIER_NAMES), st.sampled_from(TIER_NAMES),
       st.lists(cycle_st, min_size=1, max_size=12))
def test_properties(spec: list[tuple], tier0: str, tier1: str, cycles: list[tuple]) -> None:
    """Critical after every flexible/essential plug; on only what Commonwatt switched off."""
    seen_contactor: set[int] = set()
    loads = []
    for i, (member, tier, on_s, off_s, rated, contactor) in enumerate(spec):
        contactor = contactor and member not in seen_contactor
        seen_contactor |= {member} if contactor else set()
        loads.append(SwitchableLoad(f"l{i}", member, tier, rated, on_s, off_s, contactor))
    planner = ShedPlanner(loads, [tier0, tier1], mandate_s=300)  # type: ignore[list-item]
    last_command: dict[str, bool] = {}
    now = 0.0
    for step, shed, plugs in cycles:
        now += step
        readings = {ld.id: Plug(*plugs[i]) for i, ld in enumerate(loads)}
        held = {ld.id for ld in loads if planner.state(ld.id) is State.OFF_BY_COMMONWATT}
        plan = planner.plan(now, np.asarray(shed, dtype=float), readings)
        for action in plan.on:
            assert action.load_id in held and last_command.get(action.load_id) is False
        for action in plan.off:
            ld = next(x for x in loads if x.id == action.load_id)
            if action.event is Event.SHED and ld.tier == "critical" and not ld.contactor:
                lit = [x.id for x in loads if x.member == ld.member and not x.contactor
                       and x.tier != "critical" and planner.state(x.id) is State.ON]
                assert not lit, (action, lit)
            if action.event is Event.SHED and ld.contactor:
                assert all(planner.state(x.id) is not State.ON for x in loads
                           if x.member == ld.member and not x.contactor)
        last_command.update({a.load_id: a.on for a in plan.actions})
        assert np.all((plan.unrealised_w >= 0) | np.isnan(plan.unrealised_w))
    released = planner.release_all(now + 1)
    assert all(last_command.get(a.load_id) is False for a in released)
    assert all(planner.state(ld.id) is not State.OFF_BY_COMMONWATT for ld in loads)
