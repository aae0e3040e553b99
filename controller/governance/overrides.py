"""A coordinator's overrides: a battery setpoint or a load switched by hand, each with an end.

Every override is a mandate: it carries an end time at most :data:`MAX_OVERRIDE_S`
ahead and lapses by itself then (or earlier, when ended through the API). The
store is in memory only: a restarted controller starts with none, the safe
side of forgetting.

The cycle applies them after the dispatch and before the safety layer
(:func:`controller.safety.clamp_setpoints`), so an override replaces what the
dispatch asked of a battery but never crosses the SoC floor, the reserve or
the power rating: it can only narrow what the safety layer allows.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

#: The longest an override may last: a day. Power must not harden.
MAX_OVERRIDE_S = 86_400
#: ``shed_optout``: a member keeps one of its own flexible plugs out of shedding (#18).
OverrideKind = Literal["battery_setpoint", "load_switch", "shed_optout"]


@dataclass(frozen=True, slots=True)
class Override:
    """One override in force (or ended: ``ended_ts`` set)."""

    id: int
    kind: OverrideKind
    member: str
    start_ts: float
    end_ts: float
    created_by: str
    #: battery_setpoint: W, discharge > 0 (the safety layer may still clamp it).
    power_w: float | None = None
    #: load_switch: the load's device name (``member/loadN``) and the state it is held in.
    load_id: str | None = None
    on: bool | None = None
    ended_ts: float | None = None
    ended_by: str | None = None

    def active(self, now: float) -> bool:
        """Whether it is in force at ``now``."""
        return self.ended_ts is None and self.start_ts <= now < self.end_ts

    def as_dict(self) -> dict[str, Any]:
        """For JSON."""
        return asdict(self)


class OverrideError(ValueError):
    """An override refused; the message names the field."""


class OverrideStore:
    """The overrides of one running controller; safe to use from the API's threads.

    Args:
        on_lapse: called once with each override that reached its end time by
            itself (the API records it in the audit log).
    """

    def __init__(self, on_lapse: Callable[[Override], None] | None = None) -> None:
        self.on_lapse = on_lapse
        self._items: dict[int, Override] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, kind: OverrideKind, member: str, now: float, end_ts: float,
            created_by: str, *, power_w: float | None = None, load_id: str | None = None,
            on: bool | None = None) -> Override:
        """Start an override now, until ``end_ts``; :class:`OverrideError` names a bad field."""
        if not math.isfinite(end_ts) or end_ts <= now:
            raise OverrideError("until: the end time must be in the future")
        if end_ts - now > MAX_OVERRIDE_S:
            raise OverrideError(f"until: an override lasts at most {MAX_OVERRIDE_S // 3600} h")
        if kind == "battery_setpoint" and (power_w is None or not math.isfinite(power_w)):
            raise OverrideError("power_w: a finite number of watts is required")
        if kind == "load_switch" and (load_id is None or on is None):
            raise OverrideError("load, on: both are required for a load_switch")
        if kind == "shed_optout" and load_id is None:
            raise OverrideError("load: required for a shed_optout")
        with self._lock:
            item = Override(next(self._ids), kind, member, now, end_ts, created_by,
                            power_w=power_w, load_id=load_id, on=on)
            self._items[item.id] = item
        return item

    def end(self, override_id: int, now: float, by: str) -> Override | None:
        """End an override early; None when there is none in force with that id."""
        with self._lock:
            item = self._items.get(override_id)
            if item is None or not item.active(now):
                return None
            ended = Override(**{**asdict(item), "ended_ts": now, "ended_by": by})
            self._items[override_id] = ended
            return ended

    def listing(self, now: float) -> list[Override]:
        """Every override still in force, then those ended or lapsed, newest first."""
        self.expire(now)
        with self._lock:
            items = list(self._items.values())
        return sorted(items, key=lambda o: (not o.active(now), -o.id))

    def active(self, now: float) -> list[Override]:
        """The overrides in force at ``now`` (lapsed ones are reported first)."""
        self.expire(now)
        with self._lock:
            return [o for o in self._items.values() if o.active(now)]

    def expire(self, now: float) -> list[Override]:
        """Mark every override past its end as lapsed; the ones that lapsed now."""
        with self._lock:
            lapsed = [Override(**{**asdict(o), "ended_ts": o.end_ts, "ended_by": "lapsed"})
                      for o in self._items.values() if o.ended_ts is None and now >= o.end_ts]
            for o in lapsed:
                self._items[o.id] = o
        if self.on_lapse is not None:
            for o in lapsed:
                self.on_lapse(o)
        return lapsed


def battery_overrides(requested_w: NDArray[np.float64], member_ids: Sequence[str],
                      overrides: Sequence[Override]) -> NDArray[np.float64]:
    """The dispatch's battery requests with the overridden members' replaced (the newest
    override of a member wins); the safety layer still clamps the result."""
    out = np.array(requested_w, dtype=np.float64, copy=True)
    index = {m: i for i, m in enumerate(member_ids)}
    for o in sorted(overrides, key=lambda o: o.id):
        if o.kind == "battery_setpoint" and o.member in index and o.power_w is not None:
            out[index[o.member]] = o.power_w
    return out


class LoadCommand(NamedTuple):
    """A plug to switch (what :meth:`controller.polling.Poller.switch_loads` takes)."""

    load_id: str
    on: bool


def load_states(overrides: Sequence[Override]) -> dict[str, bool]:
    """The loads held by an override: load id → on (the newest override wins)."""
    return {o.load_id: bool(o.on) for o in sorted(overrides, key=lambda o: o.id)
            if o.kind == "load_switch" and o.load_id is not None}


def opted_out(overrides: Sequence[Override]) -> frozenset[str]:
    """The loads their members keep out of shedding now (``shed_optout`` in force)."""
    return frozenset(o.load_id for o in overrides
                     if o.kind == "shed_optout" and o.load_id is not None)


def load_commands(wanted: dict[str, bool], held_off: set[str]) -> list[LoadCommand]:
    """This cycle's plug commands: every overridden load to its state (renewing an off's
    mandate), and back on every load an override held off and no longer holds."""
    return ([LoadCommand(lid, on) for lid, on in wanted.items()]
            + [LoadCommand(lid, True) for lid in sorted(held_off - wanted.keys())])
