"""Reason codes: why a load was shed, limited or kept on, and why the grid state changed.

One small table for the whole island (#21): every shed, limit and refusal carries a
code from :class:`Reason`, in the API (``/api/v1/island`` and its transitions), in
the ledger's ``grid_transitions`` table (column ``reason``) and on the ``/island``
page. The texts beside the codes stay free prose for people; the code is what a
test, a chart or a coordinator's filter keys on.

The guard rails (:mod:`controller.island.guard`) and the shedder
(:mod:`controller.island.shedding`) write their refusals as prose with a prefix;
:func:`refusal_reason` maps each prefix to its code here, and
:func:`transition_reason` does the same for the grid state machine's causes
(:mod:`controller.island.grid_state`), so those modules keep their wording.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.typing import NDArray


class Reason(StrEnum):
    """The reason codes (values are what the API, the ledger and the page show)."""

    # Why a load is shed (the limiting measure's cause).
    RATING = "rating"  # the grid-former's power rating is exceeded: it drops load
    FLOOR = "floor"  # islanded, batteries and sun cannot cover the load above the floors
    PLAN = "plan"  # the island plan sheds this tier now to hold the tiers above it later
    GRID_LOSS = "grid_loss"  # the grid was lost without a command
    # Why a load is kept on, or waits (refusals of the guard rails and the shedder).
    TIER_ORDER = "tier_order"  # a lower tier first; at most one tier more per pass
    CRITICAL = "critical"  # the critical tier is never shed by the shedder
    INFRASTRUCTURE = "infrastructure"  # a member's controller, router: never shed
    MEDICAL = "medical"  # a member's medical device: never shed (private, see MEMBER_ONLY)
    OPT_OUT = "opt_out"  # its member keeps it out of shedding for now
    GUARD_NO_EFFECT = "guard_no_effect"  # passes did not move the measure: stop and alert
    MIN_TIME = "min_time"  # its minimum on or off time has not passed
    POWER_UNKNOWN = "power_unknown"  # its power is unknown and it has no rating
    NOTHING_TO_FREE = "nothing_to_free"  # it draws nothing
    # Why the grid state changed, or an island command was refused.
    COMMAND = "command"  # a coordinator's command (island, return) or its lapse
    DEVICE_REPORT = "device_report"  # the grid-former or a meter said so
    TIMEOUT = "timeout"  # a state waited too long for a confirmation
    FORMER_FAULT = "former_fault"  # the grid-forming inverter failed
    RESERVE = "reserve"  # the coop's SoC is below the plan's required starting SoC
    STALE_DATA = "stale_data"  # meters or SoC not fresh: unknown is not a yes
    STATE = "state"  # the machine is not in a state that allows the command
    OTHER = "other"


#: What each code means, for the docs, the page's legend and ``--scenario list``'s peers.
MEANING: dict[Reason, str] = {
    Reason.RATING: "the grid-former's rating is exceeded (it drops load)",
    Reason.FLOOR: "batteries and sun cannot cover the load above the batteries' floors",
    Reason.PLAN: "the island plan sheds this tier now to hold the tiers above it later",
    Reason.GRID_LOSS: "the grid was lost without a command",
    Reason.TIER_ORDER: "a lower tier goes first; at most one tier more per pass",
    Reason.CRITICAL: "the critical tier is never shed",
    Reason.INFRASTRUCTURE: "an infrastructure load (controller, router) is never shed",
    Reason.MEDICAL: "a medical load is never shed (shown to its member and coordinators only)",
    Reason.OPT_OUT: "its member keeps it out of shedding for now",
    Reason.GUARD_NO_EFFECT: "two passes did not move the limiting measure: stopped, alert raised",
    Reason.MIN_TIME: "its minimum on or off time has not passed",
    Reason.POWER_UNKNOWN: "its power is unknown and it has no rating",
    Reason.NOTHING_TO_FREE: "it draws nothing: switching it off frees nothing",
    Reason.COMMAND: "a coordinator's command, or its lapse",
    Reason.DEVICE_REPORT: "the grid-former or a meter reported the grid's state",
    Reason.TIMEOUT: "a state waited too long for its confirmation",
    Reason.FORMER_FAULT: "the grid-forming inverter failed",
    Reason.RESERVE: "the coop's SoC is below the plan's required starting SoC",
    Reason.STALE_DATA: "meters or SoC are not fresh (unknown is not a yes)",
    Reason.STATE: "the grid state does not allow the command",
    Reason.OTHER: "none of the above (the text says)",
}

#: Codes shown only to the load's own member and to coordinators; everyone else sees the
#: code on the right (a medical device is a private fact of a household).
MEMBER_ONLY: dict[Reason, Reason] = {Reason.MEDICAL: Reason.INFRASTRUCTURE}

#: The guard rails' own codes (:data:`controller.island.guard.REASONS`).
GUARD: dict[str, Reason] = {
    "GUARD_CRITICAL": Reason.CRITICAL,
    "GUARD_ONE_TIER": Reason.TIER_ORDER,
    "GUARD_STALLED": Reason.GUARD_NO_EFFECT,
    "GUARD_INFRASTRUCTURE": Reason.INFRASTRUCTURE,
    "GUARD_MEDICAL": Reason.MEDICAL,
}

#: A refusal's text (the shedder's ``skipped``) by its start → code; first match wins.
_REFUSAL_PREFIXES: tuple[tuple[str, Reason], ...] = (
    *GUARD.items(),
    ("opted out", Reason.OPT_OUT),
    ("contactor: plugs still on", Reason.TIER_ORDER),
    ("contactor: the member's own tier", Reason.TIER_ORDER),
    ("critical: ", Reason.TIER_ORDER),
    ("on for ", Reason.MIN_TIME),
    ("off for ", Reason.MIN_TIME),
    ("power unknown", Reason.POWER_UNKNOWN),
    ("draws nothing", Reason.NOTHING_TO_FREE),
)

#: A grid transition's cause (or a refusal's reasons) by a phrase in it → code; the
#: first match wins, so the more telling phrases come first.
_TRANSITION_PHRASES: tuple[tuple[str, Reason], ...] = (
    ("grid lost", Reason.GRID_LOSS),
    ("grid-forming inverter failed", Reason.FORMER_FAULT),
    ("no healthy grid-forming inverter", Reason.FORMER_FAULT),
    ("refuse_ac_coupling", Reason.RATING),
    ("factor", Reason.RATING),  # the factor-1.0 rule (controller/island/ac_coupling.py)
    ("rating", Reason.RATING),
    ("below the plan's required", Reason.RESERVE),
    ("coop soc unknown", Reason.STALE_DATA),
    ("not fresh", Reason.STALE_DATA),
    ("has not read its devices", Reason.STALE_DATA),
    ("floor", Reason.FLOOR),
    ("grid state is", Reason.STATE),
    ("not confirmed within", Reason.TIMEOUT),
    ("not back within", Reason.TIMEOUT),
    ("unknown", Reason.TIMEOUT),
    ("device report", Reason.DEVICE_REPORT),
    ("command", Reason.COMMAND),
    ("return requested", Reason.COMMAND),
)


def refusal_reason(text: str) -> Reason:
    """The code of a shedder's or guard's refusal text (``ShedPlan.skipped``)."""
    for prefix, code in _REFUSAL_PREFIXES:
        if text.startswith(prefix):
            return code
    return Reason.OTHER


def transition_reason(cause: str) -> Reason:
    """The code of a grid transition's cause, or of a refused command's first reason."""
    low = cause.lower()
    for phrase, code in _TRANSITION_PHRASES:
        if phrase in low:
            return code
    return Reason.OTHER


def shed_causes(floor_w: NDArray[np.float64], plan_w: NDArray[np.float64],
                rating_w: NDArray[np.float64], grid_lost: bool = False) -> list[Reason]:
    """Per member, the code of its shed: the largest of its parts (W each).

    ``floor_w`` the dispatch's shed (energy short above the floors), ``plan_w`` what the
    island plan sheds beyond it, ``rating_w`` load the overloaded grid-former dropped.
    The grid lost without a command outranks them all: that is why anything is short.
    """
    if grid_lost:
        return [Reason.GRID_LOSS] * len(floor_w)
    parts = np.nan_to_num(np.stack([np.asarray(floor_w, dtype=float),
                                    np.asarray(plan_w, dtype=float),
                                    np.asarray(rating_w, dtype=float)]))
    order = (Reason.FLOOR, Reason.PLAN, Reason.RATING)
    return [order[k] for k in np.argmax(parts, axis=0)]


def may_see_private(member: str | None, role: str, viewer_member: str | None) -> bool:
    """Whether a viewer (``role``, its own ``viewer_member``) sees ``member``'s private codes:
    the member itself, coordinators and the controller's own host (``local``)."""
    return role in ("coordinator", "local") or (
        role == "member" and member is not None and viewer_member == member)


def shown(code: str, member: str | None, role: str, viewer_member: str | None) -> str:
    """``code`` as a viewer sees it: a private code (:data:`MEMBER_ONLY`) only where
    :func:`may_see_private`, else its public stand-in."""
    try:
        reason = Reason(code)
    except ValueError:
        return code
    if reason not in MEMBER_ONLY or may_see_private(member, role, viewer_member):
        return code
    return MEMBER_ONLY[reason].value
