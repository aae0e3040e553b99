"""``/api/v1/members/{member_id}/optouts``: a member keeps its own flexible plugs on (#18).

Members may command their own things, nothing more: a member token may keep
one of its own *flexible* plugs out of shedding for a time window (at most a
day, like every override), list its opt-outs and end one early. Another
member's plug is 404, as is another member's path (word for word an unknown
member). Every start, end and lapse is in the audit log under the token's
label. The shedder (:mod:`controller.island.shedding`) skips an opted-out plug
and switches it back on if it held it off; the household contactor still wins
when the island needs it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from api.auth import viewer_of
from api.contract import answers
from api.governance.overrides import _Controller, _shown
from api.route_models import OverrideShown
from controller.governance.audit import AuditLog
from controller.governance.overrides import MAX_OVERRIDE_S, OverrideError


class OptOutRequest(BaseModel):
    """One of the member's own flexible plugs kept out of shedding, until an end."""

    load: str = Field(min_length=1, max_length=80,
                      description="the plug, e.g. 'load1' (or 'h02/load1')")
    until: datetime | None = Field(None, description="the end, ISO 8601 (UTC if naive)")
    minutes: float | None = Field(None, gt=0, le=MAX_OVERRIDE_S / 60, allow_inf_nan=False,
                                  description="or the length, in minutes")

    @model_validator(mode="after")
    def _one_end(self) -> OptOutRequest:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("until, minutes: give exactly one (every opt-out has an end)")
        return self


def optouts_router(live: object | None, audit: AuditLog | None) -> APIRouter:
    """The opt-out routes over the running controller (``live.controller``)."""
    router = APIRouter(prefix="/api/v1/members/{member_id}/optouts", tags=["overrides"])

    def controller() -> _Controller | None:
        return getattr(live, "controller", None)

    def now() -> float:
        return live.now() if hasattr(live, "now") else time.time()  # type: ignore[union-attr]

    def running() -> _Controller:
        c = controller()
        if c is None:
            raise HTTPException(503, "no controller is running on this ledger")
        if c.overrides.on_lapse is None and audit is not None:  # lapses recorded as they happen
            c.overrides.on_lapse = lambda o: audit.append(
                "controller", "controller", "override.lapse", o.as_dict(), "lapsed")
        return c

    def record(request: Request, action: str, detail: dict[str, Any], outcome: str) -> None:
        if audit is not None:
            p = viewer_of(request).principal
            audit.append(p.label, p.role, action, detail, outcome)

    def flexible_plugs(c: _Controller, member: str) -> dict[str, str]:
        """The member's plugs: name → tier (a contactor is 'contactor')."""
        return {d.health.name: "contactor" if d.config.contactor else d.config.tier or "flexible"
                for d in c.poller.devices
                if d.config.kind == "load" and d.health.name.startswith(member + "/")}

    @router.get("", responses=answers(list[OverrideShown],
                                      description="the member's opt-outs"))
    def list_optouts(member_id: str) -> list[dict[str, Any]]:
        """The member's opt-outs, in force (``ended_ts`` null) first, with their ends."""
        c = controller()
        if c is None:
            return []
        return [_shown(o) for o in c.overrides.listing(now())
                if o.kind == "shed_optout" and o.member == member_id]

    @router.post("", status_code=201, responses=answers(OverrideShown, 201,
                                                        "the opt-out, started"))
    def create_optout(member_id: str, body: OptOutRequest, request: Request) -> dict[str, Any]:
        """Keep one of the member's own flexible plugs out of shedding until the end."""
        c, t = running(), now()
        asked = body.model_dump(mode="json") | {"member": member_id}
        load_id = body.load if "/" in body.load else f"{member_id}/{body.load}"
        plugs = flexible_plugs(c, member_id)
        if load_id not in plugs:
            record(request, "optout.create", asked, "refused: no such load")
            raise HTTPException(404, f"load {body.load!r}: member {member_id!r} has no such "
                                     f"plug (it has {sorted(plugs) or 'none'})")
        if plugs[load_id] != "flexible":
            record(request, "optout.create", asked, f"refused: {plugs[load_id]}")
            raise HTTPException(422, f"load {body.load!r}: a member may keep only its "
                                     f"flexible plugs from shedding; this one is "
                                     f"{plugs[load_id]}")
        end = t + body.minutes * 60 if body.minutes is not None else (
            body.until if body.until.tzinfo else body.until.replace(tzinfo=UTC)).timestamp()
        try:
            o = c.overrides.add("shed_optout", member_id, t, end,
                                viewer_of(request).principal.label, load_id=load_id)
        except OverrideError as exc:
            record(request, "optout.create", asked, f"refused: {exc}")
            raise HTTPException(422, str(exc)) from None
        record(request, "optout.create", o.as_dict(), "accepted")
        return _shown(o)

    @router.delete("/{override_id}", responses=answers(OverrideShown,
                                                       description="the opt-out, ended"))
    def end_optout(member_id: str, override_id: int, request: Request) -> dict[str, Any]:
        """End one of the member's opt-outs early; 404 when none of its own is in force."""
        c = running()
        mine = {o.id for o in c.overrides.active(now())
                if o.kind == "shed_optout" and o.member == member_id}
        o = c.overrides.end(override_id, now(), viewer_of(request).principal.label) \
            if override_id in mine else None
        if o is None:
            raise HTTPException(404, f"override_id {override_id}: no opt-out of member "
                                     f"{member_id!r} in force")
        record(request, "optout.end", o.as_dict(), "ended")
        return _shown(o)

    return router
