"""One writer per ledger: an exclusive lock file beside the database.

Two controllers booking into one ledger would count the same wall time
twice. The first writer holds an ``flock`` on ``<ledger>.lock`` (released by
the kernel when the process dies, even on ``kill -9``) and writes who it is
into the file, so a second one can name the holder when it refuses to start.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class LedgerLockedError(RuntimeError):
    """Another process is writing this ledger."""


class WriterLock:
    """Holds the single-writer lock of one ledger file until :meth:`release`."""

    def __init__(self, ledger_path: Path) -> None:
        self.path = Path(f"{ledger_path}.lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(self.path)
            os.close(fd)
            raise LedgerLockedError(
                f"ledger {ledger_path} is already being written by {holder}; "
                "only one controller may book into a ledger: stop that one first"
            ) from None
        self._fd: int | None = fd
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": " ".join(sys.argv)[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)

    def release(self) -> None:
        """Let another writer in."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(path: Path) -> str:
    try:
        who = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        who = {}
    if not who:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who.get("since", 0)))
    return (f"process {who.get('pid')} on {who.get('host')} (since {since}: "
            f"{who.get('command') or '?'})")
