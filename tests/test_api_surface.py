"""The API's surface: ``/metrics`` parsed as Prometheus text, ``/docs`` with no asset from
elsewhere, and one error shape, ``{"detail": ...}`` naming the parameter, for a table of
bad requests."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.surface import cycle_done
from controller.ledger import LedgerReader
from tests.auth_helpers import bearer, public_app
from tests.ledger_helpers import write_ledger
from tests.test_api import _cycle


class _Spool:
    """A time-series writer's counts, as :class:`TimeSeriesWriter` reports them."""

    dropped_points = 4
    failures = 2
    sent_points = 40
    state = "down"

    def pending_points(self) -> int:
        return 123


class _Live:
    """A running controller as the API sees it: two devices ok, one backing off."""

    cycle_s = 1.0
    settlement_s = 60
    timeseries = _Spool()

    def devices(self) -> list[dict[str, Any]]:
        return [{"name": "h01/meter", "kind": "inverter", "state": "ok"},
                {"name": "h01/battery", "kind": "battery", "state": "ok"},
                {"name": "h02/meter", "kind": "inverter", "state": "backoff"}]

    def last_cycle_age_s(self) -> float:
        return 0.4

    def ledger_status(self) -> dict[str, object]:
        return {"state": "failing", "reason": "disk full", "intervals_waiting": 2,
                "committed_this_run": 7}

    def unwritten_wh(self, after_ts: int | None) -> dict[str, dict[str, int]]:
        return {}

    def open_interval_start(self) -> int | None:
        return None


@pytest.fixture()
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    write_ledger(path, ("h01", "h02"), 60, 1020.0, 60.0, [_cycle() for _ in range(10)])
    return path


def _samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


# ------------------------------------------------------------------ /metrics

def test_metrics_from_the_live_view_and_the_cycles(ledger: Path) -> None:
    app = create_app(LedgerReader(ledger), live=_Live())
    report = SimpleNamespace(duration_s=0.03, image=None)
    # the hub is not exercised here: a report without an image only reaches the metrics
    app.state.live_hub = None
    for _ in range(3):
        cycle_done(app, report)
    cycle_done(app, None)  # a failed cycle
    answer = TestClient(app).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    got = _samples(answer.text)
    assert got["commonwatt_cycle_seconds_count"] == 3
    assert got["commonwatt_cycle_seconds_sum"] == pytest.approx(0.09)
    assert got["commonwatt_cycle_seconds_bucket{le=0.05}"] == 3
    assert got["commonwatt_cycle_seconds_bucket{le=0.025}"] == 0
    assert got["commonwatt_cycle_failures_total"] == 1
    assert got["commonwatt_devices{state=ok}"] == 2
    assert got["commonwatt_devices{state=backoff}"] == 1
    assert got["commonwatt_devices{state=unknown}"] == 0
    assert got["commonwatt_intervals_committed_total"] == 7
    assert got["commonwatt_ledger_intervals"] == 10
    assert got["commonwatt_ledger_writer_state{state=failing}"] == 1
    assert got["commonwatt_ledger_writer_state{state=ok}"] == 0
    assert got["commonwatt_ledger_intervals_waiting"] == 2
    assert got["commonwatt_timeseries_buffer_points"] == 123
    assert got["commonwatt_timeseries_dropped_points_total"] == 4
    assert got["commonwatt_timeseries_failures_total"] == 2
    assert got["commonwatt_last_cycle_age_seconds"] == pytest.approx(0.4)


def test_each_app_has_its_own_registry(ledger: Path) -> None:
    """Two apps in one process: no duplicate names, and one's cycles are not the other's."""
    one, two = (create_app(LedgerReader(ledger), live=_Live()) for _ in range(2))
    one.state.live_hub = None
    cycle_done(one, SimpleNamespace(duration_s=0.2))
    assert _samples(TestClient(one).get("/metrics").text)["commonwatt_cycle_seconds_count"] == 1
    assert _samples(TestClient(two).get("/metrics").text)["commonwatt_cycle_seconds_count"] == 0


def test_metrics_with_the_ledger_only(ledger: Path) -> None:
    got = _samples(TestClient(create_app(LedgerReader(ledger))).get("/metrics").text)
    assert got["commonwatt_ledger_intervals"] == 10
    assert not any(k.startswith("commonwatt_devices") for k in got)


# ------------------------------------------------------------------ /docs offline

@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_local_assets(ledger: Path, page: str) -> None:
    api = TestClient(public_app(LedgerReader(ledger)))
    html = api.get(page)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html.text)
    urls += re.findall(r"""spec-url=["']([^"']+)""", html.text)
    assert urls, html.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
        assert api.get(url).status_code == 200, url
    assert "cdn" not in html.text.lower() and "https://" not in html.text
    assert '"validatorUrl": null' in html.text or page == "/redoc"


# ------------------------------------------------------------------ one error shape

BAD = [
    # (method, url, params, status, parameter named)
    ("GET", "/api/v1/members/h01/energy", {"from": "yesterday"}, 422, "from"),
    ("GET", "/api/v1/members/h01/energy", {"to": "2026-13-45"}, 422, "to"),
    ("GET", "/api/v1/members/h01/energy", {"from": "nan"}, 422, "from"),
    ("GET", "/api/v1/members/h01/energy", {"to": "1e308"}, 422, "to"),
    ("GET", "/api/v1/members/h01/energy", {"from": ""}, 422, "from"),
    ("GET", "/api/v1/members/h01/energy", {"from": "2026-02-30"}, 422, "from"),
    ("GET", "/api/v1/members/h01/energy", {"from": 2000, "to": 1000}, 422, "from"),
    ("GET", "/api/v1/members/h01/series", {"from": "soon"}, 422, "from"),
    ("GET", "/api/v1/members/h01/series", {"to": "later"}, 422, "to"),
    ("GET", "/api/v1/members/h01/series", {"from": "2026-01-01T00:00:00+25:00"}, 422, "from"),
    ("GET", "/api/v1/members/h01/series", {"from": 2000, "to": 1000}, 422, "from"),
    ("GET", "/api/v1/members/h01/series", {"step": "week"}, 422, "step"),
    ("GET", "/api/v1/members/h01/series", {"step": "interval", "from": 0, "to": 4e9}, 200,
     None),
    ("GET", "/api/v1/members/h01/statement", {"month": "2026-13"}, 422, "month"),
    ("GET", "/api/v1/members/h01/statement", {}, 422, "month"),
    ("GET", "/api/v1/coop/report", {"month": "last"}, 422, "month"),
    ("GET", "/api/v1/island/transitions", {"limit": "many"}, 422, "limit"),
    ("GET", "/api/v1/members/nobody/energy", {}, 404, "member_id"),
    ("GET", "/api/v1/members/nobody/series", {}, 404, "member_id"),
    ("GET", "/api/v1/members/nobody/statement", {"month": "2026-01"}, 404, "member_id"),
    ("POST", "/api/v1/island/command", {}, 422, "body"),
    ("POST", "/api/v1/members", {}, 405, None),
    ("GET", "/api/v1/nowhere", {}, 404, None),
]


@pytest.mark.parametrize(("method", "url", "params", "status", "name"), BAD,
                         ids=[f"{m} {u} {p}" for m, u, p, _, _ in BAD])
def test_bad_requests_have_one_shape(ledger: Path, method: str, url: str,
                                     params: dict[str, Any], status: int,
                                     name: str | None) -> None:
    reader = LedgerReader(ledger)
    # A coordinator's token: the island command needs one before its body is read.
    api = TestClient(public_app(reader), headers=bearer(reader, "coordinator"))
    answer = api.request(method, url, params=params)
    assert answer.status_code == status, answer.text
    if status == 200:
        return
    body = answer.json()
    assert list(body) == ["detail"], body
    detail = body["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail, body
        for error in detail:
            assert set(error) >= {"type", "loc", "msg"}
            assert error["loc"][0] in {"query", "path", "body"}
        assert any(e["loc"][-1] == name or e["loc"][0] == name for e in detail), body
        # the message names the parameter too, for whoever reads only the message
        assert any(f"'{name}'" in e["msg"] or name == "body" for e in detail), body
    elif name is not None:
        assert isinstance(detail, str) and name in detail, body


def test_an_unexpected_error_keeps_the_shape(ledger: Path, monkeypatch) -> None:
    reader = LedgerReader(ledger)
    app = create_app(reader)

    def broken(*_: Any, **__: Any) -> None:
        raise np.linalg.LinAlgError("boom")

    monkeypatch.setattr(reader, "totals_by_member", broken)
    answer = TestClient(app, raise_server_exceptions=False).get("/api/v1/coop/summary")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error (LinAlgError); see the controller's log"}


def test_live_streams_are_capped(ledger: Path, monkeypatch) -> None:
    monkeypatch.setattr("api.live_stream.MAX_STREAMS", 0)
    answer = TestClient(create_app(LedgerReader(ledger))).get("/api/v1/live/stream")
    assert answer.status_code == 503
    assert "poll /api/v1/live" in answer.json()["detail"]
