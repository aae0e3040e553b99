"""The island eve: batteries charged to the plan's starting SoC before the island day.

Tesla's Storm Watch and AlphaESS's Storm Guard fill the batteries before an
announced outage and revert afterwards. Commonwatt does it for the coop's
planned island (issue #21, point 4): from ``[island] eve_h`` (24 h) before the
island's start, a *mandate* holds each battery at or charges it to its starting
SoC from the island plan (``required_start`` of the saved plan, per battery), with
no export (the coop's export cap is 0; its federation surplus offer so is 0).

The mandate is expiring and audited: it lapses by itself at the island's start
time (``expired``), ends when the island starts (``island started``), or when
a coordinator cancels it (``cancelled``). Whichever way, the batteries' prior
modes (what was read back from each device when the eve began) are written
back and read back (:mod:`controller.island.eve_mode`); the eve is ``RESTORED``
only when the read-back agrees, and it retries every cycle until then.

This module is the pure state machine, a table as :mod:`.grid_state` is: no
I/O, time passed in. :mod:`controller.island.eve_run` does the device work and
the audit rows. States::

    IDLE ─(eve window opens)→ CHARGING ⇄ HOLDING ─(start / expiry / cancel)→
    RESTORING ─(read-back agrees)→ RESTORED

``CHARGING`` while a battery is below its target, ``HOLDING`` when every one
is at it (within :data:`HOLD_BAND_PCT`: a battery that sags below it charges
again). Per battery the step says ``charge`` (below target) or ``hold`` (at it:
it may charge from PV, it must not discharge).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

#: Default eve: how long before the island's start the mandate begins, h.
EVE_H = 24.0
#: A battery is at its target within this band, %: no chatter between charge and hold.
HOLD_BAND_PCT = 1.0


class EveState(Enum):
    """Where the island eve is."""

    IDLE = "idle"
    CHARGING = "charging"
    HOLDING = "holding"
    RESTORING = "restoring"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class EveMandate:
    """An eve for the island starting at ``island_ts``, from ``begins_ts``.

    ``targets_pct`` is each member's battery target (NaN: no battery, or none in
    the plan). The mandate lapses at ``island_ts`` whatever happens.
    """

    requested_by: str
    begins_ts: float
    island_ts: float
    targets_pct: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.island_ts > self.begins_ts:
            raise ValueError("eve: island_ts must be after begins_ts")
        bad = [t for t in self.targets_pct if not (math.isnan(t) or 0.0 <= t <= 100.0)]
        if bad:
            raise ValueError(f"eve targets_pct: expected 0 to 100 %, got {bad[0]}")


@dataclass(frozen=True, slots=True)
class EveMachine:
    """The eve's memory: state, since when, the mandate taken up, why it ended."""

    state: EveState = EveState.IDLE
    since: float = 0.0
    mandate: EveMandate | None = None
    end_cause: str | None = None


@dataclass(frozen=True, slots=True)
class EveInputs:
    """What this cycle says: the standing mandate, SoCs, whether the island has started,
    a cancel, and the read-back of a restore tried this cycle (None: none tried)."""

    mandate: EveMandate | None
    soc_pct: NDArray[np.float64]
    island_started: bool = False
    cancelled_by: str | None = None
    restored: bool | None = None


@dataclass(frozen=True, slots=True)
class EveRecord:
    """A transition, for the audit log."""

    ts: float
    from_state: EveState
    to_state: EveState
    cause: str


@dataclass(frozen=True, slots=True)
class EveStep:
    """The machine after a step, each member's battery order, and the record (if any)."""

    machine: EveMachine
    charge: NDArray[np.bool_]
    hold: NDArray[np.bool_]
    record: EveRecord | None = None

    @property
    def active(self) -> bool:
        """The mandate is in force: batteries charge or hold, no export."""
        return self.machine.state in (EveState.CHARGING, EveState.HOLDING)


@dataclass(frozen=True, slots=True)
class _Ctx:
    m: EveMachine
    i: EveInputs
    now: float

    def below(self) -> NDArray[np.bool_]:
        """Members whose battery is under its target (by more than the band when holding)."""
        mandate = self.m.mandate or self.i.mandate
        if mandate is None:
            return np.zeros(len(self.i.soc_pct), dtype=bool)
        target = np.asarray(mandate.targets_pct, dtype=float)
        band = HOLD_BAND_PCT if self.m.state is EveState.HOLDING else 0.0
        soc = np.asarray(self.i.soc_pct, dtype=float)
        # An unknown SoC charges: the eve is the safe side of not knowing.
        return ~np.isnan(target) & ~(soc >= target - band)

    def window(self) -> bool:
        """A new mandate whose eve is open now."""
        md = self.i.mandate
        return (md is not None and md != self.m.mandate
                and md.begins_ts <= self.now < md.island_ts)

    def ended(self) -> str | None:
        """Why the mandate in force ends now (None: it goes on)."""
        md = self.m.mandate
        if self.i.cancelled_by:
            return f"cancelled by {self.i.cancelled_by}"
        if self.i.island_started:
            return "island started"
        if md is not None and self.now >= md.island_ts:
            return "mandate expired at the island's start time"
        if self.i.mandate != md:
            return "mandate withdrawn"
        return None


_Rule = tuple[Callable[[_Ctx], bool], EveState, Callable[[_Ctx], str]]
_S = EveState
_ENDS: tuple[_Rule, ...] = (
    (lambda c: c.ended() is not None, _S.RESTORING, lambda c: str(c.ended())),
)

#: First matching row wins; none: no change.
TABLE: dict[EveState, tuple[_Rule, ...]] = {
    _S.IDLE: (
        (lambda c: c.window() and c.below().any(), _S.CHARGING,
         lambda c: "eve began: batteries below the plan's starting SoC"),
        (lambda c: c.window(), _S.HOLDING, lambda c: "eve began: batteries at the plan's SoC"),
    ),
    _S.CHARGING: (*_ENDS, (lambda c: not c.below().any(), _S.HOLDING,
                           lambda c: "every battery at the plan's starting SoC")),
    _S.HOLDING: (*_ENDS, (lambda c: bool(c.below().any()), _S.CHARGING,
                          lambda c: "a battery fell below the plan's starting SoC")),
    _S.RESTORING: (
        (lambda c: c.i.restored is True, _S.RESTORED,
         lambda c: "prior modes restored (read back)"),
    ),
    _S.RESTORED: (
        (lambda c: c.window() and c.below().any(), _S.CHARGING,
         lambda c: "eve began: batteries below the plan's starting SoC"),
        (lambda c: c.window(), _S.HOLDING, lambda c: "eve began: batteries at the plan's SoC"),
    ),
}


def step(machine: EveMachine, inputs: EveInputs, now: float) -> EveStep:
    """Advance the eve by one cycle (first matching row of :data:`TABLE`)."""
    ctx = _Ctx(machine, inputs, now)
    rule = next((r for r in TABLE[machine.state] if r[0](ctx)), None)
    if rule is not None:
        to, cause = rule[1], rule[2](ctx)
        takes = machine.state in (_S.IDLE, _S.RESTORED)
        machine = EveMachine(to, now, inputs.mandate if takes else machine.mandate,
                             cause if to is _S.RESTORING else (
                                 None if takes else machine.end_cause))
        record = EveRecord(now, ctx.m.state, to, cause)
    else:
        record = None
    n = len(inputs.soc_pct)
    if machine.state not in (_S.CHARGING, _S.HOLDING):
        none = np.zeros(n, dtype=bool)
        return EveStep(machine, none, none.copy(), record)
    below = _Ctx(machine, inputs, now).below()
    targets = np.asarray(machine.mandate.targets_pct if machine.mandate else [math.nan] * n)
    return EveStep(machine, below, ~below & ~np.isnan(targets), record)


def eve_mandate(requested_by: str, island_ts: float, targets_pct: list[float],
                eve_h: float = EVE_H) -> EveMandate:
    """The mandate for an island at ``island_ts``: it begins ``eve_h`` hours before."""
    if not 0 < eve_h <= 168:
        raise ValueError(f"eve_h: expected more than 0 and at most 168 h, got {eve_h}")
    return EveMandate(requested_by, island_ts - eve_h * 3600.0, island_ts, tuple(targets_pct))


def battery_orders_w(step_: EveStep, dispatch_w: NDArray[np.float64],
                     max_charge_w: NDArray[np.float64], soc_pct: NDArray[np.float64],
                     capacity_wh: NDArray[np.float64], dt_s: float) -> NDArray[np.float64]:
    """Setpoints (W, discharge > 0) under the eve: ``charge`` members charge towards their
    target at up to their rating (no further than the target within the cycle), ``hold``
    members may charge (PV) but not discharge; the others keep the dispatch's."""
    out = np.array(dispatch_w, dtype=float, copy=True)
    md = step_.machine.mandate
    if md is None or not step_.active:
        return out
    target = np.asarray(md.targets_pct, dtype=float)
    gap_wh = np.nan_to_num((target - np.nan_to_num(soc_pct)) / 100.0 * capacity_wh).clip(0)
    need_w = gap_wh * 3600.0 / max(dt_s, 1.0)
    charge = np.minimum(np.nan_to_num(max_charge_w), need_w)
    out = np.where(step_.charge, -np.maximum(charge, np.maximum(-out, 0.0)), out)
    return np.where(step_.hold, np.minimum(out, 0.0), out)


__all__ = ["EVE_H", "HOLD_BAND_PCT", "TABLE", "EveInputs", "EveMachine", "EveMandate",
           "EveRecord", "EveState", "EveStep", "battery_orders_w", "eve_mandate", "step"]
