"""PV caps from curtailment, as a table: when to cap, hold, raise and release."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.island.curtail import pv_limits

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(("pv", "curtailed", "current", "rated", "expected", "why"), [
    (3000, 0, NAN, INF, NAN, "nothing to curtail, no cap: nothing to do"),
    (3000, 10, NAN, INF, NAN, "a few watts are rounding, not a reason to cap"),
    (3000, 1200, NAN, INF, 1800, "cap at what is used"),
    (1800, 300, 1800, INF, 1500, "capped and still curtailing: lower the cap"),
    (3000, 0, 3000, INF, 3300, "producing at the cap, nothing curtailed: raise by 10 %"),
    (980, 0, 1000, INF, 1200, "raise by at least 200 W"),
    (900, 0, 1000, INF, 1000, "just under the cap: hold it"),
    (1000, 0, 1800, INF, NAN, "well below the cap (a cloud): release"),
    (4900, 0, 4900, 5000, NAN, "the raised cap would pass the rating: release"),
    (NAN, 0, 1000, INF, NAN, "production unknown: release (the cap reverts anyway)"),
    (2000, 2500, NAN, INF, 0, "curtail everything: cap at 0 W"),
])
def test_pv_limits_table(pv, curtailed, current, rated, expected, why) -> None:
    got = pv_limits(np.array([pv], float), np.array([curtailed], float),
                    np.array([current], float), np.array([rated], float))[0]
    if math.isnan(expected):
        assert math.isnan(got), why
    else:
        assert got == pytest.approx(expected), why


def test_a_cap_never_exceeds_production_while_curtailing() -> None:
    rng = np.random.default_rng(1)
    pv = rng.uniform(0, 8000, 1000)
    curtailed = rng.uniform(0, 1, 1000) * pv
    current = np.where(rng.random(1000) < 0.5, rng.uniform(0, 8000, 1000), np.nan)
    caps = pv_limits(pv, curtailed, current, np.full(1000, 10000.0))
    need = curtailed > 20
    assert (caps[need] <= pv[need] - curtailed[need] + 1e-9).all()
    assert (caps[need] >= 0).all()
