"""Property tests: dispatch conserves energy on random fleets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dispatch import Fleet, dispatch_tick

power = st.floats(0, 20_000, allow_nan=False)


@st.composite
def fleets(draw):
    n = draw(st.integers(1, 40))
    def vec(elements):
        return draw(arrays(np.float64, n, elements=elements))
    capacity = vec(st.floats(0, 20_000))
    floor = capacity * vec(st.floats(0, 0.5))
    stored = floor + (capacity - floor) * vec(st.floats(0, 1))
    pool = stored * vec(st.floats(0, 1))
    fleet = Fleet(capacity, floor, vec(st.floats(0, 10_000)), vec(st.floats(0, 10_000)),
                  vec(st.floats(0.5, 1.0)))
    valid = draw(arrays(np.bool_, n))
    return fleet, vec(power), vec(power), stored, pool, valid, draw(st.floats(1, 3600))


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_conservation_and_limits(case) -> None:
    fleet, pv, load, stored, pool, valid, dt = case
    r = dispatch_tick(fleet, pv, load, stored, pool, valid, dt)
    h = dt / 3600
    scale = max(1.0, float(pv.sum() + load.sum()) * h)
    tol = 1e-9 * scale
    flows = ("own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers",
             "from_peers", "to_grid", "from_grid", "curtailed", "shed", "losses")
    for name in flows:
        assert (getattr(r, name) >= -tol).all(), name
    # per household: demand side and generation side balance
    np.testing.assert_allclose(r.load, np.where(valid, load * h, 0), atol=tol)
    np.testing.assert_allclose(r.pv, np.where(valid, pv * h, 0), atol=tol)
    # per battery: energy in = energy out + change of content + losses
    np.testing.assert_allclose(r.stored_wh - stored, r.to_battery - r.from_battery - r.losses,
                               atol=tol)
    # per coop: everything sent to peers arrives at peers
    assert abs(r.to_peers.sum() - r.from_peers.sum()) <= tol
    # limits: power ratings, SoC floor and ceiling
    assert (r.to_battery <= fleet.max_charge_w * h + tol).all()
    assert (r.from_battery <= fleet.max_discharge_w * h + tol).all()
    assert (r.stored_wh >= np.minimum(fleet.soc_min_wh, stored) - tol).all()
    assert (r.stored_wh <= fleet.capacity_wh + tol).all()
    # origin: liberated never exceeds served, coop pool never exceeds content
    assert (r.liberated <= r.served + tol).all()
    assert (r.pool_coop_wh <= r.stored_wh + tol).all()
    # no sharing while both a surplus and a deficit go to the grid
    assert min(r.to_grid.sum(), r.from_grid.sum()) <= tol
