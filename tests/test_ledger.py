"""The ledger survives a restart and a kill -9 without losing committed data."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from controller.ledger import Ledger, LedgerReader
from dispatch import LEDGER_FIELDS
from tests.coop_harness import start_harness


def booked(n: int, value: int) -> dict[str, np.ndarray]:
    return {f: np.full(n, value, dtype=np.int64) for f in LEDGER_FIELDS}


def test_restart_resumes_carries_pools_and_interval_chain(tmp_path: Path) -> None:
    ends: list[float] = []

    async def first_run() -> None:
        h = await start_harness(tmp_path)
        try:
            for _ in range(10):
                ends.append((await h.step()).end_ts)
            carries = {f: c.copy() for f, c in h.controller.book.carries.items()}
            pools = h.controller.pools_wh.copy()
        finally:
            await h.close()
        restarted = Ledger(tmp_path / "ledger.sqlite")
        state = restarted.load_state(h.controller.member_ids)
        restarted.close()
        assert state.last_end_ts == ends[-1]
        for f in LEDGER_FIELDS:
            np.testing.assert_allclose(state.carries[f], carries[f])
        np.testing.assert_allclose([state.pools_wh[m] for m in h.controller.member_ids], pools)

    asyncio.run(first_run())

    async def second_run() -> None:
        # a new controller on the same ledger continues the chain without a gap or overlap
        h = await start_harness(tmp_path)
        h.clock.advance(ends[-1] - h.clock.now())
        try:
            report = await h.step()
        finally:
            await h.close()
        assert report.start_ts == ends[-1]

    asyncio.run(second_run())
    reader = LedgerReader(tmp_path / "ledger.sqlite")
    assert reader.span()[2] == 11


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from controller.ledger import Ledger
    from dispatch import LEDGER_FIELDS
    ledger = Ledger(sys.argv[1])
    ledger.register_members([("a", "A"), ("b", "B")])
    i = 0
    while True:
        booked = {f: np.array([1, 2], dtype=np.int64) for f in LEDGER_FIELDS}
        carries = {f: np.zeros(2) for f in LEDGER_FIELDS}
        ledger.commit_interval(i, i + 1, ["a", "b"], booked, carries, {}, 0.0)
        print(i, flush=True)
        i += 1
""")


def test_kill_9_never_loses_a_committed_interval(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    acknowledged = -1
    deadline = time.monotonic() + 30
    while acknowledged < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 200
    db = sqlite3.connect(path)
    count = db.execute("SELECT COUNT(*) FROM intervals").fetchone()[0]
    # every interval the writer reported as committed is there, whole
    assert count >= acknowledged + 1
    rows = db.execute("SELECT COUNT(*) FROM member_energy").fetchone()[0]
    assert rows == 2 * count
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reserve_latch_survives_a_restart(tmp_path: Path) -> None:
    import numpy as np

    from controller.ledger import Ledger
    from dispatch import LEDGER_FIELDS

    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.register_members([("a", "A"), ("b", "B")])
    booked = {f: np.array([1, 2], dtype=np.int64) for f in LEDGER_FIELDS}
    carries = {f: np.zeros(2) for f in LEDGER_FIELDS}
    ledger.commit_interval(0, 1, ["a", "b"], booked, carries, {}, 0.0, held=["b"])
    ledger.close()
    state = Ledger(tmp_path / "l.sqlite").load_state(["a", "b"])
    assert state.held == frozenset({"b"})
