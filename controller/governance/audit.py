"""The audit log: who did what, when, and how it ended; append-only, chained by hash.

Each row stores the hash of the row before it (``prev_hash``) and its own
``hash``: SHA-256 over its fields and ``prev_hash``. Editing a row changes
its hash; deleting one breaks the next row's ``prev_hash``; both are found by
:meth:`AuditLog.verify`. SQLite triggers also refuse UPDATE and DELETE, which
stops mistakes, not someone with the file: they can drop the triggers, which
is why the chain exists. Cutting rows off the end leaves a valid chain, so
the head (last seq and hash) is published with every ``/api/v1/audit``
answer: anyone who noted it can check it later (``verify(head=...)``).

Grid-state transitions are not copied here: the controller writes them to the
ledger's ``grid_transitions`` table, and :func:`merged` joins them in the
published view.

Every row says which clock its ``ts`` is on (``clock``): ``wall``, or ``simulated 60×``
when the process runs a controller on a simulated clock (the demo, ``island rehearse``;
:func:`use_clock`), so that a command given through the demo's API sits on the same
clock as the grid transitions it caused, and is never mistaken for wall time. A wall row
hashes as it always did; any other clock is hashed too, so it cannot be edited away.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.files import private_file

#: The log's file name, beside the ledger.
AUDIT_FILE = "audit.sqlite"
#: ``prev_hash`` of the first row.
GENESIS = "0" * 64

_DDL = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    clock TEXT NOT NULL DEFAULT 'wall'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
_COLUMNS = ("seq", "ts", "who", "role", "action", "detail", "outcome", "prev_hash", "hash",
            "clock")
#: The fields :func:`row_hash` takes positionally.
_HASHED = _COLUMNS[:8]
#: The clock of rows written on the wall clock (``time.time``).
WALL = "wall"
#: The clocks of the logs this process writes on another clock than the wall's, by the
#: log's resolved path: ``(now, label)``. Keyed by file, so that one controller's clock
#: never leaks into another log written by the same process (tests, the federation demo).
_clocks: dict[Path, tuple[Callable[[], float], str]] = {}


def use_clock(path: Path, now: Callable[[], float] | None, label: str = WALL) -> None:
    """Put the rows this process writes to the log at ``path`` on ``now`` (the controller's
    clock), labelled ``label``; ``None`` (or the wall label) puts them back on the wall."""
    key = Path(path).resolve()
    if now is None or label == WALL:
        _clocks.pop(key, None)
    else:
        _clocks[key] = (now, label)


def clock_of(path: Path) -> str:
    """The label of the clock this process writes the log at ``path`` on."""
    found = _clocks.get(Path(path).resolve())
    return WALL if found is None else found[1]


def simulated_label(speed: float) -> str:
    """``simulated 60×``: the label of a simulated clock running ``speed`` times wall time."""
    return f"simulated {speed:g}×"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`AuditLog.verify` found."""

    ok: bool
    rows: int
    head: str
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {"ok": self.ok, "rows": self.rows, "head": self.head,
                "problems": list(self.problems)}


def row_hash(seq: int, ts: float, who: str, role: str, action: str, detail: str,
             outcome: str, prev_hash: str, clock: str = WALL) -> str:
    """SHA-256 of a row's fields in a fixed JSON form (``repr`` of the float keeps every
    bit of ``ts``, so anyone can recompute the hash from the published row). A row on
    another clock than the wall's has its ``clock`` last in the list; a wall row hashes
    as before the column existed, so older logs still verify."""
    fields = [seq, repr(float(ts)), who, role, action, detail, outcome, prev_hash]
    if clock != WALL:
        fields.append(clock)
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class AuditLog:
    """The audit log in ``path`` (created on first append)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, ledger: Path) -> AuditLog:
        """The log beside a ledger file."""
        return cls(Path(ledger).parent / AUDIT_FILE)

    def append(self, who: str, role: str, action: str, detail: dict[str, Any] | str,
               outcome: str, now: float | None = None) -> dict[str, Any]:
        """Add a row at the end of the chain; the row as stored."""
        text = detail if isinstance(detail, str) else json.dumps(
            detail, sort_keys=True, ensure_ascii=False, default=str)
        on = _clocks.get(self.path.resolve())
        clock = WALL if on is None else on[1]
        clock_now = time.time if on is None else on[0]
        ts = float(clock_now() if now is None else now)
        private_file(self.path)  # names and commands: owner-only (controller.files)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.executescript(_DDL)
            if "clock" not in {r[1] for r in conn.execute("PRAGMA table_info(audit)")}:
                # A log from before the column: its rows were all on the wall clock.
                conn.execute("ALTER TABLE audit ADD COLUMN clock TEXT NOT NULL DEFAULT 'wall'")
            # IMMEDIATE: the CLI and the API may append at once; the chain must stay a line.
            conn.execute("BEGIN IMMEDIATE")
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
            seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
            digest = row_hash(seq, ts, who, role, action, text, outcome, prev, clock)
            values = (seq, ts, who, role, action, text, outcome, prev, digest, clock)
            conn.execute(f"INSERT INTO audit ({', '.join(_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return dict(zip(_COLUMNS, values, strict=True))

    def rows(self, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Rows with ``seq > after_seq``, oldest first, at most ``limit``."""
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            cursor = conn.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (after_seq, limit))
            return _dicts(cursor)
        finally:
            conn.close()

    def verify(self, head: str | None = None) -> Verdict:
        """Recompute the chain; with ``head`` (a hash noted earlier) also check that the row
        it names is still there, which catches rows cut off the end."""
        problems: list[str] = []
        prev, count, seen_head = GENESIS, 0, head is None
        after = 0
        while batch := self.rows(after, 5000):
            for row in batch:
                count += 1
                if row["seq"] != count:
                    problems.append(f"row {count} is missing (next row is seq {row['seq']})")
                    count = row["seq"]
                if row["prev_hash"] != prev:
                    problems.append(f"seq {row['seq']}: prev_hash does not match the row "
                                    "before it (a row was deleted or edited)")
                fields = [row[c] for c in _HASHED]
                if row_hash(*fields, clock=row["clock"]) != row["hash"]:
                    problems.append(f"seq {row['seq']}: its hash does not match its contents "
                                    "(the row was edited)")
                prev = row["hash"]
                seen_head = seen_head or row["hash"] == head
            after = batch[-1]["seq"]
        if not seen_head:
            problems.append(f"the head {head} noted earlier is no longer in the log "
                            "(rows were cut off the end, or it was rewritten)")
        return Verdict(not problems, count, prev, tuple(problems))

    def last(self, action: str) -> dict[str, Any] | None:
        """The latest row of ``action``, if any."""
        if not self.path.exists():
            return None
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            found = _dicts(conn.execute("SELECT * FROM audit WHERE action = ? ORDER BY seq "
                                        "DESC LIMIT 1", (action,)))
        except sqlite3.OperationalError:  # a file without the table yet
            found = []
        finally:
            conn.close()
        return found[0] if found else None

    def record_config(self, text: str, who: str = "controller") -> bool:
        """Note a configuration the controller starts with, when it differs from the last one
        noted (by SHA-256 of its validated form); whether a row was added."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        last = self.last("config.change")
        previous = None if last is None else _maybe_json(last["detail"]).get("sha256")
        if previous == digest:
            return False
        self.append(who, "controller", "config.change", {"sha256": digest,
                                                         "previous": previous}, "loaded")
        return True

    def head(self) -> tuple[int, str]:
        """The last row's seq and hash (0 and :data:`GENESIS` when empty)."""
        if not self.path.exists():
            return 0, GENESIS
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
        except sqlite3.OperationalError:  # a file without the table yet
            last = None
        finally:
            conn.close()
        return (0, GENESIS) if last is None else (int(last[0]), str(last[1]))


def merged(log_rows: list[dict[str, Any]], transitions: list[dict[str, Any]],
           clock: str = WALL) -> list[dict[str, Any]]:
    """Audit rows and the ledger's grid transitions in one list, oldest first; each entry
    says where it comes from (``source``: ``audit`` or ``ledger``) and its clock: the
    ledger's transitions are on the controller's, ``clock``."""
    out = [{"source": "audit", **r, "detail": _maybe_json(r["detail"])} for r in log_rows]
    for t in transitions:
        out.append({"source": "ledger", "clock": clock,
                    "ts": float(t["ts"]),  # type: ignore[arg-type]
                    "who": t.get("requested_by") or "controller", "role": "controller",
                    "action": "grid.refused" if t.get("refused") else "grid.transition",
                    "detail": {"from": t.get("from"), "to": t.get("to"),
                               "cause": t.get("cause")},
                    "outcome": "refused" if t.get("refused") else "done"})
    out.sort(key=lambda r: r["ts"])
    return out


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Rows as dicts by column name; a log from before ``clock`` is on the wall clock."""
    names = [d[0] for d in cursor.description]
    return [{"clock": WALL, **dict(zip(names, r, strict=True))} for r in cursor.fetchall()]


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
