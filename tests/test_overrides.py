"""The override store and the pure functions the cycle applies."""

from __future__ import annotations

import numpy as np
import pytest

from controller.governance.overrides import (
    MAX_OVERRIDE_S,
    OverrideError,
    OverrideStore,
    battery_overrides,
    load_commands,
    load_states,
)
from controller.safety import clamp_setpoints


def test_every_override_has_a_bounded_end_and_lapses_once() -> None:
    lapsed = []
    store = OverrideStore(on_lapse=lapsed.append)
    with pytest.raises(OverrideError, match="until"):
        store.add("battery_setpoint", "h01", 100.0, 100.0, "Ada", power_w=1.0)
    with pytest.raises(OverrideError, match="until: an override lasts at most 24 h"):
        store.add("battery_setpoint", "h01", 0.0, MAX_OVERRIDE_S + 1, "Ada", power_w=1.0)
    with pytest.raises(OverrideError, match="power_w"):
        store.add("battery_setpoint", "h01", 0.0, 60.0, "Ada", power_w=float("nan"))
    o = store.add("battery_setpoint", "h01", 0.0, 60.0, "Ada", power_w=-500.0)
    assert [x.id for x in store.active(59.9)] == [o.id]
    assert store.active(60.0) == [] and store.active(61.0) == []
    assert [x.id for x in lapsed] == [o.id] and lapsed[0].ended_by == "lapsed"


def test_an_override_only_narrows_the_safety_layer() -> None:
    store = OverrideStore()
    store.add("battery_setpoint", "a", 0.0, 60.0, "Ada", power_w=9000.0)  # above rating
    store.add("battery_setpoint", "b", 0.0, 60.0, "Ada", power_w=2000.0)  # at the floor
    store.add("battery_setpoint", "c", 0.0, 60.0, "Ada", power_w=-2000.0)  # full
    requested = battery_overrides(np.array([100.0, 100.0, 100.0, 300.0]),
                                  ("a", "b", "c", "d"), store.active(1.0))
    safe = clamp_setpoints(requested, np.array([50.0, 10.0, 100.0, 50.0]),
                           np.full(4, 10.0), np.full(4, 3000.0), np.full(4, 3000.0))
    assert safe.tolist() == [3000.0, 0.0, 0.0, 300.0]


def test_loads_an_override_held_off_come_back_on() -> None:
    store = OverrideStore()
    off = store.add("load_switch", "h05", 0.0, 60.0, "Ada", load_id="h05/load1", on=False)
    wanted = load_states(store.active(1.0))
    assert load_commands(wanted, set()) == [("h05/load1", False)]
    store.end(off.id, 2.0, "Ada")
    assert load_commands(load_states(store.active(3.0)), {"h05/load1"}) == [("h05/load1", True)]
