"""The API's operational surface, installed by ``create_app`` in one call: ``/metrics``,
the live stream, ``/docs`` without a CDN and one shape for error bodies.

It lives apart from :mod:`api.app` so the routes over the ledger and these can change
independently. The runtime tells the surface about each cycle with :func:`cycle_done`
and stops its streams with :func:`close_streams`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from api.docs_offline import install_offline_docs
from api.errors import install_error_shape
from api.live_stream import LiveHub, MemberOf, live_router, public_viewer
from api.metrics import CoopMetrics, metrics_router
from controller.ledger import LedgerReader

log = logging.getLogger(__name__)


def install_surface(app: FastAPI, reader: LedgerReader, live: Any | None,
                    member_of: MemberOf = public_viewer) -> None:
    """Mount the surface on ``app`` (created with ``docs_url=None, redoc_url=None``).

    ``member_of`` decides which member's own figures a live stream may carry (see
    :mod:`api.live_stream`); the default gives everyone the public view.
    """
    metrics = CoopMetrics(reader, live)
    hub = LiveHub()
    app.state.metrics = metrics
    app.state.live_hub = hub
    app.include_router(metrics_router(metrics))
    app.include_router(live_router(hub, member_of))
    install_offline_docs(app)
    install_error_shape(app)


def cycle_done(app: FastAPI, report: Any | None, grid: dict[str, Any] | None = None) -> None:
    """One cycle finished (``report``) or failed (``None``): count it and push it live.

    Never raises: the live picture is not worth a cycle.
    """
    try:
        metrics: CoopMetrics | None = getattr(app.state, "metrics", None)
        if metrics is not None:
            metrics.observe_cycle(None if report is None else report.duration_s)
        hub: LiveHub | None = getattr(app.state, "live_hub", None)
        if hub is not None and report is not None:
            hub.publish(report, grid)
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("live surface update failed")


def close_streams(app: FastAPI) -> None:
    """End every open live stream (before the server shuts down)."""
    hub: LiveHub | None = getattr(app.state, "live_hub", None)
    if hub is not None:
        hub.close()


class ApiSurface:
    """The API and pages as the runtime serves them (:mod:`controller.web`'s surface,
    registered as the ``commonwatt.surface`` entry point ``api``)."""

    def __init__(self, reader: LedgerReader, live: Any, config: Any) -> None:
        from api.app import create_app  # api.app imports this module

        self.app = create_app(reader, live=live, config=config)

    def cycle_done(self, report: Any | None, grid: dict[str, Any] | None = None) -> None:
        """Count the cycle and push it live (:func:`cycle_done`)."""
        cycle_done(self.app, report, grid)

    def close(self) -> None:
        """End every open live stream (:func:`close_streams`)."""
        close_streams(self.app)
