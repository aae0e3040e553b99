"""The ledger's writer thread: commits in order, never on the event loop.

A slow, locked, full or read-only database must never stall the control
cycle or the API. The cycle hands committed intervals and the per-cycle
save to this thread and goes on. When a write fails, the intervals wait in
memory, in order, and are retried; the failure is logged once, then once a
minute, and :meth:`LedgerWriter.status` says ``failing`` with the reason for
``/healthz``. Nothing already committed is touched.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from controller.ledger import store
from controller.ledger.accumulator import CommittedInterval

log = logging.getLogger(__name__)
Parts = dict[str, tuple[str, bytes]]
#: A write run on the writer's thread with its connection and member numbers
#: (the federation's shares, booked once the interval they belong to is written).
Task = Callable[[sqlite3.Connection, dict[str, int]], object]
RETRY_S = (0.5, 1.0, 2.0, 5.0)
LOG_EVERY_S = 60.0


class LedgerWriter:
    """Owns the ledger's write connection and single-writer lock.

    Opening takes the lock and creates or upgrades the file at once, in the
    caller's thread, so that a second controller fails at start-up with the
    holder named.
    """

    def __init__(self, path: Path | str, settlement_s: int, members: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self._conn, self._lock = store.open_writer(self.path, settlement_s)
        self.numbers = store.register_members(self._conn, members)
        self._commits: deque[tuple[CommittedInterval, Parts]] = deque()
        self._save: Parts | None = None
        self._events: deque[tuple] = deque()
        self._tasks: deque[Task] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._busy = False
        self.failing: str | None = None
        self.failing_since: float | None = None
        self.committed = 0
        self._last_log = 0.0
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def saved_parts(self) -> tuple[Parts, int | None]:
        """What the last run saved (call before the first commit) and the last committed end."""
        return store.load_parts(self._conn), store.last_committed_end(self._conn)

    def commit(self, interval: CommittedInterval, parts: Parts) -> None:
        """Queue an interval (and the state right after it) to be committed, in order."""
        with self._cv:
            self._commits.append((interval, parts))
            self._cv.notify()

    def record(self, row: tuple) -> None:
        """Queue one grid transition row for the ``grid_transitions`` table."""
        with self._cv:
            self._events.append(row)
            self._cv.notify()

    def submit(self, task: Task) -> None:
        """Queue a write to run after every commit queued before it, retried like commits."""
        with self._cv:
            self._tasks.append(task)
            self._cv.notify()

    def save(self, parts: Parts) -> None:
        """Queue the per-cycle save; a newer one replaces one not yet written."""
        with self._cv:
            self._save = parts
            self._cv.notify()

    def pending(self) -> list[CommittedInterval]:
        """Intervals handed over but not yet on disk, oldest first."""
        with self._cv:
            return [c for c, _ in self._commits]

    def status(self) -> dict[str, object]:
        """``ok`` or ``failing`` with the reason, and how many intervals wait in memory."""
        with self._cv:
            waiting = len(self._commits)
        return {"state": "failing" if self.failing else "ok", "reason": self.failing,
                "failing_since": self.failing_since, "intervals_waiting": waiting,
                "committed_this_run": self.committed}

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued is written; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while (self._commits or self._events or self._tasks or self._save is not None
                   or self._busy):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (waiting up to ``timeout_s``), then release the ledger."""
        if not self.flush(timeout_s):
            log.error("ledger %s: closing with %d intervals not written: %s", self.path,
                      len(self._commits), self.failing)
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout_s)
        self._conn.close()
        self._lock.release()

    def _next(self) -> tuple[str, object] | None:
        with self._cv:
            while not (self._commits or self._events or self._tasks
                       or self._save is not None or self._stopping):
                self._cv.wait()
            if self._stopping:
                return None
            self._busy = True
            # A save taken after a commit must not land before it: commits go first.
            if self._commits:
                return "commit", self._commits[0]
            if self._events:
                return "event", self._events[0]
            if self._tasks:
                return "task", self._tasks[0]
            return "save", self._save

    def _run(self) -> None:
        attempt = 0
        while (job := self._next()) is not None:
            kind, payload = job
            try:
                if kind == "commit":
                    interval, parts = payload  # type: ignore[misc]
                    store.write_commit(self._conn, interval, self.numbers, parts)
                elif kind == "event":
                    store.record_transition(self._conn, payload)  # type: ignore[arg-type]
                elif kind == "task":
                    payload(self._conn, self.numbers)  # type: ignore[operator]
                else:
                    store.save_open(self._conn, payload)  # type: ignore[arg-type]
            except (sqlite3.Error, OSError) as exc:
                self._failed(exc)
                with self._cv:
                    self._busy = False
                    self._cv.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            with self._cv:
                if kind == "commit":
                    self._commits.popleft()
                    self.committed += 1
                elif kind == "event":
                    self._events.popleft()
                elif kind == "task":
                    self._tasks.popleft()
                elif self._save is payload:
                    self._save = None
                self._busy = False
                self._cv.notify_all()
            if self.failing is not None:
                log.warning("ledger %s: writing again after %.0f s (%s)", self.path,
                            time.time() - (self.failing_since or time.time()), self.failing)
                self.failing = self.failing_since = None

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        first = self.failing is None
        if first:
            self.failing_since = time.time()
        self.failing = reason
        if first or now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.error("ledger %s: cannot write (%s); %d intervals kept in memory and retried; "
                      "committed intervals are untouched", self.path, reason, len(self._commits))
