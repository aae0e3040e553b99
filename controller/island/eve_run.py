"""The island eve in the running controller: the mandate, the devices, the audit rows.

The mandate comes from the standing island command (its start time, who asked)
and the saved plan (each battery's starting SoC, at the level the API's island
command uses: every tier where it can hold, else critical and essential). Without
a readable plan each battery's target is the command's coop SoC.

Each transition of :mod:`controller.island.eve` is an audit row
(``island_eve``), through :func:`controller.governance.events.record`: when the
eve begins (the targets and each battery's prior mode as read back), when it
ends (why, and each battery's SoC then against the plan: at ``island started``
that is the SoC reached at the island's start, which the report shows), and when
the prior modes are back (what the read-back found).

Prior modes are written back in the cycle the mandate ends, and again each cycle
until every read-back agrees. The dispatch's own setpoints go on afterwards as
before the eve (they write model 124's rates every cycle either way); what the
eve alone changed, grid charging (``ChaGriSet``) above all, is the owner's again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from controller.governance.events import record
from controller.island.eve import (
    EVE_H,
    EveInputs,
    EveMachine,
    EveMandate,
    EveState,
    EveStep,
    battery_orders_w,
    eve_mandate,
    step,
)
from controller.island.eve_mode import PriorMode, read_mode, restore_mode
from controller.island.grid_model import GridMachine, GridState, IslandCommand

if TYPE_CHECKING:
    from controller.polling import PolledDevice, Poller

log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]
AUDIT_ACTION = "island_eve"


def plan_targets(plan: dict, member_ids: list[str]) -> list[float] | None:
    """Each member's battery target from a saved plan (capacity-weighted over its
    batteries), NaN where it has none; None if the plan does not say."""
    try:
        levels = plan["required_start"]
        level = "flexible" if levels["flexible"]["holds"] else "essential"
        pct = levels[level]["batteries_pct"]
        sums: dict[str, list[float]] = {}
        for b in plan["batteries"]:
            cap, target = float(b["capacity_kwh"]), float(pct[b["battery"]])
            acc = sums.setdefault(str(b["member"]), [0.0, 0.0])
            acc[0], acc[1] = acc[0] + cap * target, acc[1] + cap
    except (KeyError, TypeError, ValueError):
        return None
    out = [sums[m][0] / sums[m][1] if m in sums and sums[m][1] > 0 else math.nan
           for m in member_ids]
    return out if all(math.isnan(t) or 0 <= t <= 100 for t in out) else None


class IslandEve:
    """Runs the eve each cycle (see the module)."""

    def __init__(self, member_ids: tuple[str, ...], has_battery: NDArray[np.bool_],
                 plan_path: Path, audit_beside: Path, eve_h: float = EVE_H) -> None:
        self.member_ids = list(member_ids)
        self.has_battery = np.asarray(has_battery, dtype=bool)
        self.plan_path, self.audit_beside, self.eve_h = plan_path, audit_beside, eve_h
        self.machine = EveMachine()
        self.last: EveStep | None = None
        self.priors: dict[str, PriorMode | None] = {}  # battery device name → its mode
        self.restore_found: dict[str, Any] = {}
        self._cancel: str | None = None
        self._plan_cache: tuple[int, list[float] | None] | None = None
        self._unread: dict[str, str] = {}  # batteries whose mode could not be read, why
        self._on_grid = False

    @property
    def no_export(self) -> bool:
        """The mandate is in force: the coop exports nothing (so offers no surplus)."""
        return self.last is not None and self.last.active and self._on_grid

    def cancel(self, by: str) -> bool:
        """A coordinator ends the eve early; False when none is in force."""
        if self.last is None or not self.last.active:
            return False
        self._cancel = by
        return True

    def mandate(self, command: object) -> EveMandate | None:
        """The eve for the standing island command, if it has one still to come."""
        if not isinstance(command, IslandCommand):
            return None
        targets = self._plan_targets()
        if targets is None:  # no plan to say per battery: the command's coop SoC for each
            targets = [command.required_soc_pct if b else math.nan for b in self.has_battery]
        try:
            return eve_mandate(command.requested_by, command.start_ts, targets, self.eve_h)
        except ValueError as exc:
            log.warning("island eve: %s", exc)
            return None

    def _plan_targets(self) -> list[float] | None:
        """The saved plan's targets, read again only when the file changes."""
        try:
            stamp = self.plan_path.stat().st_mtime_ns
        except OSError:
            return None
        if self._plan_cache is None or self._plan_cache[0] != stamp:
            targets = None
            with contextlib.suppress(OSError, ValueError):
                targets = plan_targets(json.loads(self.plan_path.read_text(encoding="utf-8")),
                                       self.member_ids)
            self._plan_cache = (stamp, targets)
        return self._plan_cache[1]

    async def step(self, now: float, grid: GridMachine, command: object, soc_pct: FloatArray,
                   poller: Poller) -> EveStep:
        """This cycle's eve; reads and restores battery modes and writes audit rows."""
        self._on_grid = grid.state is GridState.ON_GRID
        started = grid.in_force and grid.state in (GridState.GOING_OFF_GRID,
                                                   GridState.OFF_GRID)
        restored = await self._restore(poller) if self.machine.state is EveState.RESTORING \
            else None
        mandate = self.mandate(command) if not started else self.machine.mandate
        held = self.machine.mandate
        if mandate is not None and held is not None and _key(mandate) == _key(held):
            # The same island: a re-saved plan moves the targets, it is no new eve.
            self.machine = replace(self.machine, mandate=mandate)
        inputs = EveInputs(mandate, np.asarray(soc_pct, dtype=float), started, self._cancel,
                           restored)
        s = step(self.machine, inputs, now)
        if s.record is not None:
            await self._recorded(s, inputs, poller)
            if s.machine.state is EveState.RESTORING:  # back at once, read back
                self._cancel = None
                again = EveInputs(inputs.mandate, inputs.soc_pct, started, None,
                                  await self._restore(poller))
                s2 = step(s.machine, again, now)
                if s2.record is not None:
                    await self._recorded(s2, again, poller)
                s = s2
        self.machine, self.last = s.machine, s
        return s

    def orders_w(self, dispatch_w: FloatArray, max_charge_w: FloatArray, soc_pct: FloatArray,
                 capacity_wh: FloatArray, dt_s: float) -> FloatArray:
        """The dispatch's setpoints with the eve's orders (charge, hold) in force."""
        if self.last is None or not self._on_grid:  # off the grid the eve is on hold
            return dispatch_w
        return battery_orders_w(self.last, dispatch_w, max_charge_w, soc_pct,
                                np.nan_to_num(capacity_wh), dt_s)

    async def _recorded(self, s: EveStep, inputs: EveInputs, poller: Poller) -> None:
        assert s.record is not None
        rec, md = s.record, s.machine.mandate
        detail: dict[str, Any] = {"from": rec.from_state.value, "to": rec.to_state.value,
                                  "cause": rec.cause}
        if md is not None:
            detail["island_ts"] = md.island_ts
            detail["requested_by"] = md.requested_by
        if rec.from_state in (EveState.IDLE, EveState.RESTORED):  # the eve begins
            self.priors = await self._read_priors(poller)
            detail["prior_modes"] = {k: None if v is None else v.as_dict()
                                     for k, v in self.priors.items()}
        if md is not None and rec.to_state in (EveState.RESTORING, EveState.CHARGING,
                                               EveState.HOLDING):
            detail["batteries"] = {
                m: {"target_pct": md.targets_pct[i],
                    "soc_pct": float(inputs.soc_pct[i])}
                for i, m in enumerate(self.member_ids) if not math.isnan(md.targets_pct[i])}
        if rec.to_state is EveState.RESTORED:
            detail["restored"] = self.restore_found
        record(self.audit_beside, "controller", AUDIT_ACTION, _json_safe(detail))

    async def _read_priors(self, poller: Poller) -> dict[str, PriorMode | None]:
        """Every battery's mode now, read concurrently (one request each)."""
        batteries = [d for d in poller.devices if d.config.kind == "battery"]

        async def read(d: PolledDevice) -> PriorMode | None:
            client = d.client or getattr(d.driver, "client", None)
            try:
                return None if client is None else await read_mode(client)
            except Exception as exc:  # noqa: BLE001 - one battery must not stop the eve
                log.warning("island eve: %s: prior mode not read: %s", d.health.name, exc)
                self._unread[d.health.name] = str(exc)
                return None

        self._unread = {}
        modes = await asyncio.gather(*(read(d) for d in batteries))
        return {d.health.name: m for d, m in zip(batteries, modes, strict=True)}

    async def _restore(self, poller: Poller) -> bool:
        """Write every recorded prior mode back, concurrently; True when every read-back
        agrees (a battery whose mode could not be read has nothing to restore: said so)."""
        by_name = {d.health.name: d for d in poller.devices}

        async def restore(name: str, prior: PriorMode | None) -> tuple[bool, object]:
            if prior is None:
                why = self._unread.get(name)
                return True, (f"mode not read when the eve began ({why}): not restored" if why
                              else "no readable mode (not SunSpec 124): left to the dispatch")
            d = by_name.get(name)
            client = None if d is None else d.client or getattr(d.driver, "client", None)
            try:
                result = await restore_mode(client, prior)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - retried next cycle
                return False, f"restore failed: {exc}"
            return result.ok, ("read back as recorded" if result.ok else
                               {k: list(v) for k, v in result.mismatched.items()})

        names = list(self.priors)
        results = await asyncio.gather(*(restore(n, self.priors[n]) for n in names))
        self.restore_found = {n: found for n, (_, found) in zip(names, results, strict=True)}
        return all(ok for ok, _ in results)


def _key(m: EveMandate) -> tuple[str, float, float]:
    return m.requested_by, m.begins_ts, m.island_ts


def _json_safe(value: Any) -> Any:
    """NaN as null: an audit row is JSON for everyone."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
