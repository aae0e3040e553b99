"""Readings on disk until the coop has booked them, sent again in order after.

One SQLite file. Each reading gets the next number (``seq``) when it is
taken, never reused, also across restarts; it stays until the coop says it
booked every reading up to that number (a broker's PUBACK is not enough: a
broker that restarts without persistence acknowledges and forgets). Past
``max_rows`` waiting readings the oldest are dropped and counted, so a
household's disk never fills.

The numbers run within an **epoch**: a number the spool picks when it is
created (milliseconds since 1970, so a reinstalled agent, with a fresh spool,
always starts a later epoch). The coop books by ``(epoch, seq)``, so a
reinstalled agent that numbers from 1 again is neither ignored nor told that
its new readings were booked long ago.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from controller.files import private_file


class DiskSpool:
    """Numbered payloads waiting for their acknowledgement."""

    def __init__(self, path: Path, max_rows: int = 1_000_000) -> None:
        private_file(path)  # readings not yet acknowledged: owner-only (controller.files)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, "
                           "payload BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                           "value INTEGER NOT NULL)")
        self.max_rows = max_rows
        # The agent's loop appends, paho's thread forgets what the coop booked: one at a time.
        self._lock = threading.RLock()
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)",
                           (int(time.time() * 1000),))
        #: This spool's epoch: fixed when the file was created.
        self.epoch = self._meta("epoch")

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def next_seq(self) -> int:
        """The number the next reading will get."""
        with self._lock:
            return self._meta("last_seq") + 1

    def append(self, seq: int, payload: bytes) -> None:
        """Keep ``payload`` (numbered ``seq``, from :meth:`next_seq`) until it is acknowledged."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT INTO spool VALUES (?, ?)", (seq, payload))
                self._set_meta("last_seq", seq)
                over = (self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
                        - self.max_rows)
                if over > 0:
                    self._conn.execute("DELETE FROM spool WHERE seq IN (SELECT seq FROM spool "
                                       "ORDER BY seq LIMIT ?)", (over,))
                    self._set_meta("dropped", self._meta("dropped") + over)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def ack_through(self, seq: int) -> None:
        """The coop booked every reading up to ``seq``: forget them."""
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,))

    def oldest(self) -> int | None:
        """The oldest number still waiting (older ones are booked or dropped)."""
        with self._lock:
            row = self._conn.execute("SELECT MIN(seq) FROM spool").fetchone()
        return None if row[0] is None else int(row[0])

    def pending(self, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Unacknowledged readings, oldest first."""
        with self._lock:
            return [(int(s), bytes(p)) for s, p in self._conn.execute(
                "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,))]

    def count(self) -> int:
        """How many readings wait."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    @property
    def dropped(self) -> int:
        """Readings dropped because the spool was full."""
        with self._lock:
            return self._meta("dropped")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
