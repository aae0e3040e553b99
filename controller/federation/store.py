"""A coop's own federation messages and commits, on disk, so a power cut loses neither.

One SQLite file beside the ledger (``federation-<coop>.sqlite``):

* ``own``: every message this coop signed and retained (its offers and results),
  so after a restart it publishes the *same* offer again, never a second one
  (which its peers would rightly take as equivocation);
* ``committed``: each committed settlement, whole, so a restart neither reopens
  it nor loses a booking the ledger had not written yet (booking is idempotent).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np

from controller.federation.allocation import Settlement

DDL = """
CREATE TABLE IF NOT EXISTS own (topic TEXT PRIMARY KEY, interval INTEGER NOT NULL,
                                payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS committed (interval INTEGER PRIMARY KEY, record TEXT NOT NULL);
"""


def to_record(s: Settlement) -> str:
    """A settlement as JSON text."""
    return json.dumps({"interval": s.interval, "coops": list(s.coops),
                       "to": s.to_federation.tolist(), "from": s.from_federation.tolist(),
                       "digest": s.digest, "counted": s.counted, "flags": list(s.flags)})


def from_record(text: str) -> Settlement:
    """A settlement from :func:`to_record`'s text."""
    r = json.loads(text)
    return Settlement(r["interval"], tuple(r["coops"]), np.array(r["to"], dtype=np.int64),
                      np.array(r["from"], dtype=np.int64), r["digest"], r["counted"],
                      tuple((c, f, int(x)) for c, f, x in r["flags"]))


class NodeStore:
    """The file; every write is its own transaction (a few per interval)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a power cut must not lose an offer
        self._conn.executescript(DDL)
        self._lock = threading.Lock()

    def keep(self, topic: str, interval: int, payload: bytes) -> None:
        """Store a message this coop published (the newest per topic)."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO own VALUES (?, ?, ?)",
                               (topic, interval, payload))

    def own(self) -> list[tuple[str, int, bytes]]:
        """Every stored message, oldest interval first."""
        with self._lock:
            return [(t, i, bytes(p)) for t, i, p in self._conn.execute(
                "SELECT topic, interval, payload FROM own ORDER BY interval, topic")]

    def commit(self, settlement: Settlement) -> None:
        """Store a committed settlement (once; a second commit of it is ignored)."""
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO committed VALUES (?, ?)",
                               (settlement.interval, to_record(settlement)))

    def committed(self, since: int = 0) -> list[Settlement]:
        """Committed settlements from interval ``since`` on."""
        with self._lock:
            rows = self._conn.execute("SELECT record FROM committed WHERE interval >= ? "
                                      "ORDER BY interval", (since,)).fetchall()
        return [from_record(r[0]) for r in rows]

    def forget_before(self, interval: int) -> None:
        """Drop own messages of intervals before ``interval`` (commits are kept: small)."""
        with self._lock:
            self._conn.execute("DELETE FROM own WHERE interval < ?", (interval,))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
