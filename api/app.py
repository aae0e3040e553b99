"""FastAPI application: members' energy, the coop summary, device health, and /healthz."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.accounts import accounts_router
from api.auth import Authority, viewer_of
from api.auth.login import login_router
from api.clock import clock_router
from api.contract import answers, install_contract, operation_id
from api.errors import bad_query
from api.governance.optouts import optouts_router
from api.governance.overrides import overrides_router
from api.governance.router import audit_router
from api.island import island_router
from api.pages import pages_router
from api.plan_ahead import plan_ahead_router
from api.query_time import QueryTime
from api.route_models import Device, Health
from api.summary_model import CoopSummary, RunningFigures
from api.surface import install_surface
from controller.accounts.figures import meter_drift
from controller.accounts.meter_flags import flagged_meters
from controller.accounts.running import member_figures, running_figures
from controller.config import CoopConfig, LedgerConfig
from controller.ledger import LedgerReader
from controller.snapshot import Snapshot

API_VERSION = "1.0.0"
#: The MQTT reader may look for its broker this long (a reconnect) before /healthz says down.
READER_GRACE_S = 10.0


class LiveView(Protocol):
    """What the running controller shows the API besides the ledger."""

    cycle_s: float
    settlement_s: int

    def devices(self) -> list[dict[str, Any]]: ...

    def last_cycle_age_s(self) -> float | None: ...

    def ledger_status(self) -> dict[str, object]: ...

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]: ...

    def open_interval_start(self) -> int | None: ...


class Member(BaseModel):
    """A coop member (under its pseudonym, as id and name, unless public or the caller's)."""

    id: str = Field(description="member id, or its pseudonym")
    name: str = Field(description="display name, or the pseudonym")


class Energy(RunningFigures):
    """A member's energy over a period (the figures of :class:`RunningFigures`, kWh booked
    to the Wh)."""

    member_id: str
    from_: datetime | None = Field(None, alias="from", description="the period's start "
                                   "as asked (null: from the first interval)")
    to: datetime | None = Field(description="the period's end as asked (null: up to now)")
    provisional: bool = Field(False, description="includes the open settlement interval, "
                              "which is not committed yet")
    committed_until: float | None = Field(None, description="Unix seconds: end of the last "
                                          "committed interval; later figures are "
                                          "provisional")

    model_config = {"populate_by_name": True}


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _with_unwritten(totals: dict, extra: dict[str, int] | None) -> dict:
    if not extra:
        return totals
    return {k: (v or 0) + extra.get(k, 0) if k in extra else v for k, v in totals.items()}


def _snapshot(live: object | None) -> Snapshot | None:
    """The running controller's last cycle snapshot, read once (a view without one, as
    a test's stand-in, answers through its methods)."""
    return getattr(live, "snapshot", None)


def _orjson(body: dict[str, Any]) -> Response:
    """``body`` as JSON by orjson (NaN as null), past FastAPI's encoder."""
    return Response(orjson.dumps(body), media_type="application/json")


def _own_member(request: Request) -> str | None:
    """The member whose own figures a live stream may carry: a member token's own."""
    principal = viewer_of(request).principal
    return principal.member if principal.role == "member" else None


def create_app(reader: LedgerReader, live: LiveView | None = None,
               config: CoopConfig | None = None, auth: Authority | None = None) -> FastAPI:
    """The API over a ledger, with live controller status when one is running.

    Access follows :data:`api.auth.policy.ROUTE_POLICY`, with the tokens and the
    audit log beside the ledger unless ``auth`` says otherwise.
    """
    auth = auth if auth is not None else Authority.beside(reader.path, reader, config)
    app = FastAPI(
        title="Commonwatt",
        version=API_VERSION,
        description="Every member's liberated kWh, checkable to the Wh.",
        docs_url=None, redoc_url=None,  # served without a CDN by install_surface
        dependencies=[Depends(auth.authorize)],
        generate_unique_id_function=operation_id,  # "member_energy", not "member_energy_api_…"
    )
    install_surface(app, reader, live, member_of=_own_member)
    install_contract(app)  # public routes without security; 401/403/404/409 declared

    def known_member(member_id: str) -> str:
        if reader.member_number(member_id) is None:
            raise HTTPException(404, f"member_id {member_id!r} is not a member of this coop")
        return member_id

    @app.get("/api/v1/members", response_model=list[Member], tags=["members"])
    def members(request: Request) -> list[Member]:
        """Every member with its id and display name; a member that is not public and not
        the caller's own appears under its pseudonym, as id and as name."""
        return [Member(id=i, name=n) for i, n in viewer_of(request).members(reader.members())]

    @app.get("/api/v1/members/{member_id}/energy", response_model=Energy, tags=["members"])
    def member_energy(
        member_id: str,
        from_: Annotated[
            QueryTime | None,
            Query(alias="from", description="start, ISO 8601 or Unix seconds (UTC if naive)"),
        ] = None,
        to: Annotated[
            QueryTime | None, Query(description="end, ISO 8601 or Unix seconds (UTC if naive)")
        ] = None,
    ) -> Energy:
        """A member's energy split over the intervals inside ``[from, to]``."""
        known_member(member_id)
        start, end = _epoch(from_), _epoch(to)
        if start is not None and end is not None and start > end:
            raise bad_query("from", "query parameter 'from' must not be after 'to'", from_)
        with reader.consistent():
            last_end = reader.span()[1]
            totals = reader.totals(member_id, start, end)
        provisional = live is not None and end is None
        if provisional:
            snap = _snapshot(live)
            totals = _with_unwritten(totals, (
                snap.unwritten_member_wh(member_id, last_end) if snap is not None
                else live.unwritten_wh(last_end).get(member_id)))  # type: ignore[union-attr]
        return Energy(member_id=member_id, from_=from_, to=to, provisional=provisional,
                      committed_until=last_end, **member_figures(totals))

    @app.get("/api/v1/coop/summary", tags=["coop"], response_model=CoopSummary)
    def coop_summary(request: Request) -> Response:
        """Coop-wide totals and the sovereignty figures, from the lifetime rollups.

        While the controller runs, the figures include the open settlement
        interval (``provisional: true``); committed figures never change.
        """
        with reader.consistent():
            first, last, count = reader.span()
            by_member = reader.totals_by_member()
            coop_totals = reader.totals()
        # One snapshot for the whole answer: the open interval's Wh and its start agree.
        snap = _snapshot(live)
        columns = None
        if snap is not None:
            extra, open_start, columns = {}, snap.open_start, snap.unwritten_columns(last)
        elif live is not None:
            extra, open_start = live.unwritten_wh(last), live.open_interval_start()
        else:
            extra, open_start = {}, None
        per_member, coop = running_figures(by_member, extra, count, columns)
        # Plain numbers already: straight to JSON, with orjson. FastAPI's own encoder walks
        # every value of every member first, and the json module took 22 ms for 1,000
        # members: both cost more than the ledger read (bench/api_bench.py).
        return _orjson({
            "members": len(per_member),
            **coop,
            "shared_peer_to_peer_kwh": coop["to_peers_kwh"],
            "unserved_kwh": coop["shed_kwh"],
            "hours_islanded": round((coop_totals.get("islanded_s") or 0) / 3600.0, 3),
            "first_interval_start": first,
            "last_interval_end": last,
            "intervals": count,
            "settlement_s": reader.step,
            "provisional": live is not None,
            "committed_until": last,
            "open_interval_start": open_start,
            "cycles": coop_totals.get("cycles"),
            "controller_down_hours": round((coop_totals.get("gap_s_coop") or 0) / 3600.0, 3),
            "by_member": viewer_of(request).keyed(per_member),
        })

    @app.get("/api/v1/devices", tags=["installer"], responses=answers(
        list[Device], description="every configured device's health"))
    def devices() -> list[dict[str, Any]]:
        """Health of every configured device: last good read, errors, back-off.

        Each meter also carries ``drift``: its energy counters against what the
        ledger booked through it over the last 24 hours, ``flagged`` past
        ``[ledger] drift_threshold_pct`` (and ``drift_min_wh``); and ``counters_vs_power``:
        null, or the settled intervals of the ledger's last 24 h in which its counters and
        its measured power disagreed (``intervals``, ``last_flagged_ts``,
        ``import_drift_wh`` / ``export_drift_wh``: counter less the power's estimate).
        """
        if not live:
            return []
        out = live.devices()
        flags = flagged_meters(reader)
        ledger_cfg = config.ledger if config is not None else LedgerConfig()
        day = time.time() - 86400
        for device in out:
            if device.get("kind") != "meter":
                continue
            member = str(device["name"]).split("/")[0]
            drifts = meter_drift(reader.totals(member, day, None),
                                 ledger_cfg.drift_threshold_pct, ledger_cfg.drift_min_wh)
            device["drift"] = {k: d.as_dict() for k, d in drifts.items()}
            device["drift_flagged"] = any(d.flagged for d in drifts.values())
            device["counters_vs_power"] = flags.get(f"{member}/meter")
        return out

    @app.get("/healthz", tags=["ops"], responses={
        **answers(Health),
        **answers(Health, 503, "stale, ledger failing, MQTT reader down or no device ok")})
    def healthz() -> JSONResponse:
        """200 while cycles run on time; 503 when the controller is stale, the ledger is
        failing, the MQTT reader is down or no device is ok. ``timeseries`` (when
        configured): the sender's state (``ok``, ``down``, ``config-error`` with what to
        set), its spool and failures."""
        _, last_end, count = reader.span()
        body: dict[str, Any] = {"ledger_intervals": count, "ledger_last_end": last_end,
                                "checked_at": time.time()}
        status = 200
        if live is not None:
            ledger = live.ledger_status()
            body["ledger"] = ledger["state"]
            body["ledger_detail"] = ledger
            age = live.last_cycle_age_s()
            states = [d["state"] for d in live.devices()]
            body |= {
                "cycle_s": live.cycle_s,
                "last_cycle_age_s": None if age is None else round(age, 3),
                "devices": {s: states.count(s) for s in ("ok", "unknown", "backoff")},
            }
            stale = age is None or age > 3 * live.cycle_s + 2
            degraded = any(s != "ok" for s in states)
            failing = ledger["state"] != "ok"
            blind = "ok" not in states  # the controller cycles, but on no reading at all
            # The MQTT reader (optional on a live view): down is its thread ended and
            # restarting, or no broker connection for longer than a reconnect takes.
            mqtt = live.mqtt_reader() if hasattr(live, "mqtt_reader") else None
            reader_down = mqtt is not None and (
                mqtt["state"] == "down" or (mqtt["state"] == "connecting"
                                            and float(mqtt["for_s"]) > READER_GRACE_S))
            if mqtt is not None:
                body["mqtt_reader"] = mqtt
            # The rolling plan on the grid: what it trusts and how well that has done.
            plan = live.rolling_plan() if hasattr(live, "rolling_plan") else None
            if plan is not None:
                body["rolling_plan"] = plan
            body["status"] = ("stale" if stale else "ledger-failing" if failing
                              else "mqtt-reader-down" if reader_down
                              else "no-device-ok" if blind else "degraded" if degraded
                              else "ok")
            status = 503 if stale or failing or blind or reader_down else 200
        else:
            body["status"] = "ledger-only"
        ts = getattr(live, "timeseries", None)
        if ts is not None:
            # Its own entry, not the status: a time-series server that is down or
            # misconfigured costs charts, never a cycle or a Wh (the spool keeps the points).
            body["timeseries"] = ts.status()
        return JSONResponse(body, status_code=status)

    app.include_router(accounts_router(reader, config))
    app.include_router(island_router(
        reader, live if hasattr(live, "grid_supervisor") else None,  # type: ignore[arg-type]
        config.plan_path if config is not None else None, audit=auth.audit))
    app.include_router(audit_router(auth.audit, reader))
    app.include_router(clock_router(live))
    app.include_router(overrides_router(live, auth.audit))
    app.include_router(optouts_router(live, auth.audit))
    app.include_router(login_router(auth))
    app.include_router(plan_ahead_router(live, known_member))

    app.include_router(pages_router())
    return app
