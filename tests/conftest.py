"""Shared fixtures: a real mosquitto broker on a free loopback port, the fault matrix's
recorder (``reliability``, see tests/reliability.py), and helpers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser import browser  # noqa: F401 - a fixture for every page test
from tests.reliability import Recorder, Row

_MATRIX = Recorder()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture()
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A real mosquitto broker on a free 127.0.0.1 port; yields the port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run the README's test command, which installs it")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def victoria_metrics(tmp_path: Path) -> Iterator[int]:
    """A real VictoriaMetrics (InfluxDB v2 write API) on a free 127.0.0.1 port."""
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        pytest.fail("victoria-metrics is not installed: run the README's test command")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp_path / 'vm'}",
         "-retentionPeriod=100y", "-search.latencyOffset=0s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, 30)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class RestartableVictoriaMetrics:
    """A real VictoriaMetrics that a test can stop and start again on the same port and data."""

    def __init__(self, data_dir: Path) -> None:
        self.binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        if not Path(self.binary).exists():
            pytest.fail("victoria-metrics is not installed: run the README's test command")
        self.port = free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The base URL, for the InfluxDB v2 write API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (again) and wait until it listens."""
        assert self.proc is None, "already running"
        # The log goes to a file, not a pipe nobody reads (a full pipe would
        # stall the server), and shows why a start failed.
        with open(self.data_dir.parent / "vm-restartable.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}",
                 f"-storageDataPath={self.data_dir}", "-retentionPeriod=100y",
                 "-search.latencyOffset=0s"],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        """Terminate (SIGTERM: VictoriaMetrics flushes what it acknowledged) and wait."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture()
def victoria_metrics_restartable(tmp_path: Path) -> Iterator[RestartableVictoriaMetrics]:
    """A running :class:`RestartableVictoriaMetrics`; stopped at the end if still running."""
    vm = RestartableVictoriaMetrics(tmp_path / "vm-restartable")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item: the ``reliability`` fixture reads the call's."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture()
def reliability(request: pytest.FixtureRequest) -> Iterator[Callable[..., Row]]:
    """Declare this test's fault-matrix row: ``row = reliability(key, expected)``, then set
    ``row.observed``; the test's outcome is the row's result."""
    rows: list[Row] = []

    def declare(key: str, expected: str, expected_to_change: str = "") -> Row:
        rows.append(Row(key, expected, expected_to_change=expected_to_change))
        return rows[-1]

    yield declare
    report = getattr(request.node, "rep_call", None)
    passed = report is not None and report.passed
    failure = "" if report is None or passed else str(report.longrepr).splitlines()[-1][:300]
    for row in rows:
        _MATRIX.add(row, request.node.nodeid, passed, failure)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--write-reliability``: what ``python -m tests.reliability`` passes."""
    parser.addoption("--write-reliability", action="store_true", default=False,
                     help="merge this run's fault-matrix rows into docs/reliability.json "
                          "and rewrite docs/reliability.md")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Rewrite docs/reliability.md from the rows this run recorded, only when asked
    (``--write-reliability``): an ordinary test run leaves the tracked files alone."""
    if session.config.getoption("--write-reliability"):
        _MATRIX.write()
