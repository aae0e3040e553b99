"""Reason codes as a viewer may see them: the medical flag stays private (#21).

A member's ``medical`` load (``[[members]] devices``, ``medical = true``) is a
fact of the household: the shedding's events and protected loads show the code
``medical`` only to that member and to coordinators (and to the controller's own
host); everyone else, the public and other members, sees ``infrastructure``,
which is what the guard rails do with it too (never shed). The free text beside
a code is masked the same way (``GUARD_MEDICAL`` reads ``GUARD_INFRASTRUCTURE``).
The saved plan's medical survival odds and warning follow the same rule.
"""

from __future__ import annotations

import re
from typing import Any

from api.auth.policy import Viewer
from controller.island.reasons import may_see_private, shown

#: ``shed h02/load1: …`` or ``refused h02/load1: …``: the load's member in a ledger row.
_ROW_LOAD = re.compile(r"^(?:shed|refused) ([^/\s]+)/")
_PRIVATE_TEXT = {"GUARD_MEDICAL": "GUARD_INFRASTRUCTURE"}


def _role(viewer: Viewer) -> tuple[str, str | None]:
    p = viewer.principal
    return ("local" if p.local and p.token_id is None else p.role), p.member


def privileged(viewer: Viewer, member: str | None) -> bool:
    """Whether ``viewer`` may see ``member``'s private codes (its member, a coordinator)."""
    return may_see_private(member, *_role(viewer))


def _mask(entry: dict[str, Any], viewer: Viewer, member: str | None) -> dict[str, Any]:
    if privileged(viewer, member):
        return entry
    role, own = _role(viewer)
    out = dict(entry)
    if out.get("reason"):
        out["reason"] = shown(str(out["reason"]), member, role, own)
    for key in ("detail", "cause"):
        if isinstance(out.get(key), str):
            for private, public in _PRIVATE_TEXT.items():
                out[key] = out[key].replace(private, public)
    return out


def shedding(status: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """The island status's ``shedding`` (:func:`controller.snapshot.shedding_status`) with
    private codes masked; call before the viewer's :meth:`~Viewer.scrub`."""
    out = dict(status)
    out["events"] = [_mask(e, viewer, e.get("member")) for e in status.get("events", [])]
    out["protected"] = [_mask(e, viewer, e.get("member")) for e in status.get("protected", [])]
    return out


def transitions(rows: list[dict[str, Any]], viewer: Viewer) -> list[dict[str, Any]]:
    """Ledger rows (``grid_transitions``) with private codes masked (before scrubbing)."""
    out = []
    for row in rows:
        match = _ROW_LOAD.match(str(row.get("cause") or ""))
        out.append(_mask(row, viewer, match.group(1) if match else None))
    return out


def plan(saved: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """A saved plan without its medical odds and warning for anyone but a coordinator (or
    the controller's host): the plan is coop-wide, no member's own view."""
    role, _ = _role(viewer)
    survival = saved.get("survival")
    if role in ("coordinator", "local") or not isinstance(survival, dict):
        return saved
    survival = {k: v for k, v in survival.items() if k != "medical_warning"}
    if isinstance(survival.get("p_held"), dict):
        survival["p_held"] = {k: v for k, v in survival["p_held"].items() if k != "medical"}
    return saved | {"survival": survival}
