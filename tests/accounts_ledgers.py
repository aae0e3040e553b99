"""Random but valid ledgers for the accounts tests, written by the real ledger writer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from controller.accounts.figures import METER_IN, METER_OUT
from controller.ledger import CycleEnergy, IntervalBook, LedgerWriter
from controller.ledger.accumulator import CarryState
from dispatch.rounding import LEDGER_FIELDS, PAIRED

#: Four hours before February: ledgers built from here straddle a month boundary.
JAN31_20H = int(datetime(2026, 1, 31, 20, tzinfo=UTC).timestamp())
#: Sending fields of the pairs, and the fields that are parts of another.
_UNPAIRED = ("own_pv_used", "from_battery", "from_grid", "to_battery", "to_grid", "curtailed",
             "grid_to_battery", "losses")


def random_flows(rng: np.random.Generator, valid: np.ndarray) -> dict[str, np.ndarray]:
    """One cycle's Wh per member; the pairs pair, parts stay below their whole."""
    n = len(valid)
    on = valid.astype(float)

    def draw(scale: float) -> np.ndarray:
        return rng.uniform(0.0, scale, n) * on * (rng.random(n) < 0.7)

    flows = {f: np.zeros(n) for f in LEDGER_FIELDS}
    for f in _UNPAIRED:
        flows[f] = draw(30.0)
    flows["shed"] = draw(5.0)
    flows["from_battery_coop"] = flows["from_battery"] * rng.random(n)
    if valid.sum() >= 2:
        for receiving, giving in PAIRED.items():
            sent, weights = draw(20.0), draw(1.0)
            if weights.sum() > 0 and sent.sum() > 0:
                flows[giving] = sent
                flows[receiving] = weights / weights.sum() * sent.sum()
    flows["from_coop_battery_coop"] = flows["from_coop_battery"] * rng.random(n)
    return flows


def build_ledger(path: Path, members: tuple[str, ...] = ("a", "b", "c"), *, seed: int = 0,
                 t0: int = JAN31_20H, cycles: int = 96, cycle_s: int = 300, step: int = 900,
                 gap_prob: float = 0.03, invalid_prob: float = 0.05,
                 islanded_prob: float = 0.05, meters: tuple[bool, ...] | None = None,
                 import_error: float | tuple[float, ...] = 0.0) -> None:
    """Write a ledger of ``cycles`` random cycles from ``t0``, with gaps and unknown devices.

    ``meters[i]`` says whether member ``i`` has energy counters (default: all
    but the last); import counters run ``import_error`` fast (one, or one per member).
    """
    rng = np.random.default_rng(seed)
    n = len(members)
    has = np.array(meters if meters is not None else [i < n - 1 for i in range(n)])
    writer = LedgerWriter(path, step, [(m, m.upper()) for m in members])
    book = IntervalBook(tuple(members), step, None, CarryState.fresh(n))
    counters = np.where(has, rng.uniform(0.0, 1e6, (3, n)), np.nan)
    t = float(t0)
    try:
        for _ in range(cycles):
            if rng.random() < gap_prob:  # the controller was down; the meters counted on
                gap = int(rng.integers(1, 8)) * cycle_s
                counters += np.where(has, rng.uniform(0.0, 20.0, (3, n)) * gap / cycle_s, 0.0)
                t += gap
            valid = rng.random(n) >= invalid_prob
            flows = random_flows(rng, valid)
            # what passes the meter: peers' energy comes in and goes out through it too
            imported = sum(flows[f] for f in METER_IN if f in flows)
            counters[0] += imported * (1 + np.asarray(import_error))
            counters[1] += sum(flows[f] for f in METER_OUT if f in flows)
            counters[2] += sum(flows[f] for f in ("own_pv_used", "to_battery", "to_peers",
                                                  "to_coop_battery", "to_grid"))
            counters += np.where(~valid & has, rng.uniform(0.0, 20.0, (3, n)), 0.0)
            missing = tuple(f"{m}/meter" for m, ok in zip(members, valid, strict=True)
                            if not ok)
            cycle = CycleEnergy(t, t + cycle_s, flows, valid, counters.copy(),
                                islanded=bool(rng.random() < islanded_prob), missing=missing)
            for interval, parts in book.add_cycle(cycle):
                writer.commit(interval, parts)
            t += cycle_s
        writer.save(book.open_parts())
        assert writer.flush()
    finally:
        writer.close()


TARIFF_TOML = """
[tariff]
currency = "EUR"
peer_price_per_kwh = 0.15
grid_import_per_kwh = 0.30
grid_export_per_kwh = 0.07
coop_fee_per_kwh = 0.01
"""


def config_text(ledger: Path, members: tuple[str, ...], tariff: bool = True) -> str:
    """A minimal valid config whose ``[storage] ledger`` is ``ledger``."""
    lines = [f'name = "Accounts test"\n[storage]\nledger = "{ledger}"\n',
             TARIFF_TOML if tariff else ""]
    for i, m in enumerate(members):
        lines.append(f'[[members]]\nid = "{m}"\nname = "{m.upper()}"\ndevices = [\n'
                     f'  {{ kind = "meter", host = "127.0.0.1", port = 5020, unit = {i + 1} }},'
                     "\n]\n")
    return "".join(lines)
