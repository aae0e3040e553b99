"""The controller's dispatch path: its fleet each cycle and one engine kept across cycles.

A :class:`~dispatch.tick.DispatchEngine` allocates its buffers and derives its
floors from the fleet once; building one every cycle cost 39.6 ms a cycle at
10^6 households against 11.5 ms warm (issue 17). :class:`EngineKeeper` keeps one
engine and its fleet, and rebuilds both only when what they are built from
changes: the batteries' ratings read from the devices (capacity, power limits,
whether a battery is there), the islanded flag, or the limits at the point of
common coupling. The check is a bitwise compare of four arrays (about 1 ms at
10^6, ``python -m bench dispatch``), never a rebuild.

Arrays of a result are the engine's buffers, valid until its next tick:
:func:`detached` copies a result that must outlive it (the cycle's report).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from dispatch import CoopLimits, Fleet, FleetState, TickResult
from dispatch.tick import DispatchEngine

#: Image arrays a fleet is built from (besides the config and the islanded flag).
_RATINGS = ("has_battery", "capacity_wh", "max_charge_w", "max_discharge_w")
#: The flows a result carries, as fields (``losses`` is derived).
_FLOWS = tuple(f for f in TickResult.__slots__ if f not in  # type: ignore[attr-defined]
               ("state", "leg_efficiency", "hours", "import_capped_wh", "export_capped_wh"))


class Ratings(Protocol):
    """What a fleet is read from each cycle (a :class:`~controller.process_image.ProcessImage`)."""

    has_battery: np.ndarray
    capacity_wh: np.ndarray
    max_charge_w: np.ndarray
    max_discharge_w: np.ndarray


@dataclass(frozen=True, slots=True)
class FleetParams:
    """The configured part of the fleet, one element per member (percentages of capacity)."""

    floor_pct: np.ndarray
    reserve_pct: np.ndarray
    hysteresis_pct: np.ndarray
    offered: np.ndarray
    grid_forming: np.ndarray
    grid_charge: np.ndarray
    efficiency: np.ndarray
    limit_w: np.ndarray
    tier: np.ndarray
    key: np.ndarray

    def fleet(self, image: Ratings, islanded: bool) -> Fleet:
        """Battery parameters for this cycle: device ratings capped by the configured limits."""
        usable = image.has_battery & np.isfinite(image.capacity_wh)
        capacity = np.where(usable, image.capacity_wh, 0.0)
        return Fleet(
            capacity_wh=capacity,
            soc_min_wh=capacity * self.floor_pct / 100.0,
            max_charge_w=np.where(usable, np.minimum(image.max_charge_w, self.limit_w), 0.0),
            max_discharge_w=np.where(usable, np.minimum(image.max_discharge_w, self.limit_w),
                                     0.0),
            efficiency=self.efficiency,
            # The reserve is kept *for* the island: islanded, it is there to be used,
            # down to the hard floor (the island plan counts on it the same way).
            reserve_wh=capacity * (self.floor_pct if islanded else self.reserve_pct) / 100.0,
            hysteresis_wh=capacity * self.hysteresis_pct / 100.0,
            # Islanded, the grid-forming battery is every house's slack whatever the config
            # says: it serves the neighbours physically, so the books say so too.
            offered=(self.offered | (self.grid_forming & islanded)) & usable,
            grid_charge=self.grid_charge & usable,
            grid_forming=self.grid_forming & usable,
            tier=self.tier,
            key=self.key,
        )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal (a NaN equals the same NaN): a float compare with ``equal_nan`` is
    25 times slower."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a.view(np.int64), b.view(np.int64)))
    return bool(np.array_equal(a, b))


class EngineKeeper:
    """One fleet and one :class:`DispatchEngine`, rebuilt only when their inputs change."""

    def __init__(self, params: FleetParams, policy: str) -> None:
        self.params, self.policy = params, policy
        self._ratings: tuple[np.ndarray, ...] | None = None
        self._islanded: bool | None = None
        self._fleet: Fleet | None = None
        self._engine: DispatchEngine | None = None
        #: How many fleets and engines were built (tests and the benchmark read them).
        self.fleets_built = 0
        self.engines_built = 0

    def fleet(self, image: Ratings, islanded: bool) -> Fleet:
        """This cycle's fleet: the last one while the ratings and the islanded flag hold."""
        ratings = tuple(np.asarray(getattr(image, k)) for k in _RATINGS)
        if (self._fleet is None or islanded != self._islanded or self._ratings is None
                or not all(_same(a, b) for a, b in zip(ratings, self._ratings, strict=True))):
            self._fleet = self.params.fleet(image, islanded)
            # Copies: the image's arrays may be refilled in place by the next freeze.
            self._ratings = tuple(a.copy() for a in ratings)
            self._islanded = islanded
            self._engine = None
            self.fleets_built += 1
        return self._fleet

    def engine(self, fleet: Fleet, limits: CoopLimits) -> DispatchEngine:
        """The kept engine for ``fleet`` and ``limits`` (built anew when either changed)."""
        engine = self._engine
        if engine is None or engine.fleet is not fleet or engine.limits != limits:
            engine = self._engine = DispatchEngine(fleet, self.policy, limits)
            self.engines_built += 1
        return engine

    def tick(self, fleet: Fleet, state: FleetState, pv_w: np.ndarray, load_w: np.ndarray,
             valid: np.ndarray | None, dt_s: float, limits: CoopLimits) -> TickResult:
        """One tick on the kept engine; the result's arrays last until the next tick."""
        return self.engine(fleet, limits).tick(state, pv_w, load_w, valid, dt_s)


def detached(result: TickResult) -> TickResult:
    """``result`` with arrays of its own, for a report that outlives the engine's next tick."""
    return replace(result, state=result.state.copy(),
                   **{f: getattr(result, f).copy() for f in _FLOWS})
