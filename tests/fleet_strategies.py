"""Hypothesis strategies for random fleets with every dispatch feature."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from dispatch import POLICIES, CoopLimits, Fleet, FleetState


@st.composite
def fleet_cases(draw, max_households: int = 30):
    """(fleet, state, pv_w, load_w, valid, dt_s, policy, limits) with random features."""
    n = draw(st.integers(1, max_households))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cap = rng.uniform(0, 15_000, n) * (rng.random(n) < 0.7)
    soc_min = cap * rng.uniform(0, 0.2, n)
    fleet = Fleet(
        cap, soc_min, rng.uniform(0, 6000, n), rng.uniform(0, 6000, n), rng.uniform(0.5, 1, n),
        reserve_wh=cap * rng.uniform(0, 0.5, n), hysteresis_wh=cap * rng.uniform(0, 0.1, n),
        offered=rng.random(n) < draw(st.sampled_from([0.0, 0.5, 1.0])),
        grid_charge=rng.random(n) < draw(st.sampled_from([0.0, 0.3])),
        tier=rng.integers(0, 3, n), key=rng.uniform(0, 3, n) * (rng.random(n) < 0.9),
    )
    stored = cap * rng.random(n)
    state = FleetState(stored, stored * rng.random(n), rng.random(n) < 0.3)
    pv = rng.uniform(0, 10_000, n) * (rng.random(n) < 0.8)
    load = rng.uniform(0, 5000, n) * (rng.random(n) < 0.95)
    valid = rng.random(n) < 0.9
    limits = CoopLimits(
        import_cap_w=draw(st.sampled_from([float("inf"), 2000.0, 0.0])),
        export_cap_w=draw(st.sampled_from([float("inf"), 1000.0])),
        islanded=draw(st.booleans()),
    )
    dt = draw(st.sampled_from([1.0, 60.0, 900.0, 3600.0]))
    return fleet, state, pv, load, valid, dt, draw(st.sampled_from(POLICIES)), limits
