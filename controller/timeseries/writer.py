"""Sends spooled time series to an InfluxDB v2 write API, oldest first, never losing a point.

:meth:`TimeSeriesWriter.submit` only appends to the spool, so the control
cycle never waits on the network. One background thread sends the oldest
batches, deletes them from the spool only once the server acknowledged them
(HTTP 2xx), and while the server is down retries with a back-off (1 s doubling
to 30 s), so that when it returns the backlog is filled in, in order.

A batch is deleted right after its ack, in one SQLite transaction, so it is
sent once. The windows for a duplicate are an ack that never arrives after
the server stored the data (a connection reset, a read timeout) and a process
killed between the ack and the delete: the batch is sent again. VictoriaMetrics
stopped during a request does the first: it may store all or part of the body
and close the connection unanswered. On InfluxDB the resent points overwrite
themselves (same series, same time); on VictoriaMetrics they stay as duplicate
samples unless it runs with ``-dedup.minScrapeInterval``. No client can close
that window without the server's help.

A batch dropped for room (spool full) while it is in flight is counted in
``dropped_points`` even if that request then succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from controller.timeseries.points import interval_points, live_points
from controller.timeseries.spool import Batch, Spool

log = logging.getLogger(__name__)

#: HTTP statuses that mean "this body will never be accepted": retrying such a
#: batch would stall every later point behind it, so it is dropped instead.
_REJECTED = {400, 413, 422}
#: HTTP statuses that mean "this server is up but the config is wrong": not an outage,
#: nothing a retry fixes until someone changes the config or the server (see
#: :func:`config_problem`). The points stay spooled; they go out once that is fixed.
_MISCONFIGURED = {401, 403, 404}
#: The sender's wait between attempts while the config is wrong (a token may be made
#: on the server meanwhile; asking every 30 s would only fill the server's log).
CONFIG_RETRY_S = 300.0


def config_problem(url: str, bucket: str, status: int, body: str) -> str:
    """What a 401, 403 or 404 from ``/api/v2/write`` means, and what to set: one message
    naming the URL, for the log (once) and ``/healthz``."""
    said = f" ({body.strip()[:200]})" if body and body.strip() else ""
    where = f"time-series server {url}: POST {url.rstrip('/')}/api/v2/write answered {status}"
    if status == 404:
        if "bucket" in body.lower():
            return (f"{where}{said}: set [timeseries] bucket (and org) to a bucket that "
                    f"exists, or create bucket {bucket!r} on the server")
        return (f"{where}{said}: this is not an InfluxDB v2 write API. InfluxDB 2 and "
                "VictoriaMetrics serve it; InfluxDB 1.x only from 1.8 on (its v2 "
                "compatibility API: [timeseries] bucket = \"DATABASE/RETENTION\", token = "
                "\"USER:PASSWORD\"); older InfluxDB cannot be used. Check [timeseries] url "
                "(the server's base URL, without /api/v2/write)")
    return (f"{where}{said}: set [timeseries] token to a token allowed to write to bucket "
            f"{bucket!r} (InfluxDB 2: an API token with write access; InfluxDB 1.8: "
            "\"USER:PASSWORD\")")


class TimeSeriesWriter:
    """Spools points and sends them in the background; nothing here raises on a dead server.

    Args:
        url: the server's base URL (InfluxDB 2, or VictoriaMetrics, which takes
            InfluxDB line protocol at ``/api/v2/write``).
        bucket: the bucket to write to.
        org: the organisation.
        token: the API token; empty for a server without authentication.
        spool_dir: where unsent points are kept across restarts; ``None``
            keeps them in memory only. One writer per directory (a lock
            file enforces it: a second one raises ``RuntimeError``).
        max_spool_bytes: the most line protocol the spool holds; past it the
            oldest points are dropped and counted in ``dropped_points``.
    """

    #: Back-off after a failed send: starts here and doubles...
    retry_initial_s = 1.0
    #: ...up to here.
    retry_max_s = 30.0
    #: The most line protocol sent in one request during a backfill.
    request_bytes = 2**20
    #: HTTP timeout of one request, in seconds.
    timeout_s = 5.0

    def __init__(
        self, url: str, bucket: str, org: str = "commonwatt", token: str = "",
        spool_dir: Path | None = None, max_spool_bytes: int = 64 * 2**20,
    ) -> None:
        self.url, self.bucket, self.org = url, bucket, org
        self.spool = Spool(spool_dir, max_spool_bytes)
        # retries=False: the sender owns retrying (and its back-off), so one
        # failed attempt returns at once instead of hiding urllib3's retries.
        self._client = InfluxDBClient(url=url, token=token, org=org,
                                      timeout=int(self.timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        #: Failed send attempts (each retry counts).
        self.failures = 0
        #: Points the server acknowledged.
        self.sent_points = 0
        #: Points the server refused outright (HTTP 400/413/422), dropped so
        #: they do not block the points behind them.
        self.rejected_points = 0
        self.last_error: str | None = None
        self.last_success_ts: float | None = None
        #: Set while the server answers 401/403/404 (:func:`config_problem`): what to fix.
        self.config_error: str | None = None
        self._down = False
        # After a refused request of several batches, batches up to this id go
        # out one by one, so that only the bad one is dropped.
        self._single_until = 0
        self._changed = threading.Condition()  # notified on submit, ack, failure, close
        self._wake = threading.Event()  # cuts a back-off short (flush, close)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeseries-writer", daemon=True)
        self._thread.start()
        if self.spool.pending_points:
            log.info("time-series spool holds %d points from before; sending them first",
                     self.spool.pending_points)

    @property
    def dropped_points(self) -> int:
        """Points dropped because the spool was full (since this writer started)."""
        return self.spool.dropped_points

    def pending_points(self) -> int:
        """Points spooled and not yet acknowledged by the server."""
        return self.spool.pending_points

    def submit(self, points: list[str | Point]) -> None:
        """Queue points for sending; returns at once, whatever the server's state.

        Args:
            points: line-protocol strings (one point a line), or
                ``influxdb_client.Point`` objects at ``WritePrecision.NS``. They
                are stored and sent as one batch, after every batch submitted
                before. Times are read as nanoseconds.

        A point that cannot be stored (a full or failing disk, a closed
        writer) is logged and counted in ``dropped_points``: the server's state
        or the disk's never raises from here.

        Raises:
            ValueError: a ``Point`` at another precision (a programming error).
        """
        lines = []
        for point in points:
            if isinstance(point, Point):
                if point.write_precision != WritePrecision.NS:
                    # An integer time is taken as already in the point's
                    # precision; sent at NS it would land decades off.
                    raise ValueError("a Point must use WritePrecision.NS (the default)")
                lines.append(point.to_line_protocol())
            else:
                lines += [line.strip() for line in point.splitlines()]
        try:
            self.spool.append(lines)
        except Exception:  # noqa: BLE001 - the time series is never worth a cycle
            self.spool.dropped_points += len(lines)
            log.exception("time-series spool could not store %d points; dropped", len(lines))
            return
        with self._changed:
            self._changed.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every spooled point is acknowledged; ``False`` on timeout.

        A sender waiting out a back-off retries at once, so a flush right after
        the server returns does not wait for the back-off to end.
        """
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._changed:
            while self.spool.pending_points:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the sender; unsent points stay in the spool for the next start.

        While the server is reachable, up to ``timeout_s`` is spent sending
        what is pending; a server that is down is not waited for. With no
        ``spool_dir``, whatever is still pending after that is lost.
        """
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._changed:
            while self.spool.pending_points and not self._down and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
        self._stop.set()
        self._wake.set()
        with self._changed:
            self._changed.notify_all()
        # An attempt in flight ends within the HTTP timeout; its ack, if any,
        # is still booked before the spool closes.
        self._thread.join(self.timeout_s + 1)
        if self._thread.is_alive():
            log.warning("time-series sender still busy at close; its batch will be resent")
        self.spool.close()
        self._client.close()

    @property
    def state(self) -> str:
        """``ok`` (the last attempt was acknowledged, or none was needed), ``down`` (the
        server cannot be reached or fails: an outage, retried) or ``config-error`` (it
        answers 401/403/404: the config or the server must change)."""
        if self.config_error is not None:
            return "config-error"
        return "down" if self._down else "ok"

    def status(self) -> dict[str, Any]:
        """The sender's health, for ``/healthz``."""
        return {
            "state": self.state,
            "url": self.url,
            "config_error": self.config_error,
            "pending": self.spool.pending_points,
            "dropped": self.dropped_points,
            "rejected": self.rejected_points,
            "failures": self.failures,
            "server_down": self._down,
            "last_error": self.last_error,
            "last_success_ts": self.last_success_ts,
        }

    def write(self, report: Any) -> None:
        """Legacy entry point: spool one cycle's points from a ``CycleReport``.

        Builds ``commonwatt_live`` points at ``report.end_ts``, and
        ``commonwatt_member`` points for what the cycle booked: the old shape's
        ``report.booked`` (one interval, ``start_ts``..``end_ts``) or the
        current shape's ``report.committed`` intervals. Then :meth:`submit`.
        New code calls :meth:`submit` with :func:`live_points` and
        :func:`interval_points` itself. Never raises.
        """
        try:
            image = report.image
            lines = live_points(report.end_ts, image.member_ids, {
                "pv_w": image.pv_w, "meter_w": image.meter_w, "battery_w": image.battery_w,
                "soc_pct": image.soc_pct, "setpoint_w": report.setpoints_w,
            }, image.valid)
            if getattr(report, "booked", None) is not None:
                lines += interval_points(report.start_ts, report.end_ts, image.member_ids,
                                         report.booked)
            for interval in getattr(report, "committed", ()):
                lines += interval_points(interval.start_ts, interval.end_ts,
                                         interval.member_ids, interval.booked)
        except Exception:  # noqa: BLE001 - the runtime's loop must not die on a bad report
            log.exception("time-series points could not be built from the cycle report")
            return
        self.submit(lines)

    # -- the sender thread --------------------------------------------------

    def _run(self) -> None:
        backoff = self.retry_initial_s
        while not self._stop.is_set():
            try:
                batches = self.spool.peek(self.request_bytes)
            except Exception:  # noqa: BLE001 - a spool closed under us ends the thread
                log.exception("time-series spool unreadable; sender stops")
                return
            if batches and batches[0].id <= self._single_until:
                batches = batches[:1]
            if not batches:
                with self._changed:
                    if not self.spool.pending_points and not self._stop.is_set():
                        self._changed.wait(1.0)
                continue
            try:
                sent = self._send(batches)
            except Exception:  # noqa: BLE001 - only a spool closed by a timed-out close()
                log.exception("time-series sender stops")
                return
            if sent:
                backoff = self.retry_initial_s
                continue
            with self._changed:
                self._changed.notify_all()  # let close() see that the server is down
            if self.config_error is not None:
                self._wake.wait(CONFIG_RETRY_S)
                continue
            self._wake.wait(backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    def _send(self, batches: list[Batch]) -> bool:
        """One request with ``batches``; ``True`` if the spool moved forward."""
        points = sum(b.points for b in batches)
        body = b"\n".join(b.body for b in batches).decode()
        # A flush() from now on cuts the next back-off short; one from before
        # this attempt has had its effect.
        self._wake.clear()
        try:
            self._api.write(self.bucket, self.org, body, write_precision=WritePrecision.NS)
        except ApiException as exc:
            if exc.status in _REJECTED:
                return self._rejected(batches, exc)
            if exc.status in _MISCONFIGURED:
                self._misconfigured(exc)
                return False
            self._failed(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - refused, reset, timeout: all mean retry
            self._failed(exc)
            return False
        # Acknowledged: delete at once, in one transaction, so it is sent once.
        self.spool.remove([b.id for b in batches])
        self.sent_points += points
        self.last_success_ts = time.time()
        if self.config_error is not None:
            self.config_error = None
            log.warning("time-series server %s takes writes now", self.url)
        if self._down:
            self._down = False
            log.info("time-series server %s is back; %d points still to backfill",
                     self.url, self.spool.pending_points)
        with self._changed:
            self._changed.notify_all()
        return True

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.config_error = None  # unreachable now: an outage, whatever it answered before
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self._down:  # once per outage, not once per retry
            self._down = True
            log.warning("time-series server %s not taking writes (%s); spooling until it does",
                        self.url, self.last_error)

    def _misconfigured(self, exc: ApiException) -> None:
        """401/403/404: a configuration error, named once (not an outage: ``_down`` stays
        as it was, and ``close`` waits for nothing)."""
        self.failures += 1
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(
            exc.body or exc.reason or "")
        problem = config_problem(self.url, self.bucket, int(exc.status), body)
        self.last_error = f"HTTP {exc.status}: {body[:200]}"
        if problem != self.config_error:  # once, not once per retry
            log.error("%s", problem)
        self.config_error = problem
        self._down = True  # no point waiting for it at close: nothing is taken

    def _rejected(self, batches: list[Batch], exc: ApiException) -> bool:
        """The server refused the body: find the bad batch, drop only that one."""
        self.failures += 1
        self.last_error = f"HTTP {exc.status}: {str(exc.body or exc.reason)[:200]}"
        if len(batches) > 1:
            self._single_until = batches[-1].id  # resend singly; the good ones go through
            return True
        self.spool.remove([batches[0].id])
        self.rejected_points += batches[0].points
        log.error("time-series server %s refused a batch of %d points (%s); dropped it",
                  self.url, batches[0].points, self.last_error)
        with self._changed:
            self._changed.notify_all()
        return True
