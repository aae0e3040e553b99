"""Guard rails on shedding: one tier per pass, stop and alert when it does not help.

An open home-energy controller's emergency shedding once "walked a whole house
dark", down to the circuit feeding the controller itself (sem-community #896):
each cycle it found the overload still there and switched off the next thing.
An overload that shedding cannot cure (an unmanaged 7 kW load, a faulty
meter) must stop the walk, not finish it. :class:`ShedGuard` stands between
what the dispatch asks to shed (3 × members, W, per tier) and the
:class:`~controller.island.shedding.ShedPlanner`:

* **never the critical tier**: its row is cut to 0 (``GUARD_CRITICAL``); the
  critical tier is the grid-former's and the plan's to protect, not the
  shedder's to sacrifice;
* **at most one tier per pass**: a pass is a cycle at least ``settle_s``
  after the last (so its effect has been measured); the first pass may shed
  flexible loads, the next essential ones (``GUARD_ONE_TIER``);
* **stop after two passes that did not move the limiting measure**: the caller
  gives the measure that shedding is meant to bring down (W over the limit:
  the grid-former's overload, or the shed no switch realised). A pass that
  brought it down by less than ``min_move_share`` of its value before is a
  pass that did not move it; after ``stall_passes`` of them in a row the guard
  stops escalating, keeps what is already off, and raises one alert
  (``GUARD_STALLED``) until the measure is back under the limit;
* **never an infrastructure load** (controller, router, medical): the loads
  flagged ``infrastructure`` or ``medical`` in ``[[members]] devices`` are
  handed to the planner as protected (``GUARD_INFRASTRUCTURE``), and a member's
  contactor is never opened while it feeds one.

Opt-outs stay the planner's (``shed_optout``). Every refusal carries a reason
code (:data:`REASONS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from controller.config import CoopConfig

FloatArray = NDArray[np.float64]

#: Reason codes of the guard rails, with what they mean.
REASONS = {
    "GUARD_CRITICAL": "the critical tier is never shed",
    "GUARD_ONE_TIER": "at most one tier more per pass",
    "GUARD_STALLED": "passes did not move the limiting measure: shedding stopped, alert raised",
    "GUARD_INFRASTRUCTURE": "an infrastructure load (controller, router, medical) is never shed",
    "GUARD_MEDICAL": "a medical load is never shed",
}
#: Tiers the guard may open, in order (row indices of a per-tier shed).
OPEN_ORDER = (2, 1)  # flexible, then essential
TIER_NAMES = ("critical", "essential", "flexible")
TOL_W = 1.0
#: While the grid-former reports an overload, the limiting measure is at least this (W):
#: the load it drops was never served, so no meter shows it, and the controller's
#: estimate (:mod:`controller.island.outage`) sees only the part that was served before.
#: Measured in the ``unmanaged-load`` rehearsal (2 households, a 7 kW load on a 3.3 kW
#: grid-former): estimates of 0 to 450 W while the simulator dropped ~4 kW. With the
#: floor, passes that leave the alarm up do not move the measure: two of them stop the
#: walk (#21). An estimate above it is used as it is.
OVERLOAD_MEASURE_W = 1000.0


def limiting_measure(over_w: float, overloaded: bool | None) -> float:
    """The guard's limiting measure: W over the limit, at least :data:`OVERLOAD_MEASURE_W`
    while the grid-former reports an overload (None: no fresh grid-former, unknown)."""
    return max(over_w, OVERLOAD_MEASURE_W) if overloaded else over_w


@dataclass(slots=True)
class GuardDecision:
    """One cycle of the guard.

    Attributes:
        shed_w: 3 × N what the planner may shed this cycle.
        level: tiers open to shedding (0 none, 1 flexible, 2 flexible + essential).
        new_pass: this cycle was a pass (it may open a tier).
        refusals: (reason code, detail) for what the guard held back.
        alert: the alert raised this cycle, if any (raised once per episode).
    """

    shed_w: FloatArray
    level: int
    new_pass: bool
    refusals: list[tuple[str, str]] = field(default_factory=list)
    alert: str | None = None

    @property
    def allowed(self) -> frozenset[str]:
        """Plug tiers open to shedding (for ``ShedPlanner.plan(allowed=...)``)."""
        return frozenset(TIER_NAMES[r] for r in OPEN_ORDER[:self.level])


class ShedGuard:
    """The guard rails (see the module docstring); one per controller."""

    def __init__(self, settle_s: float = 60.0, min_move_share: float = 0.25,
                 stall_passes: int = 2) -> None:
        if settle_s < 0 or not 0 < min_move_share <= 1 or stall_passes < 1:
            raise ValueError("settle_s ≥ 0, min_move_share in (0, 1] and stall_passes ≥ 1")
        self.settle_s, self.min_move_share, self.stall_passes = (settle_s, min_move_share,
                                                                 stall_passes)
        self.level = 0
        self.passes = 0  # passes that opened a tier in this episode
        self.stalled = 0  # passes in a row that did not move the measure
        self.stopped = False
        self._last_pass = -np.inf
        self._measure_at_pass: float | None = None

    def step(self, now: float, measure_w: float, shed_w: FloatArray) -> GuardDecision:
        """Cap ``shed_w`` (3 × N, W per tier) for this cycle.

        ``measure_w``: the limiting measure, W over its limit (≤ 0: within it).
        """
        shed = np.maximum(np.nan_to_num(np.asarray(shed_w, dtype=float)), 0.0)
        if shed.ndim != 2 or shed.shape[0] != 3:
            raise ValueError(f"shed_w: expected 3 × members, got shape {shed.shape}")
        refusals: list[tuple[str, str]] = []
        if shed[0].sum() > TOL_W:
            refusals.append(("GUARD_CRITICAL", f"{shed[0].sum():.0f} W of critical load kept on"))
            shed[0] = 0.0
        over = measure_w > TOL_W
        alert = None
        new_pass = now - self._last_pass >= self.settle_s
        if not over:
            # Within the limit: the episode ends; the tiers close as the dispatch's shed does.
            self.stalled, self.stopped, self.passes = 0, False, 0
            self._measure_at_pass = None
            asked = max((k for k, row in enumerate(shed[::-1]) if row.sum() > TOL_W),
                        default=-1)  # 0 flexible, 1 essential, -1 nothing
            self.level = min(self.level, asked + 1)
            new_pass = False
        elif new_pass and not self.stopped:
            before = self._measure_at_pass
            if before is not None and before - measure_w < self.min_move_share * before:
                self.stalled += 1
            elif before is not None:
                self.stalled = 0
            if self.stalled >= self.stall_passes:
                self.stopped = True
                alert = (f"GUARD_STALLED: {self.stalled} shed passes did not move the limiting "
                         f"measure ({measure_w:.0f} W over); shedding stopped at "
                         f"{self._open_text()}, critical tier on: a coordinator must look")
                new_pass = False
            else:
                # Still over the limit: one tier more (the dispatch's rows may name the
                # member's own tier only; the plugs of a tier are what the pass opens).
                if self.level < len(OPEN_ORDER):
                    self.level += 1
                    self.passes += 1
                self._last_pass, self._measure_at_pass = now, measure_w
        else:
            new_pass = False
        if self.stopped:
            refusals.append(("GUARD_STALLED", f"{measure_w:.0f} W over; held at "
                             f"{self._open_text()}"))
        for k, row in enumerate(OPEN_ORDER):
            if k >= self.level and shed[row].sum() > TOL_W:
                refusals.append(("GUARD_ONE_TIER" if not self.stopped else "GUARD_STALLED",
                                 f"{TIER_NAMES[row]} {shed[row].sum():.0f} W waits"))
                shed[row] = 0.0
        return GuardDecision(shed, self.level, new_pass, refusals, alert)

    def _open_text(self) -> str:
        return " + ".join(TIER_NAMES[r] for r in OPEN_ORDER[:self.level]) or "nothing"


def protected_loads(config: CoopConfig) -> dict[str, str]:
    """Load id (as the poller names it) → reason code, for loads never to be shed."""
    from controller.load_ids import load_devices

    out = {}
    for _, _, lid, dev in load_devices(config):
        if dev.medical:
            out[lid] = "GUARD_MEDICAL"
        elif dev.infrastructure:
            out[lid] = "GUARD_INFRASTRUCTURE"
    return out
