"""Live push every cycle, by Server-Sent Events: the coop's flows, SoC and grid state.

The runtime hands each finished cycle to :meth:`LiveHub.publish`, which turns it into
a :func:`cycle_snapshot` at once (the dispatch's result arrays are reused by the next
tick, so they are read now, not when a slow client gets round to it) and wakes every
open stream. Streams live on uvicorn's event loop; the cycle may run on another thread
(the tests' servers do), so the hand-over goes through ``call_soon_threadsafe``.

What a stream shows is :func:`live_view` of the snapshot for one viewer: the coop as a
whole for the public (``member_id=None``), plus the member's own figures for a member.
Which member a request speaks for is the router's ``member_of`` hook; until tokens
exist it answers ``None`` for everyone, so nothing per member is pushed publicly.

**Event ids survive a restart.** Each event's ``id`` is the cycle's end on the
controller's clock, in milliseconds (``event_id`` in the data; one more than the last
where two cycles end in the same millisecond), so ids only grow, across restarts too,
and a client reconnecting with ``Last-Event-ID`` (every EventSource does) is not sent a
cycle it has already had: it gets the next one. Only the newest cycle matters to a live
picture, so nothing older is replayed. A comment line (``: ping``) every :data:`PING_S`
seconds keeps idle proxies and clients from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from sse_starlette import EventSourceResponse

from api.contract import answers
from api.route_models import LiveCycle

#: Per-member keys of a snapshot, W (battery: positive discharging; grid: positive import).
MEMBER_KEYS = ("pv_w", "load_w", "grid_w", "battery_w", "soc_pct")
#: Coop flows from the dispatch, as average W over the cycle.
FLOW_KEYS = ("own_pv_used", "to_peers", "from_grid", "to_grid", "to_battery",
             "from_battery", "curtailed", "shed")
#: Seconds between keep-alive comments: below the 60 s idle timeout of common proxies.
PING_S = 15
#: Open streams at most: each holds a connection and a task; past this, 503 (a page
#: falls back to polling) rather than let one client exhaust the controller.
MAX_STREAMS = 256
#: Which member a request may see live figures of; ``None``: the public view.
MemberOf = Callable[[Request], "str | None"]


def _w(x: float) -> float | None:
    return round(float(x), 1) if np.isfinite(x) else None


class MemberColumns(Mapping[str, dict[str, float | None]]):
    """Each member's live values (:data:`MEMBER_KEYS`), read from the cycle's columns when
    a viewer asks for one member: building a dict per member every cycle cost 76 ms at
    10,000 members (bench api with a live controller), for streams that show one each."""

    def __init__(self, member_ids: tuple[str, ...], columns: dict[str, np.ndarray]) -> None:
        self._ids, self._columns = member_ids, columns
        self._index: dict[str, int] | None = None

    def __getitem__(self, member_id: str) -> dict[str, float | None]:
        if self._index is None:  # the first viewer of this cycle builds it; a race builds it twice
            self._index = {m: j for j, m in enumerate(self._ids)}
        j = self._index[member_id]
        return {k: _w(col[j]) for k, col in self._columns.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def _sum(values: np.ndarray) -> float | None:
    """Sum of the known values; ``None`` when none is known (never a made-up 0)."""
    known = values[np.isfinite(values)]
    return round(float(known.sum()), 1) if known.size else None


def cycle_snapshot(report: Any, grid: dict[str, Any] | None, seq: int) -> dict[str, Any]:
    """Everything any viewer may be shown of one cycle (``controller.cycle.CycleReport``)."""
    image = report.image
    load = np.where(image.valid, image.load_w, np.nan)
    pv = np.where(image.has_pv, image.pv_w, np.nan)
    battery = np.where(image.has_battery, image.battery_w, np.nan)
    soc = np.where(image.has_battery, image.soc_pct, np.nan)
    capacity = np.where(np.isfinite(soc) & np.isfinite(image.capacity_wh), image.capacity_wh, 0)
    coop_soc = (float(np.nansum(soc * capacity) / capacity.sum()) if capacity.sum() > 0
                else float("nan"))
    flows: dict[str, float | None] = dict.fromkeys(FLOW_KEYS)
    hours = (report.end_ts - report.start_ts) / 3600.0
    if report.result is not None and hours > 0:
        for key in FLOW_KEYS:
            flows[key] = _w(float(np.sum(getattr(report.result, key))) / hours)
    members = MemberColumns(tuple(image.member_ids), dict(zip(
        MEMBER_KEYS, (pv, load, np.array(image.meter_w, dtype=float), battery, soc),
        strict=True)))
    return {
        "seq": seq,
        "ts": float(report.end_ts),
        "grid_state": None if grid is None else grid.get("state"),
        "islanded": None if grid is None else bool(grid.get("islanded")),
        "coop": {"pv_w": _sum(pv), "load_w": _sum(load), "grid_w": _sum(image.meter_w),
                 "battery_w": _sum(battery), "soc_pct": _w(coop_soc),
                 "members_read": int(np.count_nonzero(image.valid)),
                 "members": len(image.member_ids)},
        "flows_w": flows,
        "members": members,
    }


def live_view(snapshot: dict[str, Any], member_id: str | None) -> dict[str, Any]:
    """What one viewer is shown: the coop for all; its own figures for a member.

    This is the filter a per-member stream goes through; never send a snapshot whole.
    """
    view = {k: v for k, v in snapshot.items() if k != "members"}
    if member_id is not None:
        view["member"] = {"id": member_id, **snapshot["members"].get(member_id, {})}
    return view


def public_viewer(_: Request) -> str | None:
    """The default ``member_of``: everyone is the public until tokens say otherwise."""
    return None


class _Subscriber:
    """One open stream: a one-slot mailbox on its own event loop (only the newest cycle
    matters to a live picture, so a slow client skips cycles instead of queueing them)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1)

    def offer(self, item: dict[str, Any] | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class LiveHub:
    """The latest cycle snapshot, fanned out to every open stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._seq = 0
        self._event_id = 0
        self.latest: dict[str, Any] | None = None
        self.closed = False

    @property
    def open_streams(self) -> int:
        """How many streams are subscribed now."""
        with self._lock:
            return len(self._subscribers)

    def publish(self, report: Any, grid: dict[str, Any] | None) -> dict[str, Any]:
        """Snapshot ``report`` now and wake every stream; returns the snapshot."""
        with self._lock:
            self._seq += 1
            snapshot = cycle_snapshot(report, grid, self._seq)
            # The controller's clock, not a counter from 0: a restarted controller's ids
            # go on growing, so Last-Event-ID still means "already seen".
            self._event_id = max(self._event_id + 1, int(float(report.end_ts) * 1000))
            snapshot["event_id"] = self._event_id
            self.latest = snapshot
            subscribers = list(self._subscribers)
        self._deliver(subscribers, snapshot)
        return snapshot

    def close(self) -> None:
        """End every stream, so the server's shutdown does not wait on open ones."""
        with self._lock:
            self.closed = True
            subscribers = list(self._subscribers)
        self._deliver(subscribers, None)

    @staticmethod
    def _deliver(subscribers: list[_Subscriber], item: dict[str, Any] | None) -> None:
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # that stream's loop has closed
                sub.loop.call_soon_threadsafe(sub.offer, item)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[_Subscriber]:
        """An open stream's mailbox, for as long as the block runs."""
        sub = _Subscriber()
        with self._lock:
            self._subscribers.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subscribers.discard(sub)

    async def snapshots(self) -> AsyncIterator[dict[str, Any]]:
        """The latest snapshot (if any), then one per cycle until the hub closes."""
        async with self.subscribe() as sub:
            if self.latest is not None:
                yield self.latest
            while not self.closed:
                item = await sub.queue.get()
                if item is None:
                    return
                yield item


def live_router(hub: LiveHub, member_of: MemberOf = public_viewer) -> APIRouter:
    """``GET /api/v1/live`` (the latest cycle, for polling) and ``/api/v1/live/stream``."""
    router = APIRouter(prefix="/api/v1/live", tags=["live"])

    @router.get("", responses=answers(LiveCycle | None, description="the last cycle; "
                                      "null before the first"))
    def latest(request: Request) -> dict[str, Any] | None:
        """The last cycle's coop-wide flows, SoC and grid state (``null`` before the first
        cycle, or with no controller running); what the stream pushes, for polling."""
        snapshot = hub.latest
        return None if snapshot is None else live_view(snapshot, member_of(request))

    @router.get("/stream", response_class=EventSourceResponse,
                responses={200: {"content": {"text/event-stream": {"schema": {
                    "type": "string", "description": "Server-Sent Events: `event: cycle`, "
                    "`id:` the cycle's end in ms (send it back as `Last-Event-ID`), `data:` "
                    "a LiveCycle as JSON; a `: ping` comment every 15 s"}}},
                    "description": "one `cycle` event a cycle"}})
    async def stream(request: Request) -> EventSourceResponse:
        """Server-Sent Events: a ``cycle`` event every cycle, its data the JSON of
        ``GET /api/v1/live``, its id the cycle's end in milliseconds (growing across
        restarts; with ``Last-Event-ID`` a cycle already seen is not sent again); a
        ``: ping`` comment every 15 s keeps proxies from closing an idle stream; 503 past
        ``MAX_STREAMS`` open streams."""
        member_id = member_of(request)
        try:
            seen = int(request.headers.get("last-event-id", "0"))
        except ValueError:
            seen = 0  # not one of our ids: start from the newest cycle
        if hub.open_streams >= MAX_STREAMS:
            raise HTTPException(503, f"{MAX_STREAMS} live streams are open already; poll "
                                "/api/v1/live instead")

        async def events() -> AsyncIterator[dict[str, str]]:
            async for snapshot in hub.snapshots():
                if snapshot["event_id"] <= seen:
                    continue  # the client has it (a reconnect): wait for the next cycle
                yield {"event": "cycle", "id": str(snapshot["event_id"]),
                       "data": json.dumps(live_view(snapshot, member_id))}

        return EventSourceResponse(events(), ping=PING_S)

    return router
