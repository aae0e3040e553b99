"""``/api/v1/clock``: the controller's clock, which every page shows its times on.

In the demo and ``island rehearse`` the controller runs on a simulated clock (a day in
minutes); every time the API gives (live events, the ledger, island plans, the audit log)
is on it. The pages take "now" from here rather than from the browser, and mark a
simulated clock as such ("simulated 14:05 (60×)"), so a simulated time is never read as
wall time.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from controller.governance.audit import WALL


class Clock(BaseModel):
    """The controller's clock at the moment of the answer."""

    now: float = Field(description="the controller's time, Unix seconds")
    clock: str = Field(description="'wall', or 'simulated N×' on a simulated clock; audit "
                       "rows carry the same label")
    simulated: bool = Field(description="true when the controller runs on a simulated clock")
    speed: float = Field(description="simulated seconds per wall second (1 on the wall clock)")


def clock_router(live: object | None) -> APIRouter:
    """``GET /api/v1/clock`` over the running controller (the wall clock without one)."""
    router = APIRouter(tags=["ops"])

    @router.get("/api/v1/clock")
    def clock() -> Clock:
        """The controller's clock: pages compute "now" and "today" from it."""
        if live is not None and hasattr(live, "clock"):
            return Clock.model_validate(live.clock())  # type: ignore[attr-defined]
        return Clock(now=time.time(), clock=WALL, simulated=False, speed=1.0)

    return router
