"""The plan's storage LP keeps the rules greedy keeps: reserve, offered flag, PCC caps."""

from __future__ import annotations

import numpy as np
import pytest

from dispatch import CoopLimits, Fleet
from dispatch.lp import lp_copper_plate_import
from dispatch.plan_lp import plan_storage

T, DT = 48, 1800.0


def case(offered: bool) -> tuple[Fleet, np.ndarray, np.ndarray, np.ndarray]:
    hours = np.arange(T) * DT / 3600
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    pv = sun[:, None] * np.array([6000.0, 0.0, 3000.0])[None, :]
    load = np.full((T, 3), 700.0)
    cap = np.array([10_000.0, 10_000.0, 0.0])
    fleet = Fleet(cap, cap * 0.05, np.full(3, 3000.0), np.full(3, 3000.0), np.full(3, 0.9),
                  reserve_wh=cap * 0.2, offered=np.full(3, offered))
    return fleet, cap * 0.5, pv, load


@pytest.mark.parametrize("offered", [True, False])
def test_reserve_offered_flag_and_balance(offered: bool) -> None:
    fleet, start, pv, load = case(offered)
    plan = plan_storage(fleet, start, pv, load, DT)
    h = DT / 3600
    assert (plan.stored_wh[:, :2] >= fleet.reserve_wh[:2] - 1e-6).all()
    assert (plan.stored_wh <= fleet.capacity_wh + 1e-6).all()
    assert (plan.charge_wh <= fleet.max_charge_w * h + 1e-6).all()
    balance = ((pv - load).sum(axis=1) * h + plan.discharge_wh.sum(axis=1)
               - plan.charge_wh.sum(axis=1) + plan.grid_wh - plan.export_wh)
    np.testing.assert_allclose(balance, 0.0, atol=1e-5)
    if not offered:
        # battery 1 has no PV: it never charges, and serves only its owner's load
        assert plan.charge_wh[:, 1].max() <= 1e-6
        assert (plan.discharge_wh[:, 0] <= np.maximum(load - pv, 0)[:, 0] * h + 1e-6).all()
    assert plan.import_wh >= lp_copper_plate_import(fleet, start, pv, load, DT) - 1e-6


def test_import_cap_is_kept_and_what_it_cannot_import_is_shed() -> None:
    fleet, start, pv, load = case(True)
    cap_w = 1200.0
    plan = plan_storage(fleet, start, pv, load, DT, limits=CoopLimits(import_cap_w=cap_w))
    assert (plan.grid_wh <= cap_w * DT / 3600 + 1e-6).all()
    free = plan_storage(fleet, start, pv, load, DT)
    assert free.grid_wh.max() > cap_w * DT / 3600  # the cap binds in this case


def test_merged_batteries_stay_within_their_own_limits() -> None:
    fleet, start, pv, load = case(True)
    merged = plan_storage(fleet, start, pv, load, DT, aggregate=True)
    apart = plan_storage(fleet, start, pv, load, DT, aggregate=False)
    assert merged.import_wh == pytest.approx(apart.import_wh, rel=1e-6, abs=1e-3)
    assert (merged.stored_wh[:, :2] >= fleet.reserve_wh[:2] - 1e-6).all()
    assert (merged.stored_wh[:, :2] <= fleet.capacity_wh[:2] + 1e-6).all()
