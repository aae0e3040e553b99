"""The island's API: the grid state, its history, the coordinator's island command, and
the island plan saved beside the ledger with how the day goes against it.

``GET /api/v1/island`` is the grid supervisor's status plus ``now`` (the controller's
clock) and ``autonomy``: how long the coop's batteries would last at the current net
load. When the live view carries a ``shed_next`` entry in the status, the island page
shows it as what will be shed next; otherwise the page falls back on the plan's next
shed run, then on "nothing".

``GET /api/v1/island/plan`` returns the plan written by ``commonwatt island plan
--json``, as saved in the file given to :func:`island_router` (``[island] plan_file``
once the config carries it), by default ``plan.json`` beside the ledger; 404 without
one. ``GET /api/v1/island/plan/progress`` sets it against what the ledger has booked
since its start (small: no per-battery arrays).

``POST /api/v1/island/command`` and ``/return`` take a coordinator token, or no
token at all from the controller's own host with no proxy header (``commonwatt
island rehearse`` posts that way); every answer is written to the audit log,
under the token's label and role (from the host: ``local``), never a name the body gives.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response

from api.auth import viewer_of
from api.contract import ErrorDetail, answers
from api.island_models import (
    GridTransition,
    IslandAccepted,
    IslandPlan,
    IslandRequest,
    IslandStatus,
    PlanProgress,
    ReturnRequest,
)
from controller.accounts.running import member_figures
from controller.governance.audit import AuditLog
from controller.island.grid_model import Refusal
from controller.island.live import GridSupervisor
from controller.island_day.trust import odds_summary
from controller.ledger import LedgerReader
from controller.process_image import FloatArray, ProcessImage

#: A coop net load at or below this (W) is "not discharging": no hours of autonomy.
NOT_DISCHARGING_W = 10.0
#: The plan file's name beside the ledger when no other is given.
PLAN_FILE_NAME = "plan.json"
#: The plan routes' 404, declared (no member path says so for them).
_NO_PLAN = {404: {"model": ErrorDetail, "description": "no island plan saved"}}


class IslandLive(Protocol):
    """The running controller's grid supervisor and clock."""

    def grid_supervisor(self) -> GridSupervisor: ...

    def now(self) -> float: ...


class _Controller(Protocol):
    """What :func:`_autonomy` reads from a running controller (``Runtime.controller``)."""

    last_report: Any

    def fleet(self, image: ProcessImage) -> Any: ...


def coop_autonomy(image: ProcessImage, floor_wh: FloatArray) -> dict[str, float | None]:
    """Hours of autonomy at the current net load: capacity × (SoC − floor) / net load.

    Over the batteries whose SoC and capacity are known: the energy above their
    floors, divided by the coop's net load (load less PV of the members read this
    cycle), which is what the batteries discharge when the coop is an island.
    ``hours`` is None when the net load is at most :data:`NOT_DISCHARGING_W`: the
    sun covers the load, and nothing runs down. ``battery_w`` is what the
    batteries actually deliver now (positive: discharging), for comparison.
    """
    known = image.has_battery & np.isfinite(image.soc_pct) & np.isfinite(image.capacity_wh)
    capacity = np.where(known, image.capacity_wh, 0.0)
    stored = np.where(known, image.soc_pct, 0.0) / 100.0 * capacity
    floor = np.where(known, np.nan_to_num(np.asarray(floor_wh, dtype=float)), 0.0)
    usable = float(np.maximum(stored - floor, 0.0).sum())
    valid = image.valid
    net = float(np.where(valid, image.load_w - image.pv_production_w, 0.0).sum())
    delivering = known & np.isfinite(image.battery_w)
    return {
        "capacity_kwh": round(float(capacity.sum()) / 1000.0, 3),
        "floor_kwh": round(float(floor.sum()) / 1000.0, 3),
        "above_floor_kwh": round(usable / 1000.0, 3),
        "net_load_w": round(net, 1),
        "battery_w": round(float(np.where(delivering, image.battery_w, 0.0).sum()), 1),
        "batteries_known": int(known.sum()),
        "members_read": int(valid.sum()),
        "hours": round(usable / net, 2) if net > NOT_DISCHARGING_W else None,
    }


def _autonomy(live: object) -> dict[str, float | None] | None:
    """:func:`coop_autonomy` from the live view's last cycle snapshot (or, for a view
    without snapshots, its controller's last report), None before its first cycle."""
    snap = getattr(live, "snapshot", None)
    if snap is not None:
        return coop_autonomy(snap.report.image, snap.floor_wh)
    if hasattr(live, "snapshot"):
        return None  # a runtime before its first cycle
    controller: _Controller | None = getattr(live, "controller", None)
    report = getattr(controller, "last_report", None)
    if controller is None or report is None:
        return None
    image = report.image
    return coop_autonomy(image, controller.fleet(image).soc_min_wh)


def _ts(text: object, key: str) -> float:
    if not isinstance(text, str):
        raise ValueError(f"{key} is not an ISO time")
    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def planned_coop_soc(plan: dict[str, Any]) -> list[float | None]:
    """The plan's coop SoC (%) at each step boundary, capacity-weighted over its batteries
    (None where a battery's planned SoC is not a number)."""
    batteries = plan.get("batteries") or []
    caps = np.array([float(b["capacity_kwh"]) for b in batteries])
    if not len(caps) or caps.sum() <= 0:
        return []
    soc = np.array([b["soc_pct"] for b in batteries], dtype=float)  # B × (T+1)
    return [_finite(v) for v in np.round(caps @ soc / caps.sum(), 2)]


def plan_progress(plan: dict[str, Any], reader: LedgerReader, now: float) -> dict[str, Any]:
    """The plan against the day so far: what was planned up to the last booked interval,
    what the ledger booked over the same time, the next planned shed and the planned SoC.

    Raises:
        KeyError, TypeError, ValueError: the plan lacks a key or has a bad value.
    """
    start, end = _ts(plan["start"], "start"), _ts(plan["end"], "end")
    step_s = float(plan["step_s"])
    booked_until = reader.span()[1]
    upto = min(max(float(booked_until or start), start), end, max(now, start))
    totals = reader.totals(None, start, upto) if upto > start else None
    booked: dict[str, Any] = {"until": upto if totals else None}
    if totals is not None:
        figures = member_figures(totals)  # type: ignore[arg-type]
        booked |= {k: figures[k] for k in ("liberated_kwh", "load_kwh", "served_kwh",
                                           "shed_kwh", "curtailed_kwh", "pv_kwh",
                                           "from_grid_kwh", "intervals")}
        booked["hours_islanded"] = round((totals.get("islanded_s") or 0) / 3600.0, 3)
    runs = [r | {"start_ts": _ts(r["start"], "shed_schedule.start"),
                 "end_ts": _ts(r["end"], "shed_schedule.end")} for r in plan["shed_schedule"]]
    shed_to = sum(float(r["kwh"]) * min(max((upto - r["start_ts"])
                                            / max(r["end_ts"] - r["start_ts"], 1e-9), 0.0), 1.0)
                  for r in runs)
    upcoming = [r for r in runs if r["end_ts"] > now]
    nxt = min(upcoming, key=lambda r: r["start_ts"]) if upcoming else None
    soc = planned_coop_soc(plan)
    at = (min(max(now, start), end) - start) / step_s
    soc_now = None
    if soc:
        i = min(int(at), len(soc) - 1)
        a, b = soc[i], soc[min(i + 1, len(soc) - 1)]
        if a is not None and b is not None:
            soc_now = round(a + (b - a) * min(at - i, 1.0), 2)
    forecast = plan["forecast"]
    return {
        "coop": plan.get("coop"),
        "start_ts": start,
        "end_ts": end,
        "now": now,
        "step_s": step_s,
        "scenario": plan.get("scenario"),
        "feasible": plan["feasible"],
        "required_start_pct": {level: _finite(v["coop_pct"])
                               for level, v in plan["required_start"].items()},
        "autonomy_h": {k: _finite(v) for k, v in plan["autonomy_h"].items()},
        "planned": {
            "coop_soc_pct_now": soc_now,
            "shed_kwh_so_far": round(shed_to, 3),
            "shed_kwh": {k: _finite(v) for k, v in plan["shed_kwh"].items()},
            "curtailed_kwh": _finite(plan["curtailed_kwh"]),
            "pv_kwh": _finite(forecast["pv_kwh"]),
            "load_kwh": _finite(sum(float(v) for v in forecast["load_kwh"].values())),
        },
        "booked": booked,
        "next_shed": None if nxt is None else {
            "tier": nxt["tier"], "start_ts": nxt["start_ts"], "end_ts": nxt["end_ts"],
            "kwh": _finite(nxt["kwh"]), "members": nxt.get("members") or {}},
        "coop_soc_pct": soc,
        "survival": odds_summary(plan),  # the odds the plan gave before the day (#21)
    }


class _PlanFile:
    """The saved plan, read again only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._raw = b""
        self._plan: dict[str, Any] = {}

    def read(self) -> tuple[bytes, dict[str, Any]]:
        """The file's bytes and its JSON; 404 without a file, 500 when it is not a plan."""
        try:
            st = self.path.stat()
        except OSError:
            raise HTTPException(404, "no island plan saved for this controller (write one "
                                f"with 'commonwatt island plan --json' to {self.path.name} "
                                "beside the ledger)") from None
        with self._lock:
            if self._key != (st.st_mtime_ns, st.st_size):
                try:
                    raw = self.path.read_bytes()
                    plan = json.loads(raw)
                except (OSError, ValueError) as exc:
                    raise HTTPException(500, f"island plan {self.path.name} cannot be read: "
                                        f"{exc}") from None
                if not isinstance(plan, dict):
                    raise HTTPException(500, f"island plan {self.path.name} is not a JSON "
                                        "object")
                self._key, self._raw, self._plan = (st.st_mtime_ns, st.st_size), raw, plan
            return self._raw, self._plan


def refused(reasons: Sequence[str]) -> str:
    """A 409's ``detail``: one string, as every error but a 422's (see the README), naming
    every failing precondition: ``refused: first; second``."""
    return "refused: " + "; ".join(reasons)


def _plan_required_pct(plan_store: _PlanFile) -> float:
    """The saved plan's required starting coop SoC: the level at which every tier holds
    where it can hold at all, else the one at which critical and essential loads hold."""
    try:
        _, plan = plan_store.read()
    except HTTPException as exc:
        raise HTTPException(409, refused([
            f"required_soc_pct: not given, and {exc.detail}"])) from None
    try:
        levels = plan["required_start"]
        level = "flexible" if levels["flexible"]["holds"] else "essential"
        value = float(levels[level]["coop_pct"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HTTPException(500, f"island plan {plan_store.path.name}: required_start: "
                            f"{exc}") from None
    if not 0 <= value <= 100:  # NaN too: a plan that cannot say refuses the island
        raise HTTPException(409, refused([
            f"the saved plan's required starting SoC is {value}: make a new plan"]))
    return value


def _battery_refusals(live: object, start: float, end: float, now: float) -> tuple[str, ...]:
    """An island starting now: whether the plan holds from each battery's SoC (not just
    the coop's), :func:`controller.island.feasibility.battery_refusals`."""
    from controller.island.feasibility import battery_refusals

    controller = getattr(live, "controller", None)
    report = getattr(controller, "last_report", None)
    if start > now or report is None:  # checked again when it starts: the coop SoC only
        return ()
    return battery_refusals(controller.follower.path, list(controller.member_ids),
                            report.image, now, end)


def _author(request: Request) -> tuple[str, str]:
    """Who the command is recorded under, and in which role: never what the body says.

    Access was checked by :meth:`api.auth.Authority.authorize`: a coordinator
    token (its label and role), or the controller's own host (the local secret,
    or loopback with ``[api] local_commands``: recorded as ``local``). The body's
    ``requested_by`` goes into the audit row's detail as a claim, nothing more.
    """
    principal = viewer_of(request).principal
    if principal.token_id is not None:
        return principal.label, principal.role
    return principal.label, "local"


def island_router(reader: LedgerReader, live: IslandLive | None,
                  plan_file: Path | None = None, audit: AuditLog | None = None) -> APIRouter:
    """Routes under ``/api/v1/island``; the plan from ``plan_file``, by default
    :data:`PLAN_FILE_NAME` beside the ledger; commands recorded in ``audit``."""
    router = APIRouter(prefix="/api/v1/island", tags=["island"])
    plan_store = _PlanFile(plan_file if plan_file is not None
                           else reader.path.parent / PLAN_FILE_NAME)

    def clock() -> float:
        return live.now() if live is not None else time.time()

    def supervisor() -> GridSupervisor:
        if live is None:
            raise HTTPException(503, "no controller is running on this ledger")
        return live.grid_supervisor()

    def between_cycles() -> contextlib.AbstractContextManager[object]:
        """A running controller's cycle lock: a command changes the grid state machine
        only between cycles, never while a cycle steps it."""
        lock = getattr(live, "cycle_lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    @router.get("", responses=answers(IslandStatus))
    def island_status(request: Request) -> dict[str, Any]:
        """The grid state (UNDEFINED, ON_GRID, GOING_OFF_GRID, OFF_GRID, RETURNING), the
        command in force, the grid-former's view and the coop's SoC; ``now`` on the
        controller's clock, ``autonomy`` (:func:`coop_autonomy`, null before the
        controller's first cycle) and ``plan_followed``: islanded, the plan the controller
        re-plans and follows (when it was made, what it sheds now, its feasibility)."""
        snap = getattr(live, "snapshot", None)
        if snap is not None:  # the running controller: its last cycle, never its machine
            status, followed = dict(snap.grid), snap.plan_followed
        else:  # before its first cycle (or a stand-in): between cycles, under their lock
            with between_cycles():
                status = supervisor().status()
                follower = getattr(getattr(live, "controller", None), "follower", None)
                followed = follower.status(clock()) if follower else None
        status = viewer_of(request).scrub(status)  # refusals name meters, so members
        return status | {"now": clock(), "autonomy": _autonomy(live), "plan_followed": followed}

    @router.get("/plan", responses={**answers(IslandPlan), **_NO_PLAN})
    def plan() -> Response:
        """The last island plan saved (``commonwatt island plan --json``), as written; 404
        when there is none."""
        raw, _ = plan_store.read()
        return Response(raw, media_type="application/json")

    def record(who: tuple[str, str], action: str, detail: dict[str, Any], outcome: str) -> None:
        if audit is not None:
            audit.append(who[0], who[1], action, detail, outcome)

    @router.get("/plan/progress", responses={**answers(PlanProgress), **_NO_PLAN})
    def progress(request: Request) -> dict[str, Any]:
        """The plan against what the ledger booked since its start (committed intervals
        only), the next planned shed, and the planned coop SoC per step; 404 without a
        plan."""
        _, saved = plan_store.read()
        try:
            answer = plan_progress(saved, reader, clock())
            if answer["next_shed"] is not None:
                answer["next_shed"]["members"] = viewer_of(request).keyed(
                    answer["next_shed"]["members"])
            return answer
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise HTTPException(500, f"island plan {plan_store.path.name}: {detail}") from None

    @router.get("/transitions", responses=answers(list[GridTransition], description="oldest first"))
    def transitions(request: Request, limit: int = 200) -> list[dict[str, Any]]:
        """Every change of grid state and every refused command, oldest first."""
        rows = viewer_of(request).scrub(reader.grid_transitions(min(max(limit, 1), 10_000)))
        return [r | {"time": datetime.fromtimestamp(float(r["ts"]), UTC).isoformat()}
                for r in rows]

    @router.post("/command", status_code=202, responses=answers(IslandAccepted, 202))
    def command(body: IslandRequest, request: Request) -> dict[str, Any]:
        """Ask for an island (a coordinator token, or no token from the controller's own
        host); 409 names every failing precondition."""
        who = _author(request)
        now = live.now() if live is not None else time.time()
        start = now if body.start is None else (
            body.start if body.start.tzinfo else body.start.replace(tzinfo=UTC)).timestamp()
        required = body.required_soc_pct
        detail = {"requested_by": body.requested_by, "start_ts": start,
                  "end_ts": start + body.hours * 3600, "required_soc_pct": required}
        if required is None:
            try:
                required = detail["required_soc_pct"] = _plan_required_pct(plan_store)
            except HTTPException as exc:  # refused before the grid state machine: kept too
                record(who, "island.command", detail, str(exc.detail))
                raise
        also = _battery_refusals(live, start, start + body.hours * 3600, now)
        with between_cycles():
            answer = supervisor().request_island(who[0], start, start + body.hours * 3600,
                                                 required, now, also)
        if isinstance(answer, Refusal):
            record(who, "island.command", detail, "refused: " + "; ".join(answer.reasons))
            raise HTTPException(409, refused(answer.reasons))
        record(who, "island.command", detail, "accepted")
        return {"accepted": True, "start_ts": answer.start_ts, "end_ts": answer.end_ts}

    @router.post("/return", status_code=202, responses=answers(IslandAccepted, 202))
    def end_island(body: ReturnRequest, request: Request) -> dict[str, Any]:
        """End the island early; 409 when there is none to end."""
        who = _author(request)
        now = live.now() if live is not None else time.time()
        with between_cycles():
            answer = supervisor().request_return(who[0], now)
        detail = {"requested_by": body.requested_by}
        if isinstance(answer, Refusal):
            record(who, "island.return", detail, "refused: " + "; ".join(answer.reasons))
            raise HTTPException(409, refused(answer.reasons))
        record(who, "island.return", detail, "accepted")
        return {"accepted": True}

    @router.post("/eve/cancel", status_code=202, responses=answers(IslandAccepted, 202))
    def cancel_eve(body: ReturnRequest, request: Request) -> dict[str, Any]:
        """End the island eve early (docs/island-eve.md): the batteries' prior modes are
        written back in the next cycle; 409 when no eve is in force."""
        who = _author(request)
        eve = getattr(getattr(live, "controller", None), "eve", None)
        detail = {"requested_by": body.requested_by}
        with between_cycles():
            accepted = eve is not None and eve.cancel(who[0])
        if not accepted:
            reason = "no island eve in force"
            record(who, "island.eve_cancel", detail, f"refused: {reason}")
            raise HTTPException(409, refused([reason]))
        record(who, "island.eve_cancel", detail, "accepted")
        return {"accepted": True}

    return router
