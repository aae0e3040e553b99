"""The time-series spool and writer: bounded FIFO on disk, and no point lost or doubled.

The writer's tests run against a real VictoriaMetrics on 127.0.0.1 (one test
stops and restarts it); only the refused-batch test uses a small stub server,
because VictoriaMetrics skips bad lines with a 204 instead of refusing them.
"""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from influxdb_client import Point

from controller.timeseries import TimeSeriesWriter, interval_points, live_points
from controller.timeseries.spool import SPOOL_FILE, Spool
from dispatch.rounding import LEDGER_FIELDS, LIBERATED_FIELDS
from tests.conftest import RestartableVictoriaMetrics, free_port

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ["h01", "h02", "h03"]
BASE = 1_700_000_000  # 2023-11-14: well inside the test server's retention
Series = dict[tuple[str, str], list[tuple[int, float]]]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def export(port: int, match: str = '{__name__=~"commonwatt_.*"}') -> Series:
    """Every stored sample as (metric, member) → [(ms, value)], blocks merged."""
    base = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(f"{base}/internal/force_flush", timeout=10).read()
    url = f"{base}/api/v1/export?match[]={urllib.parse.quote(match)}&start=0"
    series: Series = defaultdict(list)
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().splitlines():
            row = json.loads(line)
            key = (row["metric"]["__name__"], row["metric"].get("member", ""))
            series[key] += zip(row["timestamps"], row["values"], strict=True)
    return {key: sorted(samples) for key, samples in series.items()}


def cycle(k: int) -> tuple[list[str], dict[tuple[str, str], float]]:
    """Cycle ``k``'s lines, and the value each series should hold at its time."""
    ts = BASE + 10 * k
    i = np.arange(len(MEMBERS))
    arrays = {"pv_w": 100.0 * k + i + 0.25, "soc_pct": np.where(i == 2, np.nan, 50.0 + i)}
    valid = i != 1
    booked = {f: (10 * k + i + j).astype(np.int64) for j, f in enumerate(LIBERATED_FIELDS)}
    booked["to_grid"] = np.full(len(MEMBERS), k, dtype=np.int64)
    lines = live_points(ts, MEMBERS, arrays, valid) + interval_points(ts - 10, ts, MEMBERS, booked)
    expect = {}
    for m, member in enumerate(MEMBERS):
        expect["commonwatt_live_pv_w", member] = 100.0 * k + m + 0.25
        if m != 2:  # NaN is left out
            expect["commonwatt_live_soc_pct", member] = 50.0 + m
        expect["commonwatt_live_valid", member] = float(m != 1)
        expect["commonwatt_member_liberated_wh", member] = sum(
            10 * k + m + j for j in range(len(LIBERATED_FIELDS)))
    expect["commonwatt_member_to_grid_wh", "_coop"] = k * len(MEMBERS)
    expect["commonwatt_member_liberated_wh", "_coop"] = sum(
        expect["commonwatt_member_liberated_wh", member] for member in MEMBERS)
    return lines, expect


def field_count(lines: list[str]) -> int:
    """How many samples ``lines`` make in VictoriaMetrics (one per field)."""
    return sum(len(line.split(" ")[1].split(",")) for line in lines)


# -- the spool ---------------------------------------------------------------


def test_spool_is_fifo_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10_000)
    for k in range(5):
        spool.append([f"m x={k}i {k}", f"m y={k}i {k}"])
    assert [b.body for b in spool.peek(0)] == [b"m x=0i 0\nm y=0i 0"]  # at least one
    batches = spool.peek()
    assert [b.points for b in batches] == [2] * 5
    assert [b.body.split(b"=")[1][0:1] for b in batches] == [b"0", b"1", b"2", b"3", b"4"]
    assert spool.remove([batches[0].id, batches[1].id]) == 4
    spool.close()
    reopened = Spool(tmp_path, 10_000)
    assert (len(reopened), reopened.pending_points) == (3, 6)
    assert [b.id for b in reopened.peek()] == [b.id for b in batches[2:]]
    with pytest.raises(RuntimeError, match="open elsewhere"):
        Spool(tmp_path, 10_000)  # one sender per spool, or every point goes twice
    reopened.append(["m x=5i 5"])
    assert reopened.peek()[-1].body == b"m x=5i 5"
    assert reopened.pending_bytes == sum(len(b.body) for b in reopened.peek())


def test_spool_drops_the_oldest_past_its_bound_and_logs_once_per_drop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    spool = Spool(tmp_path, 100)
    for k in range(5):
        spool.append([f"m x={k:04d}i", f"m y={k:04d}i"])  # 19 bytes, 2 points each
    assert (spool.pending_bytes, spool.dropped_points) == (95, 0)
    with caplog.at_level(logging.WARNING, logger="controller.timeseries.spool"):
        dropped = spool.append(["m big=" + "9" * 48 + "i"])  # 55 bytes: three old ones go
    assert dropped == spool.dropped_points == 6
    assert len(caplog.records) == 1 and "3 batches, 6 points" in caplog.messages[0]
    assert [b.body[:8] for b in spool.peek()] == [b"m x=0003", b"m x=0004", b"m big=99"]
    assert spool.pending_bytes <= 100 and spool.pending_points == 5
    assert spool.append(["m huge=" + "1" * 200 + "i"]) == 1  # larger than the spool: itself
    assert spool.pending_points == 5 and spool.dropped_points == 7
    spool.close()
    assert Spool(tmp_path, 40).pending_bytes <= 40  # reopened with a smaller bound


def test_an_unreadable_spool_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / SPOOL_FILE).write_bytes(b"not a database" * 100)
    spool = Spool(tmp_path, 1000)
    spool.append(["m x=1i 1"])
    assert spool.pending_points == 1
    assert [p.name.split(".unreadable-")[0] for p in tmp_path.glob("*.unreadable-*")] == [
        SPOOL_FILE]


def test_spool_in_memory_works_the_same() -> None:
    spool = Spool(None, 1000)
    spool.append(["a x=1i 1"])
    spool.append(["", "b x=2i 2"])  # empty lines are not points
    assert spool.pending_points == 2 and spool.path is None
    spool.remove([spool.peek(0)[0].id])
    assert [b.body for b in spool.peek()] == [b"b x=2i 2"]


def test_a_killed_process_leaves_a_whole_spool(tmp_path: Path) -> None:
    """SIGKILL in the middle of appends and deletes: the file opens intact, in order."""
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from controller.timeseries.spool import Spool
        spool = Spool(Path(sys.argv[1]), 2**20)
        k = 0
        while True:
            spool.append([f"m seq={k}i {k}", f"m other={k}i {k}"])
            if k % 3 == 0:
                spool.remove([spool.peek(0)[0].id])
            if k == 300:
                print("busy", flush=True)
            k += 1
    """)
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "busy\n"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    db = sqlite3.connect(tmp_path / SPOOL_FILE)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    spool = Spool(tmp_path, 2**20)
    seqs = [int(b.body.split(b"=")[1].split(b"i")[0]) for b in spool.peek(2**30)]
    assert len(seqs) > 100 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert spool.pending_points == 2 * len(seqs)


# -- the point builders ------------------------------------------------------


def test_live_points_leave_out_what_is_not_finite() -> None:
    lines = live_points(BASE + 0.5, ["a", "b"], {
        "pv_w": np.array([1500.5, np.nan]), "soc_pct": np.array([np.inf, 42.0]),
    }, np.array([True, False]))
    assert lines == [
        f"commonwatt_live,member=a pv_w=1500.5,valid=true {BASE}500000000",
        f"commonwatt_live,member=b soc_pct=42.0,valid=false {BASE}500000000",
    ]


def test_interval_points_book_integer_wh_and_the_coop_sums() -> None:
    booked = {f: np.array([1, 2], dtype=np.int64) for f in LEDGER_FIELDS}
    lines = interval_points(BASE, BASE + 60, ["a", "b"], booked, provisional=True)
    assert len(lines) == 3 and lines[2].startswith("commonwatt_member,member=_coop ")
    fields = dict(f.split("=") for f in lines[1].split(" ")[1].split(","))
    assert fields["own_pv_used_wh"] == "2i" and fields["losses_wh"] == "2i"
    assert fields["liberated_wh"] == f"{2 * len(LIBERATED_FIELDS)}i"
    assert fields["interval_s"] == "60.0" and fields["provisional"] == "true"
    coop = dict(f.split("=") for f in lines[2].split(" ")[1].split(","))
    assert coop["from_grid_wh"] == "3i" and coop["liberated_wh"] == f"{3 * len(LIBERATED_FIELDS)}i"
    assert lines[2].endswith(f" {BASE + 60}000000000")
    with pytest.raises(ValueError, match="reserved"):
        interval_points(BASE, BASE + 60, ["_coop", "b"], booked)
    with pytest.raises(TypeError, match="integer Wh"):
        interval_points(BASE, BASE + 60, ["a", "b"], booked | {"shed": np.array([0.5, 1.0])})


# -- the writer, on a real VictoriaMetrics -------------------------------------


def test_an_outage_is_backfilled_exactly_once_and_in_order(
    tmp_path: Path, victoria_metrics_restartable: RestartableVictoriaMetrics,
    caplog: pytest.LogCaptureFixture, reliability,
) -> None:
    """The server goes away in the middle of a stream and comes back: every point, once.

    The server is terminated right after one of its acks, between two requests.
    Terminating it *during* a request is the lost-ack case that no client can
    settle (VictoriaMetrics may store part of that request and still close the
    connection without answering); see the writer's module docstring.
    """
    row = reliability("timeseries-outage", "The time-series server (VictoriaMetrics, InfluxDB"
                      " v2 write API) stops mid-stream: the cycle never blocks on it, points"
                      " spool, the outage is logged once each way, and on its return every"
                      " point is backfilled exactly once and in order")
    vm = victoria_metrics_restartable
    caplog.set_level(logging.INFO, logger="controller.timeseries")
    writer = TimeSeriesWriter(vm.url, "commonwatt", spool_dir=tmp_path / "spool")
    writer.request_bytes = 1  # one batch a request until the outage, so it falls mid-stream
    acked: list[str] = []  # what the server acknowledged, in order (transport untouched)
    real_write = writer._api.write
    stopped = threading.Event()

    def spy(bucket: str, org: str, body: str, **kwargs: object) -> object:
        result = real_write(bucket, org, body, **kwargs)
        acked.append(body)
        if len(acked) == 13:  # A1's ten, then three of A2's: the server goes away
            vm.stop()
            writer.request_bytes = 2**20  # the backfill goes in large requests
            stopped.set()
        return result

    writer._api.write = spy
    submitted: list[str] = []
    expect: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)

    def submit(k: int) -> float:
        lines, values = cycle(k)
        start = time.perf_counter()
        writer.submit(lines)
        took = time.perf_counter() - start
        submitted.extend(lines)
        for key, value in values.items():
            expect[key].append(((BASE + 10 * k) * 1000, value))
        return took

    try:
        for k in range(10):  # A1: acknowledged before the outage
            submit(k)
        assert writer.flush(10)
        for k in range(10, 20):  # A2: the server goes away while these are being sent
            submit(k)
        assert stopped.wait(20)
        assert 0 < writer.pending_points() < 10 * len(cycle(0)[0])  # part of A2 is through
        slowest = max(submit(k) for k in range(20, 40))  # B: while it is down
        assert slowest < 0.05, f"submit blocked for {slowest * 1000:.0f} ms"
        wait_until(lambda: writer.failures >= 2)  # at least one back-off retry
        assert writer.status()["server_down"]
        vm.start()
        assert writer.flush(15)
    finally:
        writer.close()
    assert "\n".join(acked) == "\n".join(submitted)  # sent once each, in submission order
    status = writer.status()
    assert (status["pending"], status["dropped"], status["rejected"]) == (0, 0, 0)
    assert writer.sent_points == len(submitted) and status["last_success_ts"] is not None
    assert [r.getMessage().split(" ")[-1] for r in caplog.records
            if "not taking writes" in r.getMessage() or "is back" in r.getMessage()] == [
        "does", "backfill"]  # the outage logged once each way, not per retry
    stored = export(vm.port)
    assert sum(len(s) for s in stored.values()) == field_count(submitted)  # nothing doubled
    for key, samples in expect.items():
        assert stored[key] == samples, key  # every point, its value, in time order
    row.observed = (f"server stopped after 13 acknowledged requests; submit() took at most "
                    f"{slowest * 1000:.1f} ms while it was down; {writer.failures} failed tries;"
                    f" {len(submitted)} lines sent once each in order, {status['dropped']} "
                    f"dropped, {sum(len(s) for s in stored.values())} samples stored = "
                    "submitted")


def test_points_left_by_a_writer_closed_during_an_outage_go_out_next_start(
    tmp_path: Path, victoria_metrics: int,
) -> None:
    spool_dir = tmp_path / "spool"
    down = TimeSeriesWriter(f"http://127.0.0.1:{free_port()}", "commonwatt", spool_dir=spool_dir)
    lines = [f"carry,member=h01 seq={k}i {(BASE + k) * 10**9}" for k in range(50)]
    for k in range(0, 50, 10):
        down.submit(lines[k:k + 10])
    wait_until(lambda: down.failures >= 1)
    start = time.monotonic()
    down.close()
    assert time.monotonic() - start < 1.0  # a down server is not waited for
    assert down.pending_points() == 50
    up = TimeSeriesWriter(f"http://127.0.0.1:{victoria_metrics}", "commonwatt",
                          spool_dir=spool_dir)
    try:
        assert up.pending_points() == 50 and up.flush(10)
    finally:
        up.close()
    stored = export(victoria_metrics, '{__name__="carry_seq"}')
    assert stored["carry_seq", "h01"] == [((BASE + k) * 1000, k) for k in range(50)]


def test_points_spooled_by_a_killed_process_go_out_next_start(
    tmp_path: Path, victoria_metrics: int,
) -> None:
    script = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from controller.timeseries import TimeSeriesWriter
        writer = TimeSeriesWriter(sys.argv[1], "commonwatt", spool_dir=Path(sys.argv[2]))
        for k in range(40):
            writer.submit([f"killed,member=h01 seq={k}i {(int(sys.argv[3]) + k) * 10**9}"])
        print("spooled", flush=True)
        time.sleep(60)
    """)
    dead = f"http://127.0.0.1:{free_port()}"
    child = subprocess.Popen([sys.executable, "-c", script, dead, str(tmp_path), str(BASE)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "spooled\n"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    writer = TimeSeriesWriter(f"http://127.0.0.1:{victoria_metrics}", "commonwatt",
                              spool_dir=tmp_path)
    try:
        assert writer.flush(10)
    finally:
        writer.close()
    stored = export(victoria_metrics, '{__name__="killed_seq"}')
    assert stored["killed_seq", "h01"] == [((BASE + k) * 1000, k) for k in range(40)]


def test_the_legacy_write_of_a_cycle_report(victoria_metrics: int) -> None:
    n = len(MEMBERS)
    report = SimpleNamespace(
        image=SimpleNamespace(member_ids=MEMBERS, pv_w=np.full(n, 900.0),
                              meter_w=np.array([-100.0, np.nan, 50.0]), battery_w=np.zeros(n),
                              soc_pct=np.full(n, 60.0), valid=np.array([True, False, True])),
        start_ts=BASE - 60.0, end_ts=float(BASE), setpoints_w=np.zeros(n),
        booked={f: np.arange(n, dtype=np.int64) for f in LEDGER_FIELDS},
    )
    writer = TimeSeriesWriter(f"http://127.0.0.1:{victoria_metrics}", "commonwatt")
    try:
        writer.write(report)
        writer.write(SimpleNamespace(**{**vars(report), "booked": None}))  # not booked
        interval = SimpleNamespace(start_ts=BASE, end_ts=BASE + 900, member_ids=MEMBERS,
                                   booked=report.booked)
        current = {k: v for k, v in vars(report).items() if k != "booked"}
        writer.write(SimpleNamespace(**current, committed=[interval]))  # today's CycleReport
        writer.write(object())  # a broken report is logged, not raised
        assert writer.flush(10)
    finally:
        writer.close()
    stored = export(victoria_metrics)
    assert stored["commonwatt_member_liberated_wh", "h02"] == [
        (BASE * 1000, 4.0), ((BASE + 900) * 1000, 4.0)]
    assert stored["commonwatt_live_setpoint_w", "h01"] == [(BASE * 1000, 0.0)] * 3
    assert ("commonwatt_live_meter_w", "h02") not in stored


def test_a_dead_server_never_raises(tmp_path: Path) -> None:
    writer = TimeSeriesWriter(f"http://127.0.0.1:{free_port()}", "commonwatt")
    writer.submit([f"dead,member=h01 x=1i {BASE * 10**9}"])
    writer.submit([Point("dead").tag("member", "h02").field("x", 2).time(BASE * 10**9)])
    wait_until(lambda: writer.failures >= 1)
    status = writer.status()
    assert status["server_down"] and "Connection" in status["last_error"]
    assert status["pending"] == 2 and status["last_success_ts"] is None
    assert not writer.flush(0.2)
    writer.close()
    writer.close()  # twice is harmless
    writer.submit(["dead x=3i"])  # after close: counted as dropped, not raised
    assert writer.dropped_points == 1


# -- a server that refuses a batch ----------------------------------------------


@pytest.fixture()
def refusing_server() -> Iterator[tuple[str, list[bytes]]]:
    """An InfluxDB-like stub: 400 for a body holding ``bad``, else 204; yields its URL and log."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            refuse = b"bad" in body
            if not refuse:
                received.append(body)
            self.send_response(400 if refuse else 204)
            self.end_headers()
            if refuse:
                self.wfile.write(b'{"code":"invalid","message":"unable to parse"}')

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_batch_is_dropped_alone(
    tmp_path: Path, refusing_server: tuple[str, list[bytes]],
) -> None:
    url, received = refusing_server
    spool = Spool(tmp_path, 2**20)  # three batches waiting, sent in one request at first
    for batch in (["ok x=1i 1", "ok x=2i 2"], ["bad line"], ["ok x=3i 3"]):
        spool.append(batch)
    spool.close()
    writer = TimeSeriesWriter(url, "commonwatt", spool_dir=tmp_path)
    try:
        assert writer.flush(10)
    finally:
        writer.close()
    assert received == [b"ok x=1i 1\nok x=2i 2", b"ok x=3i 3"]
    assert (writer.sent_points, writer.rejected_points, writer.failures) == (3, 1, 2)
    assert writer.status()["last_success_ts"] is not None
