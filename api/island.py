"""The island's API: the grid state, its history, and the coordinator's island command."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from controller.island.grid_model import MAX_ISLAND_S, Refusal
from controller.island.live import GridSupervisor
from controller.ledger import LedgerReader


class IslandLive(Protocol):
    """The running controller's grid supervisor and clock."""

    def grid_supervisor(self) -> GridSupervisor: ...

    def now(self) -> float: ...


class IslandRequest(BaseModel):
    """A coordinator's request to run the coop as an island."""

    requested_by: str = Field(min_length=1, max_length=80, description="who asks (recorded)")
    start: datetime | None = Field(None, description="when to start; now if absent")
    hours: float = Field(gt=0, le=MAX_ISLAND_S / 3600, description="how long; it lapses then")
    required_soc_pct: float = Field(
        0.0, ge=0, le=100, description="the plan's required starting coop SoC")


class ReturnRequest(BaseModel):
    """A coordinator's request to end the island early."""

    requested_by: str = Field(min_length=1, max_length=80)


def _loopback_only(request: Request) -> None:
    # No hidden power: until coordinator tokens exist, only someone on the controller's
    # own host may island the coop, and every request is recorded with its author.
    host = request.client.host if request.client else ""
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host in ("testclient", "localhost")
    if not local:
        raise HTTPException(403, "island commands are taken only on the controller's own host"
                                 " until coordinator tokens exist")


def island_router(reader: LedgerReader, live: IslandLive | None) -> APIRouter:
    """Routes under ``/api/v1/island``."""
    router = APIRouter(prefix="/api/v1/island", tags=["island"])

    def supervisor() -> GridSupervisor:
        if live is None:
            raise HTTPException(503, "no controller is running on this ledger")
        return live.grid_supervisor()

    @router.get("")
    def island_status() -> dict[str, Any]:
        """The grid state (UNDEFINED, ON_GRID, GOING_OFF_GRID, OFF_GRID, RETURNING), the
        command in force, the grid-former's view and the coop's SoC."""
        return supervisor().status()

    @router.get("/transitions")
    def transitions(limit: int = 200) -> list[dict[str, Any]]:
        """Every change of grid state and every refused command, oldest first."""
        rows = reader.grid_transitions(min(max(limit, 1), 10_000))
        return [r | {"time": datetime.fromtimestamp(float(r["ts"]), UTC).isoformat()}
                for r in rows]

    @router.post("/command", status_code=202)
    def command(body: IslandRequest, request: Request) -> dict[str, Any]:
        """Ask for an island; 409 names every failing precondition."""
        _loopback_only(request)
        now = live.now() if live is not None else time.time()
        start = now if body.start is None else (
            body.start if body.start.tzinfo else body.start.replace(tzinfo=UTC)).timestamp()
        answer = supervisor().request_island(body.requested_by, start,
                                             start + body.hours * 3600, body.required_soc_pct,
                                             now)
        if isinstance(answer, Refusal):
            raise HTTPException(409, {"refused": list(answer.reasons)})
        return {"accepted": True, "start_ts": answer.start_ts, "end_ts": answer.end_ts}

    @router.post("/return", status_code=202)
    def end_island(body: ReturnRequest, request: Request) -> dict[str, Any]:
        """End the island early; 409 when there is none to end."""
        _loopback_only(request)
        now = live.now() if live is not None else time.time()
        answer = supervisor().request_return(body.requested_by, now)
        if isinstance(answer, Refusal):
            raise HTTPException(409, {"refused": list(answer.reasons)})
        return {"accepted": True}

    return router
