"""Time-series health: a 401 or 404 from the write API is a configuration error named
once with the URL and what to set, not an outage; ``/healthz`` shows the sender's state
and ``/metrics`` counts failures and the spool; the demo takes ``--timeseries URL``.
Against a real VictoriaMetrics and a tiny local HTTP server answering 404 or 401."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import controller.timeseries.writer as writer_module
from controller.timeseries import TimeSeriesWriter
from tests.demo_process import Demo, start_demo

ROOT = Path(__file__).resolve().parents[1]
OLD_INFLUX_404 = (404, b"404 page not found\n")  # InfluxDB 1.7: no /api/v2/write
NO_BUCKET_404 = (404, b'{"code":"not found","message":"bucket \\"nope\\" not found"}')
UNAUTHORIZED = (401, b'{"code":"unauthorized","message":"unauthorized access"}')


class Stub:
    """A local HTTP server answering every write with ``answer`` (status, body); 204 with
    ``answer = None``, keeping the bodies it took."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] | None = OLD_INFLUX_404
        self.taken: list[bytes] = []
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests += 1
                if stub.answer is None:
                    stub.taken.append(body)
                    self.send_response(204)
                    self.end_headers()
                    return
                status, text = stub.answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub() -> Iterator[Stub]:
    server = Stub()
    try:
        yield server
    finally:
        server.close()


def wait_until(condition, timeout_s: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize(("answer", "expected"), [
    (OLD_INFLUX_404, ["answered 404", "not an InfluxDB v2 write API", "1.8",
                      "[timeseries] url"]),
    (NO_BUCKET_404, ["answered 404", "set [timeseries] bucket", "'commonwatt'"]),
    (UNAUTHORIZED, ["answered 401", "set [timeseries] token", "'commonwatt'"]),
])
def test_a_404_or_401_is_a_config_error_named_once_not_an_outage(
        tmp_path: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, answer: tuple[int, bytes],
        expected: list[str]) -> None:
    monkeypatch.setattr(writer_module, "CONFIG_RETRY_S", 0.05)  # many retries, quickly
    stub.answer = answer
    writer = TimeSeriesWriter(stub.url, "commonwatt", spool_dir=tmp_path / "spool")
    try:
        with caplog.at_level(logging.WARNING, logger="controller.timeseries.writer"):
            writer.submit(["cfg,member=h01 x=1i 1", "cfg,member=h02 x=2i 2"])
            wait_until(lambda: stub.requests >= 5)
        status = writer.status()
        assert status["state"] == "config-error" and writer.state == "config-error"
        problem = status["config_error"]
        assert problem.startswith(f"time-series server {stub.url}: POST {stub.url}/api/v2/write")
        for text in expected:
            assert text in problem, problem
        # named once in the log, however many retries; never "not taking writes" (outage)
        records = [r.getMessage() for r in caplog.records]
        assert records == [problem], records
        # nothing lost: the points wait in the spool until the config is fixed
        assert status["pending"] == 2 and status["dropped"] == 0 and status["rejected"] == 0
        assert writer.failures >= 5
        stub.answer = None  # the token made, the bucket created, the server upgraded
        assert writer.flush(10)
        assert writer.state == "ok" and writer.status()["config_error"] is None
        assert stub.taken == [b"cfg,member=h01 x=1i 1\ncfg,member=h02 x=2i 2"]
    finally:
        writer.close(timeout_s=1)


def _start_demo(tmp_path: Path, url: str) -> Demo:
    demo = start_demo(tmp_path / "demo", "--timeseries", url)
    assert f"time series:       {url}" in demo.banner
    return demo


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _stop(demo: Demo) -> str:
    out = demo.stop()
    assert demo.proc.returncode == 0, out
    return out


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " ") or
                x.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_the_demo_writes_to_victoria_metrics_and_healthz_says_ok(
        tmp_path: Path, victoria_metrics: int) -> None:
    url = f"http://127.0.0.1:{victoria_metrics}"
    demo = _start_demo(tmp_path, url)
    base = demo.base
    try:
        wait_until(lambda: json.loads(_get(f"{base}/healthz")[1])["timeseries"]
                   ["last_success_ts"] is not None, 30)
        health = json.loads(_get(f"{base}/healthz")[1])
        assert health["timeseries"]["state"] == "ok" and health["timeseries"]["url"] == url
        metrics = _get(f"{base}/metrics")[1].decode()
        assert _metric(metrics, "commonwatt_timeseries_sent_points_total") > 0
        assert 'commonwatt_timeseries_state{state="ok"} 1.0' in metrics
        assert "commonwatt_timeseries_buffer_points" in metrics
    finally:
        _stop(demo)
    # what VictoriaMetrics itself holds: the demo's live points, per member
    query = urllib.parse.urlencode({"match[]": '{__name__=~"commonwatt_live_.*"}'})
    with urllib.request.urlopen(f"{url}/api/v1/series?{query}", timeout=10) as response:
        series = json.loads(response.read())["data"]
    assert {s.get("member") for s in series} >= {"h01", "h10"}


def test_the_demo_against_an_old_influxdb_names_the_config_error(
        tmp_path: Path, stub: Stub) -> None:
    demo = _start_demo(tmp_path, stub.url)
    base = demo.base
    try:
        wait_until(lambda: json.loads(_get(f"{base}/healthz")[1])["timeseries"]["state"]
                   == "config-error", 30)
        status, body = _get(f"{base}/healthz")
        health = json.loads(body)
        # the controller is healthy: only the charts are missing
        assert status == 200 and health["status"] in ("ok", "degraded"), health
        assert "not an InfluxDB v2 write API" in health["timeseries"]["config_error"]
        metrics = _get(f"{base}/metrics")[1].decode()
        assert _metric(metrics, "commonwatt_timeseries_failures_total") >= 1
        assert 'commonwatt_timeseries_state{state="config-error"} 1.0' in metrics
        assert _metric(metrics, "commonwatt_timeseries_buffer_points") > 0
    finally:
        out = _stop(demo)
    # named once on the console, with the URL
    assert out.count("not an InfluxDB v2 write API") == 1, out
    assert stub.url in out
