"""FastAPI application: members' energy, the coop summary, device health, and /healthz."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from api.energy import member_figures
from controller.ledger import LedgerReader
from dispatch.metrics import jain_index

API_VERSION = "1.0.0"


class LiveView(Protocol):
    """What the running controller shows the API besides the ledger."""

    cycle_s: float

    def devices(self) -> list[dict[str, Any]]: ...

    def last_cycle_age_s(self) -> float | None: ...


class Member(BaseModel):
    """A coop member."""

    id: str
    name: str


class Energy(BaseModel):
    """A member's energy over a period; kWh, booked to the Wh."""

    member_id: str
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None
    intervals: int
    liberated_kwh: float = Field(description="served load that came from coop generation")
    served_kwh: float
    load_kwh: float
    own_pv_used_kwh: float
    from_battery_kwh: float
    from_battery_coop_kwh: float
    from_peers_kwh: float
    from_coop_battery_kwh: float
    from_grid_kwh: float
    shed_kwh: float
    pv_kwh: float
    to_battery_kwh: float
    to_peers_kwh: float
    to_coop_battery_kwh: float
    to_grid_kwh: float
    curtailed_kwh: float
    battery_from_coop_kwh: float = Field(description="neighbours' surplus stored in this battery")
    battery_to_coop_kwh: float = Field(description="this battery's energy given to neighbours")
    grid_to_battery_kwh: float
    losses_kwh: float
    self_sufficiency: float | None = Field(description="liberated / served; null with no load")

    model_config = {"populate_by_name": True}


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def create_app(reader: LedgerReader, live: LiveView | None = None) -> FastAPI:
    """The API over a ledger, with live controller status when one is running."""
    app = FastAPI(
        title="Commonwatt",
        version=API_VERSION,
        description="Every member's liberated kWh, checkable to the Wh.",
    )

    def known_member(member_id: str) -> str:
        ids = {m for m, _ in reader.members()}
        if member_id not in ids:
            raise HTTPException(404, f"member_id {member_id!r} is not a member of this coop")
        return member_id

    @app.get("/api/v1/members", response_model=list[Member], tags=["members"])
    def members() -> list[Member]:
        """Every member with its id and display name."""
        return [Member(id=i, name=n) for i, n in reader.members()]

    @app.get("/api/v1/members/{member_id}/energy", response_model=Energy, tags=["members"])
    def member_energy(
        member_id: str,
        from_: Annotated[
            datetime | None,
            Query(alias="from", description="start, ISO 8601 or Unix seconds (UTC if naive)"),
        ] = None,
        to: Annotated[
            datetime | None, Query(description="end, ISO 8601 or Unix seconds (UTC if naive)")
        ] = None,
    ) -> Energy:
        """A member's energy split over the intervals inside ``[from, to]``."""
        known_member(member_id)
        start, end = _epoch(from_), _epoch(to)
        if start is not None and end is not None and start > end:
            raise HTTPException(422, "query parameter 'from' must not be after 'to'")
        totals = reader.totals(member_id, start, end)
        return Energy(member_id=member_id, from_=from_, to=to, **member_figures(totals))

    @app.get("/api/v1/coop/summary", tags=["coop"])
    def coop_summary() -> dict[str, Any]:
        """Coop-wide totals and the sovereignty figures."""
        per_member = {m: member_figures(reader.totals(m)) for m, _ in reader.members()}
        coop = member_figures(reader.totals())
        first, last, count = reader.span()
        sufficiency = [
            f["self_sufficiency"] for f in per_member.values() if f["self_sufficiency"] is not None
        ]
        return {
            "members": len(per_member),
            **coop,
            "shared_peer_to_peer_kwh": coop["to_peers_kwh"],
            "unserved_kwh": coop["shed_kwh"],
            "hours_islanded": round(reader.islanded_seconds() / 3600.0, 3),
            "jain_fairness": jain_index(sufficiency),  # type: ignore[arg-type]
            "first_interval_start": first,
            "last_interval_end": last,
            "intervals": count,
            "by_member": per_member,
        }

    @app.get("/api/v1/devices", tags=["installer"])
    def devices() -> list[dict[str, Any]]:
        """Health of every configured device: last good read, errors, back-off."""
        return live.devices() if live else []

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        """200 while cycles run on time; 503 when the controller is stale."""
        _, last_end, count = reader.span()
        body: dict[str, Any] = {"ledger_intervals": count, "ledger_last_end": last_end,
                                "checked_at": time.time()}
        status = 200
        if live is not None:
            age = live.last_cycle_age_s()
            states = [d["state"] for d in live.devices()]
            body |= {
                "cycle_s": live.cycle_s,
                "last_cycle_age_s": None if age is None else round(age, 3),
                "devices": {s: states.count(s) for s in ("ok", "unknown", "backoff")},
            }
            stale = age is None or age > 3 * live.cycle_s + 2
            degraded = any(s != "ok" for s in states)
            body["status"] = "stale" if stale else ("degraded" if degraded else "ok")
            status = 503 if stale else 200
        else:
            body["status"] = "ledger-only"
        return JSONResponse(body, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> str:
        return (resources.files("api") / "static" / "index.html").read_text(encoding="utf-8")

    return app
