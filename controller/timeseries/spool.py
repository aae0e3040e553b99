"""A bounded FIFO spool of line-protocol batches, on disk or in memory.

The spool is one SQLite file (``timeseries-spool.sqlite3`` in the spool
directory). SQLite is used because its commits are atomic: a process killed in
the middle of an append or a delete leaves either the old or the new state,
never a torn batch, so the file needs no repair on the next start.

Durability: the file runs in WAL mode with ``synchronous=NORMAL``. A commit is
in the operating system's page cache as soon as it returns, so a *process*
kill loses nothing; SQLite fsyncs at each WAL checkpoint, so a *power* loss
can lose the last few seconds of commits but never corrupts the file. That is
the sensible trade here: an fsync per cycle would cost milliseconds on every
submit for data the ledger already holds as the record of truth.

Bound: the stored line protocol (the payload) never exceeds ``max_bytes``.
When an append would go past it, the oldest batches are dropped first and
their points are counted; each such drop event is logged once. On disk the
file is the payload plus SQLite's page overhead (about 7 %), plus a WAL of
about 1 MiB; freed pages are reused, so the file does not grow past that.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from controller.files import private_file

log = logging.getLogger(__name__)

#: The spool's file name inside its directory.
SPOOL_FILE = "timeseries-spool.sqlite3"
#: Held (flock) while a spool is open: two senders on one spool would both
#: send its oldest batches, and every point would arrive twice.
LOCK_FILE = "timeseries-spool.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    -- AUTOINCREMENT: an id is never reused, so an ack for a batch that was
    -- dropped for space can never delete a newer batch that took its id.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    points INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""


@dataclass(frozen=True)
class Batch:
    """One spooled batch: its id, how many points it holds, and its line protocol."""

    id: int
    points: int
    body: bytes


class Spool:
    """A bounded, thread-safe FIFO of line-protocol batches.

    Args:
        directory: where the spool file lives (created if missing); ``None``
            keeps the spool in memory only, lost when the process ends.
        max_bytes: the most line protocol held; past it the oldest batches go.
    """

    def __init__(self, directory: Path | None, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.path: Path | None = None
        self._lock_fd: int | None = None
        if directory is not None:
            self.path = private_file(directory / SPOOL_FILE)  # owner-only (controller.files)
            self._lock_fd = _lock(directory / LOCK_FILE)
        #: Points dropped to respect ``max_bytes`` since this spool was opened.
        self.dropped_points = 0
        # One connection shared by the submitting and the sending thread; the
        # lock is held only for local SQLite work, never across the network.
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            try:
                self._db = _connect(self.path)
            except sqlite3.DatabaseError:
                if self.path is None:
                    raise
                # Unreadable (a disk fault, a stray file): set it aside rather
                # than keep the controller from starting over a cache.
                self._db = _connect(_set_aside(self.path))
        except BaseException:
            self.close()  # release the directory's lock
            raise
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(body)), 0) "
            "FROM batches"
        ).fetchone()
        self._batches, self._points, self._bytes = int(row[0]), int(row[1]), int(row[2])
        if self._bytes > max_bytes:  # reopened with a smaller bound
            self._settle_drop(self._drop_oldest(0))  # autocommit: one DELETE

    def __len__(self) -> int:
        """The number of batches held."""
        return self._batches

    @property
    def pending_points(self) -> int:
        """Points held, not yet acknowledged by the server."""
        return self._points

    @property
    def pending_bytes(self) -> int:
        """Bytes of line protocol held (what ``max_bytes`` bounds)."""
        return self._bytes

    def append(self, lines: list[str]) -> int:
        """Store one batch at the tail; returns the points dropped to make room.

        Empty lines are ignored and an empty batch is not stored. A batch that
        alone exceeds ``max_bytes`` is itself dropped (and counted).
        """
        lines = [line for line in lines if line]
        if not lines:
            return 0
        body = "\n".join(lines).encode()
        with self._lock:
            db = self._open()
            if len(body) > self.max_bytes:
                self._count_drop(len(lines), 1, "a batch larger than the whole spool")
                return len(lines)
            # One transaction: a kill between dropping the oldest and storing
            # the new batch must not lose both.
            db.execute("BEGIN IMMEDIATE")
            try:
                freed = self._drop_oldest(len(body))
                db.execute("INSERT INTO batches (points, body) VALUES (?, ?)",
                           (len(lines), body))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._settle_drop(freed)
            self._batches += 1
            self._points += len(lines)
            self._bytes += len(body)
            return freed[1]

    def peek(self, max_bytes: int = 2**20) -> list[Batch]:
        """The oldest batches, in order, up to ``max_bytes`` of payload.

        At least one batch is returned whenever the spool is not empty, so a
        batch larger than ``max_bytes`` still goes out on its own.
        """
        out: list[Batch] = []
        size = 0
        with self._lock:
            cursor = self._open().execute("SELECT id, points, body FROM batches ORDER BY id")
            for batch_id, points, body in cursor:
                if out and size + len(body) > max_bytes:
                    break
                out.append(Batch(int(batch_id), int(points), bytes(body)))
                size += len(body)
            cursor.close()
        return out

    def remove(self, batch_ids: list[int]) -> int:
        """Delete acknowledged batches (one transaction); returns the points removed.

        Ids already gone (dropped for space meanwhile) are skipped.
        """
        if not batch_ids:
            return 0
        marks = ",".join("?" * len(batch_ids))
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                points, size, count = db.execute(
                    f"SELECT COALESCE(SUM(points), 0), COALESCE(SUM(LENGTH(body)), 0), COUNT(*) "
                    f"FROM batches WHERE id IN ({marks})", batch_ids,
                ).fetchone()
                db.execute(f"DELETE FROM batches WHERE id IN ({marks})", batch_ids)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._batches -= int(count)
            self._points -= int(points)
            self._bytes -= int(size)
            return int(points)

    def close(self) -> None:
        """Close the file; what it holds stays for the next open."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the spool is closed")
        return self._db

    def _drop_oldest(self, incoming: int) -> tuple[int, int, int]:
        """Delete the oldest batches until ``incoming`` more bytes fit.

        Runs inside the caller's transaction (lock held); returns the batches,
        points and bytes deleted, for :meth:`_settle_drop` after the commit.
        """
        excess = self._bytes + incoming - self.max_bytes
        if excess <= 0:
            return 0, 0, 0
        db = self._open()
        count = points = freed = 0
        last_id = None
        cursor = db.execute("SELECT id, points, LENGTH(body) FROM batches ORDER BY id")
        for batch_id, batch_points, size in cursor:
            last_id = batch_id
            count, points, freed = count + 1, points + batch_points, freed + size
            if freed >= excess:
                break
        cursor.close()
        if last_id is not None:
            db.execute("DELETE FROM batches WHERE id <= ?", (last_id,))
        return count, points, freed

    def _settle_drop(self, dropped: tuple[int, int, int]) -> None:
        """Account for a committed :meth:`_drop_oldest`, logging it once."""
        count, points, freed = dropped
        if count == 0:
            return
        self._batches -= count
        self._points -= points
        self._bytes -= freed
        self._count_drop(points, count, "the oldest batches to stay within the bound")

    def _count_drop(self, points: int, batches: int, what: str) -> None:
        self.dropped_points += points
        log.warning(
            "time-series spool full (%d bytes): dropped %s (%d batches, %d points; "
            "%d points dropped so far)", self.max_bytes, what, batches, points,
            self.dropped_points,
        )


def _connect(path: Path | None) -> sqlite3.Connection:
    """Open (or create) the spool's database; ``None``: in memory."""
    db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                         isolation_level=None)  # transactions are explicit
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every 1 MiB of WAL (an fsync each) and cut the WAL back
        # after it, so the WAL adds about 1 MiB to the spool's footprint.
        db.execute("PRAGMA wal_autocheckpoint=256")
        db.execute(f"PRAGMA journal_size_limit={2**20}")
        db.execute(_SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def _set_aside(path: Path) -> Path:
    """Rename an unreadable spool (and its WAL) out of the way; returns ``path``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(path.with_name(f"{path.name}.unreadable-{stamp}{suffix}"))
    log.error("time-series spool %s is unreadable; set aside as %s.unreadable-%s, "
              "starting an empty one", path, path.name, stamp)
    return path


def _lock(path: Path) -> int:
    """Take ``path``'s exclusive flock (freed by the kernel if the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"the time-series spool in {path.parent} is open elsewhere") from None
    return fd
