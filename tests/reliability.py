"""The fault matrix (issue 11 item 5): rows recorded by the tests that exercise them, and the
``docs/reliability.md`` table generated from their results by an explicit command::

    .venv/bin/python -m tests.reliability            # every test file that declares a row
    .venv/bin/python -m tests.reliability tests/test_mqtt_reader.py   # just these

A test takes the ``reliability`` fixture and names its row and the behaviour it expects,
then says what it observed::

    row = reliability("modbus-timeout", "the household goes unknown, the rest runs on")
    ...
    row.observed = f"unknown after {t:.1f} s; other households valid in all {n} cycles"

Whether the row passed is the test's own outcome. An ordinary pytest run records nothing
to the tracked files (issue 20: every run left the tree dirty); with ``--write-reliability``
(what this command passes) its rows are merged by row into ``docs/reliability.json`` (rows
not run keep their last result, with their date) and the table is rewritten from it.
Machine details (the checkout's path, the temporary directory, the host name) are
scrubbed from what a test observed, so the table is the same on any machine.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS_JSON = DOCS / "reliability.json"
TABLE_MD = DOCS / "reliability.md"

#: Every row of the matrix, in the table's order: key → the fault as the table names it.
MATRIX: dict[str, str] = {
    "modbus-timeout": "Modbus timeout",
    "modbus-exception": "Modbus exception",
    "modbus-disconnect": "Modbus disconnect",
    "garbage": "Garbage values",
    "sentinel": "Sentinel values",
    "counter-reset": "A counter reset",
    "mqtt-malformed": "Malformed MQTT payload",
    "mqtt-stale": "Stale MQTT topic",
    "mqtt-nested": "MQTT payload of 100,000 nested arrays",
    "mqtt-10mb": "10 MB MQTT payload",
    "mqtt-bad-utf8": "MQTT payload of invalid UTF-8",
    "mqtt-slow-parse": "MQTT payload slow to parse",
    "mqtt-flood": "MQTT device sending 1,000 messages a second",
    "mqtt-takeover": "MQTT session taken over (same client id)",
    "mqtt-reader-down": "MQTT reader thread ends",
    "broker-restart": "MQTT broker restart",
    "spoofed-value": "Spoofed out-of-range MQTT value",
    "timeseries-outage": "Time-series server outage",
    "config-reload-error": "Config reload with an error",
    "sigkill": "SIGKILL of the controller",
    "second-controller": "A second controller on the same ledger",
    "full-disk": "Full disk for the ledger",
    "locked-db": "Locked ledger database",
    "proxy-headers": "Island command through a proxy or a same-host tunnel",
    "login-flood": "A flood of wrong login tokens",
    "cross-site-post": "A cross-site POST riding the session cookie",
    "draw-steering": "Steering the coordinator draw by choosing when to run it",
    "second-controller-link": "A second controller through a symlink, a hard link or a bind mount",
    "state-file-modes": "State files readable by other local users",
    "member-other-plug": "A member commanding another member's plug",
}


@dataclass
class Row:
    """One row as a test fills it."""

    key: str
    expected: str
    observed: str = ""
    #: Set when the behaviour is known to change (another branch is on it): said in the table.
    expected_to_change: str = ""

    def __post_init__(self) -> None:
        if self.key not in MATRIX:
            raise KeyError(f"{self.key!r} is no row of the fault matrix ({sorted(MATRIX)})")


class Recorder:
    """The rows of one session, with their outcomes."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def add(self, row: Row, test: str, passed: bool, failure: str = "") -> None:
        """Keep ``row``'s result (the test's outcome decides ``passed``)."""
        observed = scrub(row.observed or f"(the test failed before it observed: {failure})")
        self.results[row.key] = {
            "row": MATRIX[row.key], "expected": row.expected, "observed": observed,
            "passed": passed, "expected_to_change": row.expected_to_change, "test": test,
            "run_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}

    def write(self, json_path: Path = RESULTS_JSON, md_path: Path = TABLE_MD) -> None:
        """Merge this session's rows into ``json_path`` and rewrite the table."""
        if not self.results:
            return
        try:
            merged = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            merged = {}
        merged = {k: v for k, v in merged.items() if k in MATRIX} | self.results
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n",
                             encoding="utf-8")
        md_path.write_text(render(merged), encoding="utf-8")


def scrub(text: str) -> str:
    """``text`` without this machine's details: checkout path, temporary paths, host name."""
    text = text.replace(f"{ROOT}/", "").replace(str(ROOT), ".")
    tmp = re.escape(tempfile.gettempdir().rstrip("/"))
    text = re.sub(tmp + r"/[^\s'\",;)]*", "<tmp>", text)
    host = socket.gethostname()
    if host:
        text = re.sub(rf"\b{re.escape(host)}\b", "<host>", text)
    return text


def row_files() -> list[str]:
    """The test files that declare a fault-matrix row."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "reliability(" in p.read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    """Run the rows' tests (``argv``: test files or node ids; none: every row's file) and
    rewrite ``docs/reliability.md``/``.json`` from their results; pytest's exit status."""
    import pytest  # only the command needs it, not the table's renderer

    targets = argv or row_files()
    return int(pytest.main(["-p", "no:cacheprovider", "-q", "--write-reliability",
                            *targets]))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of every matrix row (a row never run says so)."""
    lines = [
        "# Reliability: the fault matrix",
        "",
        "Generated by `.venv/bin/python -m tests.reliability` (runs every test that "
        "declares a row, see `tests/reliability.py`; give test files to run only theirs: "
        "the other rows keep their last result and date); do not edit by hand. Each row is "
        "one automated test on real protocols (pymodbus servers, a real mosquitto, a real "
        "time-series server, real subprocesses); *observed* is what that test measured.",
        "",
        "| Fault | Expected | Observed | Result | Test | Run |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in MATRIX.items():
        r = results.get(key)
        if r is None:
            lines.append(f"| {name} | | not run yet | – | | |")
            continue
        result = "pass" if r["passed"] else "**FAIL**"
        expected = r["expected"]
        if r.get("expected_to_change"):
            expected += f" **Expected to change:** {r['expected_to_change']}"
        lines.append(f"| {name} | {_cell(expected)} | {_cell(r['observed'])} | {result} | "
                     f"`{_cell(r['test'])}` | {r['run_at']} |")
    passed = sum(1 for k in MATRIX if results.get(k, {}).get("passed"))
    lines += ["", f"{passed} of {len(MATRIX)} rows pass."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
