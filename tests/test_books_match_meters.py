"""Issue 17, first acceptance point: the books match the meters, and the batteries.

The demo coop (the ten simulated households of ``commonwatt demo``) over real Modbus
TCP, from 06:00 to 22:00 on the demo's sunny day: batteries fill up by midday and
discharge in the evening. Between two controller cycles (150 s, the demo at 150x)
the simulator's physics advances in 6 s steps, as the demo's background ticker does,
so the meters' counters integrate what the controller only samples once a cycle.

Checked for every member, over every settled interval, against the world rather
than the books:

* gross import and export across its meter, as booked, against the meter's own
  counters (the deltas the ledger recorded) and against what the simulator
  physically integrated: within 1 % or 20 Wh, whichever is larger (the issue's
  bound; measured here: at most 15 Wh off on 38 kWh of export, 10 Wh on 293 Wh of
  import: measured battery charge the counters did not see, kept as measured);
* the SoC rebuilt from the booked battery flows (start + charged - discharged -
  losses, as the ledger defines them) against the SoC the battery reports, at every
  interval's end: within 2 percentage points (measured: at most 0.33 pp);
* booked battery charge and discharge, and booked PV, against the simulator's own
  integrals (measured spreads in the constants below).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np

from controller.ledger.schema import MEMBER_COLUMNS
from controller.ledger.settle import METER_IN, METER_OUT
from tests.coop_harness import DAY0, start_harness

START_HOUR, HOURS, CYCLE_S, SUBSTEPS, SETTLEMENT_S = 6.0, 16.0, 150.0, 25, 900
CHARGED = ("to_battery", "battery_from_coop", "grid_to_battery", "battery_from_batteries")
DISCHARGED = ("from_battery", "battery_to_coop", "battery_to_grid", "battery_to_batteries")
PV = ("own_pv_used", "to_battery", "to_peers", "to_coop_battery", "to_grid", "curtailed")
#: Booked battery energy against the simulator's: measured at most 0.45 % (a battery
#: that fills up part way through a cycle reads 0 W at its end) -> 1 %.
BATTERY_SHARE = 0.01
#: Booked PV (sampled once a cycle, not settled: inverters' counters are not the meter's)
#: against the simulator's: measured at most 0.33 % -> 0.5 %.
PV_SHARE = 0.005


def _run(tmp_path: Path) -> tuple[list[dict], list[float]]:
    """Run the coop; per cycle end, the simulator's integrals and the reported SoC."""
    samples: list[dict] = []
    walls: list[float] = []

    async def go() -> None:
        h = await start_harness(tmp_path, start_hour=START_HOUR, dt_s=CYCLE_S,
                                settlement_s=SETTLEMENT_S)
        ph = h.coop.physics
        charged, discharged = np.zeros(len(ph.specs)), np.zeros(len(ph.specs))
        try:
            wall0 = time.perf_counter()
            for _ in range(int(HOURS * 3600 / CYCLE_S)):
                for _ in range(SUBSTEPS):
                    h.clock.advance(CYCLE_S / SUBSTEPS)
                    h.coop.step()
                    # The power the simulator just integrated over that step.
                    charged += np.maximum(-ph.battery_w, 0.0) * CYCLE_S / SUBSTEPS / 3600
                    discharged += np.maximum(ph.battery_w, 0.0) * CYCLE_S / SUBSTEPS / 3600
                report = await h.controller.cycle()
                samples.append({
                    "t": round(report.end_ts), "import": ph.import_wh.copy(),
                    "export": ph.export_wh.copy(), "pv": ph.pv_wh.copy(),
                    "charged": charged.copy(), "discharged": discharged.copy(),
                    "soc": report.image.soc_pct.copy(), "battery_w": report.image.battery_w.copy(),
                    "booked_in": report.booked.charged_in.copy()})
            walls.append(time.perf_counter() - wall0)
        finally:
            await h.close()

    asyncio.run(go())
    return samples, walls


def test_books_match_the_meters_and_the_batteries_over_a_demo_day(tmp_path: Path) -> None:
    samples, walls = _run(tmp_path)
    at = {s["t"]: s for s in samples}
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    ids = [r[0] for r in db.execute("SELECT id FROM members ORDER BY no")]
    rows: dict[int, dict[str, dict[str, int]]] = {}
    for start, member, *values in db.execute(
            f"SELECT start_ts, m.id, {', '.join(MEMBER_COLUMNS)} FROM member_energy e "
            "JOIN members m ON m.no = e.member_no ORDER BY start_ts"):
        rows.setdefault(start, {})[member] = dict(zip(MEMBER_COLUMNS, values, strict=True))
    # The first interval holds the first cycle, which no counter reading spans: not settled.
    starts = sorted(rows)[1:]
    assert starts[0] == DAY0 + START_HOUR * 3600 + SETTLEMENT_S
    assert len(starts) == HOURS * 3600 / SETTLEMENT_S - 1
    a, b = at[starts[0]], at[starts[-1] + SETTLEMENT_S]
    capacity = np.array(_capacities(ids))

    # Batteries filled up, and a full battery measuring 0 W was booked as taking nothing.
    full = [s for s in samples if ((s["soc"] >= 99.9) & (capacity > 0)).any()]
    assert full, "some battery reached full charge"
    for s in full:
        idle_full = (s["soc"] >= 99.9) & (s["battery_w"] == 0.0)
        assert (s["booked_in"][idle_full] == 0.0).all()
    assert sum((s["soc"] >= 99.9).sum() for s in samples) > 50

    spread = {"meter": 0.0, "physics": 0.0, "soc_pp": 0.0, "battery": 0.0, "pv": 0.0}
    for j, m in enumerate(ids):
        total = {c: sum(rows[s][m][c] or 0 for s in starts) for c in MEMBER_COLUMNS}
        for booked_names, counter, physical in ((METER_IN, "meter_import", "import"),
                                                (METER_OUT, "meter_export", "export")):
            booked = sum(total[f] for f in booked_names)
            counted = total[counter]
            truth = b[physical][j] - a[physical][j]
            bound = max(0.01 * truth, 20.0)
            assert abs(booked - counted) <= bound, (m, counter, booked, counted)
            assert abs(booked - truth) <= bound, (m, physical, booked, truth)
            spread["meter"] = max(spread["meter"], abs(booked - counted))
            spread["physics"] = max(spread["physics"], abs(booked - truth))
        pv_truth = b["pv"][j] - a["pv"][j]
        pv = sum(total[f] for f in PV)
        assert abs(pv - pv_truth) <= PV_SHARE * pv_truth + 2, (m, pv, pv_truth)
        spread["pv"] = max(spread["pv"], abs(pv - pv_truth) / max(pv_truth, 1.0))
        if capacity[j] == 0:
            assert sum(total[f] for f in (*CHARGED, *DISCHARGED)) == 0, m
            continue
        for names, key in ((CHARGED, "charged"), (DISCHARGED, "discharged")):
            truth = b[key][j] - a[key][j]
            booked = sum(total[f] for f in names)
            assert abs(booked - truth) <= BATTERY_SHARE * truth + 2, (m, key, booked, truth)
            spread["battery"] = max(spread["battery"], abs(booked - truth) / max(truth, 1.0))
        # The SoC as the books rebuild it, against the SoC the battery reports.
        stored = a["soc"][j] / 100.0 * capacity[j]
        for s in starts:
            r = rows[s][m]
            stored += (sum(r[f] for f in CHARGED) - sum(r[f] for f in DISCHARGED)
                       - r["losses"])
            gap_pp = abs(stored / capacity[j] * 100.0 - at[s + SETTLEMENT_S]["soc"][j])
            assert gap_pp <= 2.0, (m, s, gap_pp)
            spread["soc_pp"] = max(spread["soc_pp"], gap_pp)
        assert sum(total[f] for f in CHARGED) > 1000, m  # it charged, through midday
    _statements_add_up(tmp_path / "ledger.sqlite", ids, spread)
    # Wall time and the spreads seen, for whoever tunes the bounds (pytest -s).
    print(f"\n{len(samples)} cycles in {walls[0]:.1f} s; largest spreads: {spread}")


def _statements_add_up(path: Path, ids: list[str], spread: dict[str, float]) -> None:
    """Every member's statement of the month lists every flow across its meter and its
    battery: the lines through the meter add up to what the meter counted (the whole
    month, the unsettled first interval included: within the same 1 % or 20 Wh; measured
    at most 28 Wh, where 1 % was larger), the battery's lines to its booked
    charge and discharge, the load's and PV's to theirs, and the text prints every line."""
    from controller.accounts.figures import energy_wh
    from controller.accounts.statement import balances, member_statement, render_text
    from controller.ledger import LedgerReader
    from controller.ledger.periods import month_start

    reader = LedgerReader(path)
    month = month_start(DAY0 + START_HOUR * 3600)
    for m in ids:
        st = member_statement(reader, m, month)
        b = balances(st.totals)
        wh = energy_wh(st.totals)
        for section, counter in (("in through the meter", "meter_import"),
                                 ("out through the meter", "meter_export")):
            counted = st.totals[counter]
            assert counted is not None, (m, counter)  # every demo meter has counters
            assert abs(b[section]["total"] - counted) <= max(0.01 * counted, 20), (
                m, section, b[section], counted)
            spread["statement"] = max(spread.get("statement", 0.0),
                                      abs(b[section]["total"] - counted))
        assert b["own load"]["total"] == wh["load"] and b["own PV"]["total"] == wh["pv"]
        assert b["into own battery"]["total"] == sum(st.totals[f] or 0 for f in CHARGED)
        assert b["out of own battery"]["total"] == sum(
            st.totals[f] or 0 for f in (*DISCHARGED, "losses"))
        text = render_text(st)
        for lines in b.values():  # each line printed, to the Wh
            for value in lines["lines"].values():
                assert f"{value / 1000:.3f}" in text, (m, value)


def _capacities(ids: list[str]) -> list[float]:
    """Each member's battery capacity as the simulator serves it (0 without one)."""
    from simulators.household import demo_households

    by_id = {s.member_id: s.battery_wh for s in demo_households(len(ids))}
    return [by_id[m] for m in ids]
