"""What can be shed, and by what: smart plugs and a household contactor (pure: no I/O).

When the coop is islanded and the batteries and sun cannot cover every load,
the dispatch decides how much each member must shed. Only what can be
switched realises that: smart plugs (``kind = "load"``) and, last, a member's
household contactor. :class:`ShedPlanner` keeps one small state machine per
switchable load (:data:`TABLE`) and, each cycle, says which loads to switch
off and which to switch back on, with a reason each.

Rules, per member:

* off: flexible plugs first, then essential, then critical, largest power
  first within a tier, until the power switched off covers the member's shed.
  A critical plug only when the member's critical tier itself is shed and no
  flexible or essential plug of the member is still on. The contactor only
  when every plug of the member is off, the shed still exceeds what they
  freed, and the member's own tier (``MemberConfig.tier``) is shed.
* power: the plug's measured power; unknown (NaN) is its ``rated_w``, or the
  plug is skipped (with the reason). A plug drawing nothing frees nothing.
* minimum times: nothing switched off before it was on ``min_on_s``, nor back
  on before it was off ``min_off_s``.
* back on in reverse order (last off, first on), one load when what stays off
  without it still exceeds the shed by more than ``hysteresis_w``, or when the
  member sheds nothing at all. A load whose ``min_off_s`` has not passed
  blocks the ones switched off before it.
* never on what Commonwatt did not switch off: a plug seen off that
  Commonwatt did not switch is left alone.
* every off is a mandate ending ``mandate_s`` later: renewed (the off is sent
  again) while still needed, once less than half of it is left; when it lapses
  unrenewed (the controller skipped cycles), the load is switched back on.
  :meth:`ShedPlanner.release_all` switches on everything Commonwatt holds off.

What no switch can realise is ``unrealised_w``: load the physical island
cannot serve (the grid-former will see it as an outage).

The shed must be the member's shed against its *demand*, the loads Commonwatt
holds off included: add :meth:`ShedPlanner.held_w` to the measured load before
the dispatch. A shed computed on the measured load alone falls as soon as the
plugs are off, and cannot say when there is room to bring them back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from controller.island.pilot import LoadLock
from controller.island.shedding_model import (
    OFF_RANK,
    TABLE,
    TIERS,
    TOL_W,
    Event,
    FloatArray,
    LoadMemory,
    Plug,
    PlugReading,
    ShedPlan,
    State,
    SwitchableLoad,
    SwitchAction,
    Tier,
)

if TYPE_CHECKING:
    from controller.config import CoopConfig

__all__ = ["TABLE", "TIERS", "Event", "Plug", "PlugReading", "ShedPlan", "ShedPlanner", "State",
           "SwitchAction", "SwitchableLoad", "Tier"]


class ShedPlanner:
    """Per-load state machines and the shedding rules (see the module docstring)."""

    def __init__(self, loads: Sequence[SwitchableLoad], member_tiers: Sequence[Tier],
                 hysteresis_w: float = 100.0, mandate_s: float = 300.0,
                 confirm_s: float = 10.0) -> None:
        """``member_tiers``: each member's own tier (``MemberConfig.tier``), by index.

        ``confirm_s``: readings this soon after a command are not taken
        against it (the plug may not have reported yet).
        """
        ids = [ld.id for ld in loads]
        if len(set(ids)) != len(ids):
            raise ValueError(f"switchable load ids must be unique: {ids}")
        n = len(member_tiers)
        for ld in loads:
            if not 0 <= ld.member < n:
                raise ValueError(f"{ld.id}: member {ld.member} is not one of the {n} members")
        contactors = [ld.member for ld in loads if ld.contactor]
        if len(set(contactors)) != len(contactors):
            raise ValueError("at most one household contactor per member")
        if hysteresis_w < 0 or mandate_s <= 0:
            raise ValueError("hysteresis_w must be >= 0 and mandate_s > 0")
        self.loads = tuple(loads)
        self.member_tiers = tuple(member_tiers)
        self.hysteresis_w, self.mandate_s, self.confirm_s = hysteresis_w, mandate_s, confirm_s
        self._mem = {ld.id: LoadMemory() for ld in self.loads}
        self._seq = 0
        self._protected: dict[str, str] = {}
        self._allowed: frozenset[str] | None = None

    @classmethod
    def from_config(cls, config: CoopConfig, hysteresis_w: float = 100.0,
                    mandate_s: float = 300.0) -> ShedPlanner:
        """Every ``kind = "load"`` device of ``config``, named as the poller names it."""
        from controller.load_ids import load_devices

        loads = [SwitchableLoad(lid, index, member.tier if dev.contactor else
                                (dev.tier or "flexible"), dev.rated_w, dev.min_on_s,
                                dev.min_off_s, dev.contactor)
                 for index, member, lid, dev in load_devices(config)]
        return cls(loads, [m.tier for m in config.members], hysteresis_w, mandate_s)

    def state(self, load_id: str) -> State:
        """Where ``load_id`` is now."""
        return self._mem[load_id].state

    def held_w(self) -> FloatArray:
        """Per member, the power Commonwatt holds off (add it to the measured load)."""
        held = np.zeros(len(self.member_tiers))
        for ld in self.loads:
            mem = self._mem[ld.id]
            if mem.state is State.OFF_BY_COMMONWATT:
                held[ld.member] += mem.freed_w
        return held

    def held_by_kind(self) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.bool_]]:
        """What Commonwatt holds off, by what holds it: per member the power its plugs
        drew when switched off (W), per tier (critical, essential, flexible) and member
        whether a plug of that tier is held, and per member whether its contactor is."""
        plugs = np.zeros(len(self.member_tiers))
        tiers = np.zeros((3, len(self.member_tiers)), dtype=bool)
        contactor = np.zeros(len(self.member_tiers), dtype=bool)
        for ld in self.loads:
            mem = self._mem[ld.id]
            if mem.state is not State.OFF_BY_COMMONWATT:
                continue
            if ld.contactor:
                contactor[ld.member] = True
            else:
                plugs[ld.member] += mem.freed_w
                tiers[TIERS.index(ld.tier), ld.member] = True
        return plugs, tiers, contactor

    def locks(self, now: float, readings: Mapping[str, PlugReading]) -> list[LoadLock]:
        """Loads the island plan may not switch yet (issue 21.8): on within their
        ``min_on_s`` (drawing their reading, else ``rated_w``) and held off by Commonwatt
        within their ``min_off_s`` (what they drew when switched off)."""
        out = []
        for ld in self.loads:
            mem = self._mem[ld.id]
            tier = self.member_tiers[ld.member] if ld.contactor else ld.tier
            if mem.state is State.ON and now - mem.since < ld.min_on_s:
                power = self._power(ld, readings.get(ld.id))
                if power is not None and power > 0:
                    out.append(LoadLock(ld.member, tier, float(power), True,
                                        ld.min_on_s - (now - mem.since)))
            elif (mem.state is State.OFF_BY_COMMONWATT and now - mem.since < ld.min_off_s
                  and mem.freed_w > 0):
                out.append(LoadLock(ld.member, tier, mem.freed_w, False,
                                    ld.min_off_s - (now - mem.since)))
        return out

    def _fire(self, ld: SwitchableLoad, event: Event, now: float, detail: str = "",
              power_w: float = math.nan) -> SwitchAction | None:
        mem = self._mem[ld.id]
        try:
            state, command, reason = TABLE[(mem.state, event)]
        except KeyError:
            raise ValueError(f"{ld.id}: no transition from {mem.state.name} on "
                             f"{event.name}") from None
        if state is not mem.state:
            mem.state, mem.since = state, now
        if event is Event.SHED:
            self._seq += 1
            mem.order, mem.freed_w = self._seq, power_w
        if command is False:
            mem.until = now + self.mandate_s
        if command is None:
            return None
        mem.commanded = now
        return SwitchAction(ld.id, ld.member, command, f"{reason}: {detail}" if detail else reason,
                            event, mem.freed_w, mem.until if command is False else None)

    def _tiers(self, shed_w: FloatArray) -> FloatArray:
        shed = np.asarray(shed_w, dtype=np.float64)
        n = len(self.member_tiers)
        if shed.shape == (n,):
            out = np.zeros((3, n))
            for i, tier in enumerate(self.member_tiers):
                out[TIERS.index(tier), i] = shed[i]
            out[:, np.isnan(shed)] = np.nan
            shed = out
        elif shed.shape != (3, n):
            raise ValueError(f"shed_w: expected shape ({n},) or (3, {n}), got {shed.shape}")
        return np.maximum(shed, 0.0)  # NaN stays NaN

    def plan(self, now: float, shed_w: FloatArray, readings: Mapping[str, PlugReading],
             opted_out: frozenset[str] = frozenset(),
             protected: Mapping[str, str] | None = None,
             allowed: frozenset[str] | None = None) -> ShedPlan:
        """One cycle: observe the plugs, then switch off or back on what each member's shed needs.

        Args:
            now: seconds (any monotonic clock; the same one every call).
            shed_w: W ≥ 0 per member (the dispatch's, at the member's own tier)
                or 3 × members per tier (critical, essential, flexible, as the
                island plan gives it). NaN: unknown, hold what is held.
            readings: plug readings by load id; a missing one is unknown.
            opted_out: flexible plugs their members keep out of shedding for now
                (``shed_optout``): not switched off, and switched back on once their
                ``min_off_s`` has passed. The contactor is not held back by them: when
                the island needs it, safety wins over the opt-out.
            protected: loads never to be switched off, with their reason code
                (:func:`controller.island.guard.protected_loads`); nor is the contactor
                of a member with one.
            allowed: plug tiers the guard rails open this pass
                (:class:`controller.island.guard.ShedGuard`); None: every tier. With
                it, no contactor is opened (it cuts the critical tier).
        """
        self._protected = dict(protected or {})
        self._allowed = allowed
        tiers = self._tiers(shed_w)
        actions: dict[str, SwitchAction] = {}
        skipped: list[tuple[str, str]] = []

        def emit(action: SwitchAction | None) -> None:
            if action is None:
                return
            old = actions.get(action.load_id)
            if old is not None and old.on != action.on:
                action = replace(action, reason=f"{old.reason}; then {action.reason}")
            actions[action.load_id] = action

        for ld in self.loads:
            mem, reading = self._mem[ld.id], readings.get(ld.id)
            on = None if reading is None else reading.on
            if mem.state is State.OFF_BY_COMMONWATT and now >= mem.until:
                emit(self._fire(ld, Event.LAPSE, now))
            elif on is not None and now - mem.commanded >= self.confirm_s:
                self._fire(ld, Event.SEEN_ON if on else Event.SEEN_OFF, now)
            if (ld.id in opted_out and mem.state is State.OFF_BY_COMMONWATT
                    and now - mem.since >= ld.min_off_s):
                emit(self._fire(ld, Event.RESTORE, now, "opted out by its member"))

        need = np.nansum(tiers, axis=0)
        need[np.isnan(tiers).any(axis=0)] = np.nan
        held = self.held_w()
        for m in range(len(self.member_tiers)):
            if math.isnan(need[m]):
                continue
            if need[m] > held[m] + TOL_W:
                held[m] = self._shed(m, float(need[m]), float(held[m]), tiers[:, m], now,
                                     readings, emit, skipped, opted_out)
            else:
                held[m] = self._restore(m, float(need[m]), float(held[m]), now, emit, skipped)

        for ld in self.loads:
            mem = self._mem[ld.id]
            if (ld.id not in actions and mem.state is State.OFF_BY_COMMONWATT
                    and mem.until - now < self.mandate_s / 2):
                emit(self._fire(ld, Event.RENEW, now))
        unrealised = np.maximum(need - held, 0.0)
        unrealised[unrealised <= TOL_W] = 0.0
        ordered = list(actions.values())
        return ShedPlan([a for a in ordered if not a.on], [a for a in ordered if a.on],
                        skipped, unrealised, self.held_w())

    def _power(self, ld: SwitchableLoad, reading: PlugReading | None) -> float | None:
        power = None if reading is None else reading.power_w
        if power is not None and math.isfinite(power):
            return float(power)
        return ld.rated_w

    def _shed(self, m: int, need: float, held: float, tier_row: FloatArray, now: float,
              readings: Mapping[str, PlugReading], emit: _Emit,
              skipped: list[tuple[str, str]], opted_out: frozenset[str]) -> float:
        """Switch off plugs (then the contactor) of member ``m`` until ``held`` covers ``need``."""
        mine = [ld for ld in self.loads if ld.member == m]
        plugs = [ld for ld in mine if not ld.contactor]
        power = {ld.id: self._power(ld, readings.get(ld.id)) for ld in mine}
        on = [ld for ld in plugs if self._mem[ld.id].state is State.ON]
        on.sort(key=lambda ld: (OFF_RANK[ld.tier], -(power[ld.id] or 0.0), ld.id))
        own = TIERS.index(self.member_tiers[m])
        for ld in [*on, *(ld for ld in mine if ld.contactor)]:
            if held >= need - TOL_W:
                break
            mem = self._mem[ld.id]
            if mem.state is not State.ON:
                continue
            lit = [o.id for o in plugs if self._mem[o.id].state is State.ON and o is not ld
                   and o.id not in opted_out]  # an opt-out does not hold the contactor back
            why = None
            guarded = [o.id for o in mine if o.id in self._protected]
            if ld.id in self._protected:
                why = f"{self._protected[ld.id]}: never shed"
            elif ld.contactor and guarded:
                why = f"GUARD_INFRASTRUCTURE: contactor feeds {', '.join(guarded)}"
            elif self._allowed is not None and ld.contactor:
                why = "GUARD_CRITICAL: the contactor would cut the member's critical loads"
            elif self._allowed is not None and ld.tier not in self._allowed:
                why = f"GUARD_ONE_TIER: {ld.tier} waits for a later pass"
            elif ld.id in opted_out:
                why = "opted out of shedding by its member"
            elif ld.contactor and lit:
                why = f"contactor: plugs still on ({', '.join(lit)})"
            elif ld.contactor and np.nansum(tier_row[:own + 1]) <= TOL_W:
                why = f"contactor: the member's own tier ({TIERS[own]}) is not shed"
            elif not ld.contactor and ld.tier == "critical" and tier_row[0] <= TOL_W:
                why = "critical: the member's critical tier is not shed"
            elif not ld.contactor and ld.tier == "critical" and any(
                    o.tier != "critical" for o in plugs if o.id in lit):
                why = "critical: a flexible or essential plug of the member is still on"
            elif now - mem.since < ld.min_on_s:
                why = f"on for {now - mem.since:.0f} s < min_on_s {ld.min_on_s:g} s"
            elif power[ld.id] is None:
                why = "power unknown (NaN) and no rated_w"
            elif (power[ld.id] or 0.0) <= 0.0:
                why = f"draws nothing ({power[ld.id]:g} W)"
            if why is not None:
                skipped.append((ld.id, why))
                continue
            watts = float(power[ld.id] or 0.0)
            detail = (f"{'contactor' if ld.contactor else ld.tier} {watts:.0f} W "
                      f"for a shed of {need:.0f} W ({held:.0f} W off before)")
            emit(self._fire(ld, Event.SHED, now, detail, watts))
            held += watts
        return held

    def _restore(self, m: int, need: float, held: float, now: float, emit: _Emit,
                 skipped: list[tuple[str, str]]) -> float:
        """Switch member ``m``'s loads back on, last off first, while the shed allows it."""
        stack = [ld for ld in self.loads
                 if ld.member == m and self._mem[ld.id].state is State.OFF_BY_COMMONWATT]
        stack.sort(key=lambda ld: -self._mem[ld.id].order)
        for ld in stack:
            mem = self._mem[ld.id]
            rest = held - mem.freed_w
            if need > TOL_W and rest - need <= self.hysteresis_w:
                break
            if now - mem.since < ld.min_off_s:
                skipped.append((ld.id, f"off for {now - mem.since:.0f} s < min_off_s "
                                       f"{ld.min_off_s:g} s"))
                break
            detail = f"shed {need:.0f} W, {rest:.0f} W stays off"
            emit(self._fire(ld, Event.RESTORE, now, detail))
            held = rest
        return held

    def release_all(self, now: float = math.nan) -> list[SwitchAction]:
        """Switch on every load Commonwatt holds off (the controller stops)."""
        out = []
        for ld in self.loads:
            if self._mem[ld.id].state is State.OFF_BY_COMMONWATT:
                action = self._fire(ld, Event.RELEASE, now)
                if action is not None:
                    out.append(action)
        return out


class _Emit(Protocol):
    def __call__(self, action: SwitchAction | None, /) -> None: ...
