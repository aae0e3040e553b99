"""Data of load shedding: states, events, the transition table, loads, actions, plans.

See :mod:`controller.island.shedding` for the rules; this module holds what
they work on (no logic beyond the table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Literal, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Tier = Literal["critical", "essential", "flexible"]
#: Row order of a per-tier shed (as in :data:`controller.island.plan.TIERS`).
TIERS: tuple[Tier, ...] = ("critical", "essential", "flexible")
#: Switch-off order of plug tiers within a member.
OFF_RANK = {"flexible": 0, "essential": 1, "critical": 2}
#: Sheds and margins below this (W) are nothing: float noise must not switch a plug.
TOL_W = 1.0


class State(Enum):
    """Where a switchable load is, as far as Commonwatt knows."""

    ON = "on"
    OFF_BY_COMMONWATT = "off_by_commonwatt"
    OFF_EXTERNAL = "off_external"


class Event(Enum):
    """What can happen to a load in a cycle."""

    SEEN_ON = "seen_on"
    SEEN_OFF = "seen_off"
    LAPSE = "lapse"
    SHED = "shed"
    RESTORE = "restore"
    RENEW = "renew"
    RELEASE = "release"


_S, _E = State, Event
#: (state, event) → (next state, command to send: False off / True on / None, reason).
#: A pair not in the table is a planner bug (:class:`ValueError`).
TABLE: dict[tuple[State, Event], tuple[State, bool | None, str]] = {
    (_S.ON, _E.SEEN_ON): (_S.ON, None, ""),
    (_S.ON, _E.SEEN_OFF): (_S.OFF_EXTERNAL, None, "switched off outside Commonwatt"),
    (_S.ON, _E.SHED): (_S.OFF_BY_COMMONWATT, False, "shed"),
    (_S.ON, _E.RELEASE): (_S.ON, None, ""),
    (_S.OFF_EXTERNAL, _E.SEEN_ON): (_S.ON, None, "switched on outside Commonwatt"),
    (_S.OFF_EXTERNAL, _E.SEEN_OFF): (_S.OFF_EXTERNAL, None, ""),
    (_S.OFF_EXTERNAL, _E.RELEASE): (_S.OFF_EXTERNAL, None, ""),
    (_S.OFF_BY_COMMONWATT, _E.SEEN_OFF): (_S.OFF_BY_COMMONWATT, None, ""),
    (_S.OFF_BY_COMMONWATT, _E.SEEN_ON): (_S.ON, None, "on again outside Commonwatt"),
    (_S.OFF_BY_COMMONWATT, _E.LAPSE): (_S.ON, True, "mandate lapsed without renewal"),
    (_S.OFF_BY_COMMONWATT, _E.RESTORE): (_S.ON, True, "shed fell"),
    (_S.OFF_BY_COMMONWATT, _E.RENEW): (_S.OFF_BY_COMMONWATT, False, "mandate renewed"),
    (_S.OFF_BY_COMMONWATT, _E.RELEASE): (_S.ON, True, "released (controller stops)"),
}


@dataclass(frozen=True, slots=True)
class SwitchableLoad:
    """A load Commonwatt can switch: a smart plug, or a member's household contactor.

    Attributes:
        id: unique name, the poller's device name (``member/loadN``).
        member: index of its member in the configuration.
        tier: its priority; ignored for a contactor (the member's tier decides).
        rated_w: power assumed while the plug reports none, W.
        min_on_s, min_off_s: shortest on and off times Commonwatt may cause.
        contactor: it cuts the whole member; used last.
    """

    id: str
    member: int
    tier: Tier = "flexible"
    rated_w: float | None = None
    min_on_s: float = 0.0
    min_off_s: float = 0.0
    contactor: bool = False


class PlugReading(Protocol):
    """What the planner reads of a plug (``devices.mqtt.hub.LoadReading`` fits)."""

    @property
    def power_w(self) -> float | None: ...  # noqa: D102
    @property
    def on(self) -> bool | None: ...  # noqa: D102


class Plug(NamedTuple):
    """A plug reading for callers without a driver (tests, the simulator)."""

    power_w: float = math.nan
    on: bool | None = None


@dataclass(frozen=True, slots=True)
class SwitchAction:
    """One command: switch ``load_id`` on or off, and why.

    ``event`` is what caused it (``SHED``, ``RENEW``, ``RESTORE``, ``LAPSE``,
    ``RELEASE``); ``power_w`` is what an off frees (or an on brings back);
    ``until`` is the end of an off's mandate.
    """

    load_id: str
    member: int
    on: bool
    reason: str
    event: Event
    power_w: float = math.nan
    until: float | None = None


@dataclass(frozen=True, slots=True)
class ShedPlan:
    """One cycle's decisions.

    Attributes:
        off: loads to switch off (new sheds and mandate renewals).
        on: loads to switch back on.
        skipped: (load id, why) for loads the shed needed but could not use.
        unrealised_w: per member, the shed no switch realises (NaN: shed unknown).
        held_w: per member, the power Commonwatt holds off after this plan.
    """

    off: list[SwitchAction]
    on: list[SwitchAction]
    skipped: list[tuple[str, str]]
    unrealised_w: FloatArray
    held_w: FloatArray

    @property
    def actions(self) -> list[SwitchAction]:
        """Every command, offs first."""
        return [*self.off, *self.on]


@dataclass(slots=True)
class LoadMemory:
    """What the planner remembers of one load between cycles."""

    state: State = State.ON
    since: float = -math.inf  # entered the state (unknown history: min times already met)
    until: float = math.inf  # mandate end while OFF_BY_COMMONWATT
    order: int = 0  # switch-off sequence number
    freed_w: float = 0.0  # drawn when switched off
    commanded: float = -math.inf  # last command; readings just after it may predate it
