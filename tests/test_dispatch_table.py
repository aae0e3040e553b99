"""Dispatch as tables: inputs → expected split, in Wh over a one-hour tick."""

from __future__ import annotations

import numpy as np
import pytest

from dispatch import CoopLimits, Fleet, FleetState, dispatch_tick

HOUR = 3600.0
NO_LIMITS = CoopLimits()


def run(pv, load, cap=None, stored=None, *, floor=None, reserve=None, power=1e9, eff=1.0,
        offered=None, tier=None, key=None, grid_charge=None, pool=None, held=None,
        policy="prorata", limits=NO_LIMITS, valid=None, hysteresis=None):
    n = len(pv)
    cap = np.array(cap if cap is not None else [0.0] * n, float)
    fleet = Fleet(cap, np.array(floor or [0.0] * n, float), np.full(n, power), np.full(n, power),
                  np.full(n, eff), reserve_wh=None if reserve is None else np.array(reserve, float),
                  hysteresis_wh=None if hysteresis is None else np.array(hysteresis, float),
                  offered=offered, tier=tier, key=key, grid_charge=grid_charge)
    stored = np.array(stored if stored is not None else [0.0] * n, float)
    state = FleetState(stored, np.array(pool if pool is not None else stored, float),
                       np.array(held or [False] * n))
    return dispatch_tick(fleet, state, np.array(pv, float), np.array(load, float),
                         np.ones(n, bool) if valid is None else np.array(valid), HOUR, policy,
                         limits)


CASES = [
    # name, kwargs, expected
    ("own pv first", dict(pv=[500], load=[300]),
     {"own_pv_used": [300], "to_grid": [200], "from_grid": [0]}),
    ("own battery before peers", dict(pv=[1000, 0], load=[0, 400], cap=[500, 0]),
     {"to_battery": [500, 0], "to_peers": [400, 0], "from_peers": [0, 400], "to_grid": [100, 0]}),
    ("battery covers own deficit", dict(pv=[0, 0], load=[300, 0], cap=[1000, 0],
                                        stored=[800, 0]),
     {"from_battery": [300, 0], "from_grid": [0, 0]}),
    ("pro-rata to deficit", dict(pv=[900, 0, 0], load=[0, 300, 900]),
     {"to_peers": [900, 0, 0], "from_peers": [0, 225, 675], "from_grid": [0, 75, 225]}),
    ("givers give pro-rata to surplus", dict(pv=[300, 100, 0], load=[0, 0, 200]),
     {"to_peers": [150, 50, 0], "to_grid": [150, 50, 0], "from_peers": [0, 0, 200]}),
    ("equal share with water-filling", dict(pv=[900, 0, 0, 0], load=[0, 100, 500, 600],
                                            policy="equal"),
     {"from_peers": [0, 100, 400, 400], "from_grid": [0, 0, 100, 200]}),
    ("static keys, the unused part passed on", dict(pv=[600, 0, 0, 0], load=[0, 100, 800, 800],
                                                    policy="static", key=[1, 4, 1, 1]),
     {"from_peers": [0, 100, 250, 250]}),
    ("tiers: critical first", dict(pv=[500, 0, 0], load=[0, 400, 400], policy="tiers",
                                   tier=[0, 1, 0]),
     {"from_peers": [0, 100, 400], "from_grid": [0, 300, 0]}),
    ("reserve holds on-grid", dict(pv=[0], load=[500], cap=[1000], stored=[300],
                                   reserve=[200]),
     {"from_battery": [100], "from_grid": [400]}),
    ("hysteresis latch holds above reserve", dict(pv=[0], load=[500], cap=[1000], stored=[250],
                                                  reserve=[200], hysteresis=[100], held=[True]),
     {"from_battery": [0], "from_grid": [500]}),
    ("islanded: reserve usable, then shed", dict(pv=[0], load=[500], cap=[1000], stored=[300],
                                                 reserve=[200], floor=[100],
                                                 limits=CoopLimits(islanded=True)),
     {"from_battery": [200], "shed": [300], "from_grid": [0]}),
    ("islanded: flexible tier shed first", dict(pv=[600, 0, 0], load=[0, 500, 500],
                                                tier=[0, 2, 0], limits=CoopLimits(islanded=True)),
     {"from_peers": [0, 100, 500], "shed": [0, 400, 0]}),
    ("islanded: pv curtailed when nothing absorbs it", dict(pv=[900], load=[100], cap=[300],
                                                           limits=CoopLimits(islanded=True)),
     {"to_battery": [300], "curtailed": [500], "to_grid": [0]}),
    ("offered battery charges from neighbours' surplus", dict(
        pv=[1000, 0], load=[0, 0], cap=[0, 5000], offered=[False, True]),
     {"to_coop_battery": [1000, 0], "battery_from_coop": [0, 1000], "to_grid": [0, 0]}),
    ("offered battery serves neighbours down to its reserve", dict(
        pv=[0, 0], load=[0, 800], cap=[5000, 0], stored=[900, 0], reserve=[500, 0],
        offered=[True, False]),
     {"battery_to_coop": [400, 0], "from_coop_battery": [0, 400], "from_grid": [0, 400]}),
    ("coop surplus spares a discharging battery", dict(
        pv=[1000, 0], load=[0, 300], cap=[0, 5000], stored=[0, 2000]),
     {"from_battery": [0, 0], "from_peers": [0, 300], "to_peers": [300, 0],
      "to_grid": [700, 0]}),
    ("export cap curtails pro-rata", dict(pv=[600, 200], load=[0, 0],
                                          limits=CoopLimits(export_cap_w=400)),
     {"to_grid": [300, 100], "curtailed": [300, 100]}),
    ("import cap sheds, critical last", dict(pv=[0, 0], load=[300, 300], tier=[1, 0],
                                             limits=CoopLimits(import_cap_w=400)),
     {"from_grid": [100, 300], "shed": [200, 0]}),
    ("grid charging restores the reserve", dict(pv=[0], load=[0], cap=[1000], stored=[100],
                                                reserve=[400], grid_charge=[True]),
     {"grid_to_battery": [300], "from_grid": [0]}),
    ("invalid household takes no part", dict(pv=[0, 800], load=[500, 0], cap=[1000, 0],
                                             stored=[500, 0], valid=[False, True]),
     {"from_battery": [0, 0], "to_peers": [0, 0], "to_grid": [0, 800]}),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_dispatch_table(name, kwargs, expected) -> None:
    r = run(**kwargs)
    for field, values in expected.items():
        np.testing.assert_allclose(getattr(r, field), values, atol=1e-9, err_msg=field)


def test_efficiency_is_booked_as_losses() -> None:
    r = run([1000], [0], cap=[10_000], eff=0.81)  # 0.9 each way
    assert r.to_battery[0] == pytest.approx(1000)
    assert r.losses[0] == pytest.approx(100)
    assert r.stored_wh[0] == pytest.approx(900)
    r2 = run([0], [450], cap=[10_000], stored=[900], eff=0.81)
    assert r2.from_battery[0] == pytest.approx(450)
    assert r2.losses[0] == pytest.approx(50)
    assert r2.stored_wh[0] == pytest.approx(400)


def test_grid_origin_energy_never_becomes_liberated() -> None:
    # The battery holds 800 Wh, of which only 200 Wh came from coop generation.
    r = run([0], [400], cap=[1000], stored=[800], pool=[200])
    assert r.from_battery[0] == pytest.approx(400)
    assert r.from_battery_coop[0] == pytest.approx(100)
    assert r.liberated[0] == pytest.approx(100)
    assert r.pool_coop_wh[0] == pytest.approx(100)
    # grid charging adds to the content, never to the coop-origin pool
    g = run([0], [0], cap=[1000], stored=[100], pool=[100], reserve=[400], grid_charge=[True])
    assert g.stored_wh[0] == pytest.approx(400) and g.pool_coop_wh[0] == pytest.approx(100)


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match="policy 'fair'"):
        run([100, 0], [0, 100], policy="fair")


def test_islanded_an_offered_battery_is_not_blocked_by_its_owners_trickle_of_sun() -> None:
    """Dusk, islanded: the owner's 2 W of PV used to charge its own offered battery, which
    then (never charging and discharging at once) served nobody, and the critical neighbour
    was shed. Now the trickle goes to the neighbour and the battery serves the rest."""
    cap = np.array([0.0, 7700.0])
    fleet = Fleet(cap, cap * 0.05, np.array([0.0, 3300.0]), np.array([0.0, 3300.0]),
                  np.array([1.0, 0.92]), offered=np.array([False, True]),
                  tier=np.array([0, 1]))
    state = FleetState(np.array([0.0, 0.272 * 7700]), np.zeros(2), np.zeros(2, dtype=bool))
    r = dispatch_tick(fleet, state, np.array([0.0, 2.0]), np.array([596.0, 0.0]), None, 3600.0,
                      "prorata", CoopLimits(islanded=True))
    assert r.shed.sum() == 0.0
    assert r.from_peers[0] == pytest.approx(2.0) and r.to_peers[1] == pytest.approx(2.0)
    assert r.from_coop_battery[0] == pytest.approx(594.0) == r.battery_to_coop[1]
    assert r.to_battery[1] == 0.0
