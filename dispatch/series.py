"""Batched dispatch: T ticks × N households, for days and years of simulation.

The loop runs over time only (battery state carries from tick to tick); every
tick is vectorized over households. Flows that are the rest of a balance
(grid, losses) are derived from the accumulated ones at the end instead of
being summed tick by tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dispatch import kernel
from dispatch.fleet import CoopLimits, Fleet, FleetState
from dispatch.tick import NO_LIMITS, DispatchEngine

FloatArray = NDArray[np.float64]

#: Flows summed tick by tick; the rest follow from the balances.
_ACCUMULATED = (
    "own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers", "from_peers",
    "to_coop_battery", "from_coop_battery", "from_coop_battery_coop", "battery_from_coop",
    "battery_to_coop", "grid_to_battery", "curtailed", "shed",
)


@dataclass(slots=True)
class SeriesResult:
    """Per-member totals over the whole series, in Wh (arrays of length N)."""

    totals: dict[str, FloatArray]
    state: FleetState
    ticks: int
    import_capped_wh: float
    export_capped_wh: float

    @property
    def coop(self) -> dict[str, float]:
        """Coop-wide sums of every total."""
        return {k: float(v.sum()) for k, v in self.totals.items()}


def run_series(
    fleet: Fleet,
    state: FleetState,
    pv_w: FloatArray,
    load_w: FloatArray,
    dt_s: float,
    policy: str = "prorata",
    limits: CoopLimits = NO_LIMITS,
    fused: bool | None = None,
) -> SeriesResult:
    """Dispatch ``pv_w`` and ``load_w`` (shape T × N, mean W per step) tick after tick.

    ``fused`` picks the numba kernel or the numpy path (default: the kernel when installed).
    """
    pv_w = np.asarray(pv_w, dtype=np.float64)
    load_w = np.asarray(load_w, dtype=np.float64)
    if pv_w.shape != load_w.shape or pv_w.ndim != 2 or pv_w.shape[1] != fleet.size:
        raise ValueError(f"pv_w and load_w must both be T × {fleet.size}; got {pv_w.shape} "
                         f"and {load_w.shape}")
    engine = DispatchEngine(fleet, policy, limits, fused)
    engine.keep_inputs = True
    n = fleet.size
    sums = {name: np.zeros(n) for name in (*_ACCUMULATED, "pv", "load")}
    current = state.copy()
    start = np.clip(current.stored_wh, 0.0, fleet.capacity_wh)
    import_capped = export_capped = 0.0
    totals = np.zeros((len(kernel.SERIES_ROWS), n))
    spare = current.copy()  # the kernel writes the next state here, never over its input
    for t in range(pv_w.shape[0]):
        if engine.tick_totals(current, pv_w[t], load_w[t], dt_s, totals, spare):
            current, spare = spare, current
            continue
        result = engine.tick(current, pv_w[t], load_w[t], None, dt_s)
        for name in _ACCUMULATED:
            flow = getattr(result, name)
            if flow is not engine.zeros:  # a stage this fleet does not use
                sums[name] += flow
        sums["pv"] += engine.pv_wh
        sums["load"] += engine.load_wh
        import_capped += result.import_capped_wh
        export_capped += result.export_capped_wh
        current = result.state
    for row, name in enumerate(kernel.SERIES_ROWS):  # either path ran, never both
        sums[name] += totals[row]
    end_state = current.copy()
    return SeriesResult(
        _complete(fleet, sums, start, end_state.stored_wh),
        end_state, pv_w.shape[0], import_capped, export_capped,
    )


def _complete(fleet: Fleet, sums: dict[str, FloatArray], start: FloatArray,
              end: FloatArray) -> dict[str, FloatArray]:
    s = sums
    own, pv, load = s["own_pv_used"], s["pv"], s["load"]
    to_grid = pv - own - s["to_battery"] - s["to_peers"] - s["to_coop_battery"] - s["curtailed"]
    from_grid = (load - own - s["from_battery"] - s["from_peers"] - s["from_coop_battery"]
                 - s["shed"])
    eta = fleet.leg_efficiency
    charged = s["to_battery"] + s["battery_from_coop"] + s["grid_to_battery"]
    drawn = s["from_battery"] + s["battery_to_coop"]
    out = dict(s)
    out.update(
        to_grid=np.maximum(to_grid, 0.0),
        from_grid=np.maximum(from_grid, 0.0),
        losses=charged * (1.0 - eta) + drawn * (1.0 / eta - 1.0),
        served=load - s["shed"],
        liberated=own + s["from_peers"] + s["from_battery_coop"] + s["from_coop_battery_coop"],
        battery_start=start.copy(), battery_end=end.copy(),
    )
    return out
