"""The coop's own rules, live: each configured rule runs in the controller over real Modbus
TCP simulators; what it planned equals the dispatch recomputed on the same readings, and
what it booked equals the same rules splitting what was measured (battery power included)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from controller.ledger.measured import stored_from_soc
from dispatch import LEDGER_FIELDS, FleetState, dispatch_tick
from tests.coop_harness import start_harness

BATTERY = "  reserve_pct = 10"
CYCLES = 14


def _run(tmp_path: Path, hour: float = 16.0, **overrides: str) -> list[tuple]:
    """Run the controller; return (report, state before, fleet, limits) per cycle."""
    out = []

    async def go() -> None:
        h = await start_harness(tmp_path, start_hour=hour, settlement_s=300, **overrides)
        try:
            for _ in range(CYCLES):
                carry = h.controller.book.carry
                before = (carry.pools_wh.copy(), carry.held.copy())
                report = await h.step()
                out.append((report, before, h.controller.fleet(report.image),
                            h.controller.limits(), h.controller.book.provisional()))
            out.append(h.controller.config)
        finally:
            await h.close()

    asyncio.run(go())
    return out


def _check_against_dispatch(runs: list[tuple], policy: str) -> dict[str, np.ndarray]:
    """Recompute each cycle's plan and booking from its process image; return the booked
    float totals."""
    totals = {f: 0.0 for f in LEDGER_FIELDS}
    for report, (pools, held), fleet, limits, _ in runs:
        image = report.image
        stored = stored_from_soc(image.soc_pct, fleet.capacity_wh)
        state = FleetState(stored, np.clip(pools, 0, stored), held)
        dt = report.end_ts - report.start_ts
        expected = dispatch_tick(fleet, state, image.pv_production_w, image.load_w, image.valid,
                                 dt, policy, limits)
        booked = dispatch_tick(fleet, state, image.pv_production_w, image.load_w, image.valid,
                               dt, policy, limits,
                               battery_w=np.where(image.has_battery, image.battery_w, np.nan))
        for f in LEDGER_FIELDS:
            np.testing.assert_allclose(getattr(report.result, f), getattr(expected, f),
                                       atol=1e-9, err_msg=f)
            np.testing.assert_allclose(getattr(report.booked, f), getattr(booked, f),
                                       atol=1e-9, err_msg=f)
            totals[f] += getattr(booked, f)
        # PV held back beyond what the dispatch placed (the curtailment estimate: caps in
        # force, from the uncurtailed neighbours on the grid) is booked as curtailed too
        held = sum((report.held_back_wh or {}).values(), np.zeros(len(image.valid)))
        totals["curtailed"] += np.maximum(held - booked.curtailed, 0.0)
    return totals


def _booked(tmp_path: Path, runs: list[tuple]) -> dict[str, np.ndarray]:
    """Committed + still-open whole Wh per member, by field."""
    from controller.ledger import LedgerReader

    reader = LedgerReader(tmp_path / "ledger.sqlite")
    ids = runs[0][0].image.member_ids
    committed = reader.totals_by_member()
    provisional = runs[-1][4]
    return {f: np.array([committed[m][f] for m in ids]) + provisional[f] for f in LEDGER_FIELDS}


RULES = {
    "equal": {'sharing = "prorata"': 'sharing = "equal"'},
    "static": {'sharing = "prorata"': 'sharing = "static"', 'id = "h02"': 'id = "h02"\nkey = 0',
               'id = "h03"': 'id = "h03"\nkey = 4'},
    "tiers": {'sharing = "prorata"': 'sharing = "tiers"',
              'id = "h04"': 'id = "h04"\ntier = "critical"',
              'id = "h05"': 'id = "h05"\ntier = "flexible"'},
    "offered": {BATTERY: BATTERY + "\n  offered = true"},
    "reserve": {BATTERY: "  reserve_pct = 95\n  reserve_hysteresis_pct = 3"},
    "grid_charging": {BATTERY: "  reserve_pct = 95\n  grid_charging = true"},
    "import_cap": {"[ledger]": "[grid]\nimport_cap_w = 1500\n\n[ledger]"},
    "export_cap": {"[ledger]": "[grid]\nexport_cap_w = 300\n\n[ledger]"},
}
HOURS = {"import_cap": 19.0, "grid_charging": 19.0, "reserve": 19.0}


@pytest.mark.parametrize("rule", list(RULES))
def test_rule_runs_live_and_books_what_the_dispatch_decides(tmp_path: Path, rule: str) -> None:
    runs = _run(tmp_path, HOURS.get(rule, 13.0), **RULES[rule])
    config, runs = runs[-1], runs[:-1]
    policy = config.policy.sharing
    floats = _check_against_dispatch(runs, policy)
    booked = _booked(tmp_path, runs)
    n = len(config.members)
    for f in LEDGER_FIELDS:  # the ledger's whole Wh follow the dispatch; the rest is carried
        assert np.abs(booked[f] - floats[f]).max() < n, f
    results = [r for r, *_ in runs]
    dt_h = [(r.end_ts - r.start_ts) / 3600 for r in results]
    ids = list(results[0].image.member_ids)
    if rule == "static":  # key 0: never receives from peers while others do
        assert sum(r.result.from_peers[ids.index("h02")].sum() for r in results) == 0
        assert sum(r.result.from_peers.sum() for r in results) > 0
    if rule == "offered":  # the coop used someone's offered battery
        assert sum(r.result.battery_from_coop.sum() + r.result.battery_to_coop.sum()
                   for r in results) > 0
    if rule == "reserve":  # below a 95 % reserve, on-grid, nobody's battery discharges
        below = [r for r in results if (np.nan_to_num(r.image.soc_pct, nan=100) < 95).any()]
        assert below
        for r in below:
            low = np.nan_to_num(r.image.soc_pct, nan=100) < 95
            assert r.result.from_battery[low].sum() == 0 and (r.setpoints_w[low] <= 0).all()
    if rule == "grid_charging":
        assert sum(r.result.grid_to_battery.sum() for r in results) > 0
    if rule == "import_cap":
        for r, h in zip(results, dt_h, strict=True):
            assert (r.result.from_grid.sum() + r.result.grid_to_battery.sum()) <= 1500 * h + 1e-6
    if rule == "export_cap":
        for r, h in zip(results, dt_h, strict=True):
            assert r.result.to_grid.sum() <= 300 * h + 1e-6
        assert sum(r.result.curtailed.sum() for r in results) > 0


def test_the_readme_policies_are_all_accepted() -> None:
    from controller.config import PolicyConfig

    for policy in ("prorata", "equal", "static", "tiers"):
        assert PolicyConfig(sharing=policy).sharing == policy


def test_past_the_export_cap_the_inverters_are_capped_for_real(tmp_path: Path) -> None:
    """PV nothing can absorb is curtailed through the inverters' model 123 limit, which
    the controller refreshes while needed and releases when it stops."""
    seen: dict[str, object] = {}

    async def go() -> None:
        h = await start_harness(tmp_path, start_hour=13.0, settlement_s=300,
                                **{"[ledger]": "[grid]\nexport_cap_w = 300\n\n[ledger]"})
        try:
            for _ in range(CYCLES):
                report = await h.step()
            t = h.clock.now()
            seen["caps"] = h.controller.pv_caps_w.copy()
            seen["limited"] = h.coop.physics.pv_limited(t).copy()
            seen["pv"] = report.image.pv_w.copy()
            seen["available"] = h.coop.physics.pv_available_w(t).copy()
            seen["open"] = h.controller.book.provisional()
            seen["sim_cap_wh"] = float(h.coop.physics.limit_curtailed_wh.sum())
            await h.controller.poller.release_pv_limits()
            h.coop.step()
            seen["after_release"] = h.coop.physics.pv_limited(h.clock.now()).copy()
        finally:
            await h.close()

    asyncio.run(go())
    caps, limited = seen["caps"], seen["limited"]
    assert np.isfinite(caps).any(), "the controller capped some inverters"
    assert (limited == np.isfinite(caps)).all(), "exactly those inverters are capped"
    assert (seen["pv"][limited] < seen["available"][limited]).all(), "they produce less"
    assert not seen["after_release"].any(), "released on stop"
    # booked with its cause: on the grid, past the export cap, to the Wh of curtailed
    from controller.ledger import LedgerReader
    from controller.ledger.schema import CAUSE_FIELDS

    totals = LedgerReader(tmp_path / "ledger.sqlite").totals()
    wh = {c: int(totals[c] or 0) + int(seen["open"][c].sum())
          for c in ("curtailed", *CAUSE_FIELDS)}
    assert wh["curtailed"] > 0 and wh["curtailed_export_cap"] == wh["curtailed"], wh
    # ... estimated from the uncurtailed neighbours (no island plan on the grid), against
    # what the simulator's caps held back: measured 2,255 against 2,259 Wh (0.2 %) -> 1 %
    assert wh["curtailed"] == pytest.approx(seen["sim_cap_wh"], rel=0.01), (wh, seen)
