"""Dispatch v1 as a table: inputs → expected split, in Wh over a one-hour tick."""

from __future__ import annotations

import numpy as np
import pytest

from dispatch import Fleet, dispatch_tick

HOUR = 3600.0


def fleet(cap: list[float], floor: list[float] | None = None, power: float = 1e9,
          eff: float = 1.0) -> Fleet:
    n = len(cap)
    return Fleet(np.array(cap, float), np.array(floor or [0.0] * n, float),
                 np.full(n, power), np.full(n, power), np.full(n, eff))


CASES = [
    # name, pv, load, capacity, stored, expected dict of arrays
    ("own pv first", [500], [300], [0], [0],
     {"own_pv_used": [300], "to_grid": [200], "from_grid": [0]}),
    ("own battery before peers", [1000, 0], [0, 400], [500, 0], [0, 0],
     {"to_battery": [500, 0], "to_peers": [400, 0], "from_peers": [0, 400],
      "to_grid": [100, 0]}),
    ("battery covers own deficit", [0, 0], [300, 0], [1000, 0], [800, 0],
     {"from_battery": [300, 0], "from_grid": [0, 0]}),
    ("pro-rata to deficit", [900, 0, 0], [0, 300, 900], [0, 0, 0], [0, 0, 0],
     {"to_peers": [900, 0, 0], "from_peers": [0, 225, 675], "from_grid": [0, 75, 225]}),
    ("surplus beyond deficit goes to grid", [1000, 0], [0, 200], [0, 0], [0, 0],
     {"to_peers": [200, 0], "from_peers": [0, 200], "to_grid": [800, 0]}),
    ("givers give pro-rata to surplus", [300, 100, 0], [0, 0, 200], [0, 0, 0], [0, 0, 0],
     {"to_peers": [150, 50, 0], "to_grid": [150, 50, 0], "from_peers": [0, 0, 200]}),
    ("soc floor stops discharge", [0], [500], [1000], [200],
     {"from_battery": [100], "from_grid": [400]}),
]


@pytest.mark.parametrize(("name", "pv", "load", "cap", "stored", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_dispatch_table(name, pv, load, cap, stored, expected) -> None:
    floors = [100.0 if name == "soc floor stops discharge" else 0.0] * len(cap)
    f = fleet(cap, floors)
    r = dispatch_tick(f, np.array(pv, float), np.array(load, float), np.array(stored, float),
                      np.array(stored, float), np.ones(len(pv), bool), HOUR)
    for field, values in expected.items():
        np.testing.assert_allclose(getattr(r, field), values, atol=1e-9, err_msg=field)


def test_efficiency_is_booked_as_losses() -> None:
    f = fleet([10_000], eff=0.81)  # 0.9 each way
    r = dispatch_tick(f, np.array([1000.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]),
                      np.ones(1, bool), HOUR)
    assert r.to_battery[0] == pytest.approx(1000)
    assert r.losses[0] == pytest.approx(100)
    assert r.stored_wh[0] == pytest.approx(900)
    r2 = dispatch_tick(f, np.array([0.0]), np.array([450.0]), np.array([900.0]),
                       np.array([900.0]), np.ones(1, bool), HOUR)
    assert r2.from_battery[0] == pytest.approx(450)
    assert r2.losses[0] == pytest.approx(50)
    assert r2.stored_wh[0] == pytest.approx(400)


def test_grid_origin_energy_never_becomes_liberated() -> None:
    f = fleet([1000])
    # The battery holds 800 Wh, of which only 200 Wh came from coop generation.
    r = dispatch_tick(f, np.array([0.0]), np.array([400.0]), np.array([800.0]),
                      np.array([200.0]), np.ones(1, bool), HOUR)
    assert r.from_battery[0] == pytest.approx(400)
    assert r.from_battery_coop[0] == pytest.approx(100)
    assert r.liberated[0] == pytest.approx(100)
    assert r.pool_coop_wh[0] == pytest.approx(100)


def test_invalid_household_takes_no_part() -> None:
    f = fleet([1000, 0])
    r = dispatch_tick(f, np.array([0.0, 800.0]), np.array([500.0, 0.0]), np.array([500.0, 0.0]),
                      np.zeros(2), np.array([False, True]), HOUR)
    assert r.load[0] == 0 and r.battery_w[0] == 0
    assert r.to_peers[1] == 0 and r.to_grid[1] == pytest.approx(800)
