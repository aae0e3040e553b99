"""``/metrics`` in the Prometheus text format, from a registry of the app's own.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`: the global one
would make two apps in one process (tests, a bench next to a demo) register the same
names twice and fail. What a cycle measures (its duration) is observed when the
runtime reports the cycle (:meth:`CoopMetrics.observe_cycle`); what the controller
already counts (devices by state, the ledger writer, the time-series spool) is read
at scrape time by :class:`_LiveCollector`, so no second count can drift from the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from controller.ledger import LedgerReader

#: Device states the poller reports; each is exported, 0 when no device is in it, so
#: a dashboard's query for ``state="backoff"`` has a series before the first failure.
DEVICE_STATES = ("ok", "unknown", "backoff")
#: Ledger writer states (``LedgerWriter.status()["state"]``).
LEDGER_STATES = ("ok", "failing")
#: Cycle-time buckets, s: a cycle is meant to take well under a second; the tail
#: buckets catch the slow Modbus read that makes a cycle overrun.
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _LiveCollector(Collector):
    """Gauges and counters read from the live view (and the ledger) at each scrape."""

    def __init__(self, reader: LedgerReader, live: Any | None) -> None:
        self.reader = reader
        self.live = live

    def collect(self) -> Iterator[Metric]:
        _, _, count = self.reader.span()
        ledger_intervals = GaugeMetricFamily(
            "commonwatt_ledger_intervals", "Settlement intervals on disk in the ledger")
        ledger_intervals.add_metric([], count)
        yield ledger_intervals
        live = self.live
        if live is None:
            return  # ledger only: nothing runs, so nothing else is known
        devices = GaugeMetricFamily("commonwatt_devices", "Configured devices by health state",
                                    labels=["state"])
        states = [str(d.get("state")) for d in live.devices()]
        for state in (*DEVICE_STATES, *sorted(set(states) - set(DEVICE_STATES))):
            devices.add_metric([state], states.count(state))
        yield devices
        status = live.ledger_status()
        committed = CounterMetricFamily(
            "commonwatt_intervals_committed",
            "Settlement intervals the ledger writer committed since the controller started")
        committed.add_metric([], float(status.get("committed_this_run") or 0))
        yield committed
        writer = GaugeMetricFamily("commonwatt_ledger_writer_state",
                                   "1 for the ledger writer's current state, 0 for the others",
                                   labels=["state"])
        for state in LEDGER_STATES:
            writer.add_metric([state], 1.0 if status.get("state") == state else 0.0)
        yield writer
        waiting = GaugeMetricFamily("commonwatt_ledger_intervals_waiting",
                                    "Intervals closed but not yet written to disk")
        waiting.add_metric([], float(status.get("intervals_waiting") or 0))
        yield waiting
        age = live.last_cycle_age_s()
        if age is not None:
            last = GaugeMetricFamily("commonwatt_last_cycle_age_seconds",
                                     "Wall seconds since the last finished cycle")
            last.add_metric([], age)
            yield last
        yield from _timeseries(getattr(live, "timeseries", None))


def _timeseries(ts: Any | None) -> Iterator[Metric]:
    """The time-series sender: spool depth, drops, failures, acknowledged points and state;
    nothing when no time series is configured."""
    if ts is None:
        return
    depth = GaugeMetricFamily("commonwatt_timeseries_buffer_points",
                              "Points spooled and not yet acknowledged by the time-series "
                              "server")
    depth.add_metric([], float(ts.pending_points()))
    yield depth
    dropped = CounterMetricFamily("commonwatt_timeseries_dropped_points",
                                  "Points dropped because the spool was full or failing")
    dropped.add_metric([], float(ts.dropped_points))
    yield dropped
    failures = CounterMetricFamily("commonwatt_timeseries_failures",
                                   "Write requests the time-series server did not acknowledge"
                                   " (each retry counts)")
    failures.add_metric([], float(ts.failures))
    yield failures
    sent = CounterMetricFamily("commonwatt_timeseries_sent_points",
                               "Points the time-series server acknowledged")
    sent.add_metric([], float(ts.sent_points))
    yield sent
    state = GaugeMetricFamily("commonwatt_timeseries_state",
                              "1 for the sender's state: ok, down (an outage, retried) or "
                              "config-error (401/403/404: see /healthz)", labels=["state"])
    for name in ("ok", "down", "config-error"):
        state.add_metric([name], 1.0 if ts.state == name else 0.0)
    yield state


class CoopMetrics:
    """The metrics of one app; :meth:`observe_cycle` is called by the runtime each cycle."""

    def __init__(self, reader: LedgerReader, live: Any | None) -> None:
        self.registry = CollectorRegistry()
        self.cycle_seconds = Histogram(
            "commonwatt_cycle_seconds", "Wall time of one control cycle (poll, dispatch, "
            "write setpoints, book)", buckets=CYCLE_BUCKETS, registry=self.registry)
        self.cycle_failures = Counter(
            "commonwatt_cycle_failures", "Cycles that raised (logged; the loop went on)",
            registry=self.registry)
        self.registry.register(_LiveCollector(reader, live))

    def observe_cycle(self, duration_s: float | None) -> None:
        """One cycle done in ``duration_s``; ``None`` for a cycle that failed."""
        if duration_s is None:
            self.cycle_failures.inc()
        else:
            self.cycle_seconds.observe(duration_s)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def metrics_router(metrics: CoopMetrics) -> APIRouter:
    """``GET /metrics``."""
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {
                    "type": "string", "description": "Prometheus text exposition"}}}}})
    def scrape() -> Response:
        """Cycle time, devices by state, intervals committed, the ledger writer's state and
        the time-series buffer depth, in the Prometheus text format."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
