"""``/api/v1/overrides``: a coordinator's battery setpoints and load switches, each with an end.

``POST`` starts one (``until`` or ``minutes``, at most a day ahead), ``GET``
lists them with their end times, ``DELETE /{id}`` ends one early. Every start,
early end and lapse is written to the audit log under the token's label. The
running controller applies them (:mod:`controller.governance.overrides`) after the
dispatch and before the safety layer, so a floor or a power rating still wins.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from api.auth import viewer_of
from api.contract import answers
from api.route_models import OverrideShown
from controller.governance.audit import AuditLog
from controller.governance.overrides import MAX_OVERRIDE_S, Override, OverrideError, OverrideStore

#: The largest battery power an override may name, W (the safety layer clamps to the rating).
MAX_OVERRIDE_W = 1_000_000.0


class _Controller(Protocol):
    member_ids: tuple[str, ...]
    overrides: OverrideStore
    poller: Any


class OverrideRequest(BaseModel):
    """A battery setpoint or a load switched by hand, until a given end."""

    kind: Literal["battery_setpoint", "load_switch"]
    member: str = Field(min_length=1, max_length=64)
    power_w: float | None = Field(None, ge=-MAX_OVERRIDE_W, le=MAX_OVERRIDE_W,
                                  allow_inf_nan=False,
                                  description="battery_setpoint: W, discharge > 0")
    load: str | None = Field(None, min_length=1, max_length=80,
                             description="load_switch: the load, e.g. 'load1' or 'h05/load1'")
    on: bool | None = Field(None, description="load_switch: hold it on (true) or off (false)")
    until: datetime | None = Field(None, description="the end, ISO 8601 (UTC if naive)")
    minutes: float | None = Field(None, gt=0, le=MAX_OVERRIDE_S / 60, allow_inf_nan=False,
                                  description="or the length, in minutes")

    @model_validator(mode="after")
    def _one_end(self) -> OverrideRequest:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("until, minutes: give exactly one (every override has an end)")
        if self.kind == "battery_setpoint" and self.power_w is None:
            raise ValueError("power_w: required for a battery_setpoint")
        if self.kind == "load_switch" and (self.load is None or self.on is None):
            raise ValueError("load, on: both required for a load_switch")
        return self


def _devices_of(c: _Controller, member: str) -> dict[str, str]:
    """``{device name: kind}`` of one member's devices (names are ``member/device``)."""
    return {d.health.name: d.config.kind for d in c.poller.devices
            if d.health.name.startswith(member + "/")}


def _shown(o: Override) -> dict[str, Any]:
    out = o.as_dict()
    out["end"] = datetime.fromtimestamp(o.end_ts, UTC).isoformat()
    return out


def overrides_router(live: object | None, audit: AuditLog | None) -> APIRouter:
    """The override routes over the running controller (``live.controller``)."""
    router = APIRouter(prefix="/api/v1/overrides", tags=["overrides"])

    def controller() -> _Controller | None:
        return getattr(live, "controller", None)

    def now() -> float:
        return live.now() if hasattr(live, "now") else time.time()  # type: ignore[union-attr]

    def record(who: tuple[str, str], action: str, o: Override | dict[str, Any],
               outcome: str) -> None:
        if audit is not None:
            detail = o.as_dict() if isinstance(o, Override) else o
            audit.append(who[0], who[1], action, detail, outcome)

    def running() -> _Controller:
        c = controller()
        if c is None:
            raise HTTPException(503, "no controller is running on this ledger")
        if c.overrides.on_lapse is None:  # lapses are recorded as they happen
            c.overrides.on_lapse = lambda o: record(("controller", "controller"),
                                                    "override.lapse", o, "lapsed")
        return c

    def author(request: Request) -> tuple[str, str]:
        p = viewer_of(request).principal
        return p.label, p.role

    @router.get("", responses=answers(list[OverrideShown],
                                      description="overrides, newest first"))
    def listing() -> list[dict[str, Any]]:
        """Overrides in force (``ended_ts`` null) and ended ones, newest first, with ends."""
        c = controller()
        return [] if c is None else [_shown(o) for o in running().overrides.listing(now())]

    @router.post("", status_code=201, responses=answers(OverrideShown, 201,
                                                        "the override, started"))
    def create(body: OverrideRequest, request: Request) -> dict[str, Any]:
        """Start an override; it lapses at ``until`` (or after ``minutes``) by itself."""
        c, who, t = running(), author(request), now()
        asked = body.model_dump(mode="json")
        if body.member not in c.member_ids:
            record(who, "override.create", asked, "refused: no such member")
            raise HTTPException(404, f"member {body.member!r} is not a member of this coop")
        load_id = None
        own = _devices_of(c, body.member)
        if body.kind == "battery_setpoint" and "battery" not in own.values():
            record(who, "override.create", asked, "refused: no battery")
            raise HTTPException(422, f"member {body.member!r} has no battery: a "
                                     "battery_setpoint needs one")
        if body.kind == "load_switch":
            load_id = body.load if "/" in str(body.load) else f"{body.member}/{body.load}"
            loads = sorted(n for n, kind in own.items() if kind == "load")
            if load_id not in loads:
                record(who, "override.create", asked, "refused: no such load")
                # Only this member's loads: another household's are not this caller's to see.
                raise HTTPException(404, f"load {body.load!r}: member {body.member!r} has "
                                    f"no such switchable load (it has {loads or 'none'})")
        end = t + body.minutes * 60 if body.minutes is not None else (
            body.until if body.until.tzinfo else body.until.replace(tzinfo=UTC)).timestamp()
        try:
            o = c.overrides.add(body.kind, body.member, t, end, who[0], power_w=body.power_w,
                                load_id=load_id, on=body.on)
        except OverrideError as exc:
            record(who, "override.create", asked, f"refused: {exc}")
            raise HTTPException(422, str(exc)) from None
        record(who, "override.create", o, "accepted")
        return _shown(o)

    @router.delete("/{override_id}", responses=answers(OverrideShown,
                                                       description="the override, ended"))
    def end(override_id: int, request: Request) -> dict[str, Any]:
        """End an override early; 404 when none with that id is in force."""
        c, who = running(), author(request)
        o = c.overrides.end(override_id, now(), who[0])
        if o is None:
            raise HTTPException(404, f"override_id {override_id}: no override in force")
        record(who, "override.end", o, "ended")
        return _shown(o)

    return router
