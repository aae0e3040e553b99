"""Build ledgers for tests through the real booking and commit path."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from controller.ledger import CycleEnergy, IntervalBook, LedgerWriter
from controller.ledger.accumulator import CarryState
from dispatch import LEDGER_FIELDS
from dispatch.rounding import PAIRED


def random_flows(rng: np.random.Generator, n: int, scale: float = 50.0) -> dict[str, np.ndarray]:
    """Random non-negative flows (Wh) that pair up across the coop as the dispatch's do."""
    flows = {f: rng.random(n) * scale * (rng.random(n) < 0.7) for f in LEDGER_FIELDS}
    for receiver, sender in PAIRED.items():
        weights = rng.random(n) + 1e-9
        flows[receiver] = flows[sender].sum() * weights / weights.sum()
    flows["from_battery_coop"] = flows["from_battery"] * rng.random(n)
    flows["from_coop_battery_coop"] = flows["from_coop_battery"] * rng.random(n)
    return flows


def write_ledger(path: Path, member_ids: tuple[str, ...], step: int, t0: float, cycle_s: float,
                 cycles: Iterable[dict[str, np.ndarray]], counters: np.ndarray | None = None,
                 ) -> list[float]:
    """Book ``cycles`` back to back from ``t0``; return each cycle's end. Counters (3 x N)
    grow by nothing unless given (then they are read as given at every cycle)."""
    n = len(member_ids)
    writer = LedgerWriter(path, step, [(m, m.upper()) for m in member_ids])
    parts, _ = writer.saved_parts()
    book = IntervalBook(member_ids, step, None, CarryState.fresh(n))
    ends, t = [], t0
    try:
        for flows in cycles:
            reading = np.full((3, n), np.nan) if counters is None else counters
            for interval, commit_parts in book.add_cycle(
                    CycleEnergy(t, t + cycle_s, flows, np.ones(n, dtype=bool), reading)):
                writer.commit(interval, commit_parts)
            writer.save(book.open_parts())
            t += cycle_s
            ends.append(t)
    finally:
        writer.close()
    return ends
