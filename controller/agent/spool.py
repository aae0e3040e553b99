"""Readings on disk until the coop broker acknowledged them, sent again in order after.

One SQLite file. Each reading gets the next number (``seq``) when it is
taken, never reused, also across restarts; it stays until the broker's
PUBACK for it arrives. Past ``max_rows`` unsent readings the oldest are
dropped and counted, so a household's disk never fills.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class DiskSpool:
    """Numbered payloads waiting for their acknowledgement."""

    def __init__(self, path: Path, max_rows: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, "
                           "payload BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                           "value INTEGER NOT NULL)")
        self.max_rows = max_rows

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def next_seq(self) -> int:
        """The number the next reading will get."""
        return self._meta("last_seq") + 1

    def append(self, seq: int, payload: bytes) -> None:
        """Keep ``payload`` (numbered ``seq``, from :meth:`next_seq`) until it is acknowledged."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("INSERT INTO spool VALUES (?, ?)", (seq, payload))
            self._set_meta("last_seq", seq)
            over = self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0] - self.max_rows
            if over > 0:
                self._conn.execute("DELETE FROM spool WHERE seq IN (SELECT seq FROM spool "
                                   "ORDER BY seq LIMIT ?)", (over,))
                self._set_meta("dropped", self._meta("dropped") + over)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def ack(self, seq: int) -> None:
        """The broker has the reading ``seq``: forget it."""
        self._conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def pending(self, limit: int = 1000) -> list[tuple[int, bytes]]:
        """Unacknowledged readings, oldest first."""
        return [(int(s), bytes(p)) for s, p in self._conn.execute(
            "SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (limit,))]

    def count(self) -> int:
        """How many readings wait."""
        return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    @property
    def dropped(self) -> int:
        """Readings dropped because the spool was full."""
        return self._meta("dropped")

    def close(self) -> None:
        """Close the file."""
        self._conn.close()
