"""One writer per ledger, whatever the path: an exclusive lock on the ledger file itself.

Two controllers booking into one ledger would count the same wall time
twice, and both would command the same batteries. The lock used to be a file
named after the configured path, so a second controller that reached the same
ledger through a symlink, a hard link or a bind mount took a lock of its own
and started (#18). Now the first writer holds an ``flock`` on the ledger file
itself: a lock belongs to the inode, so every path to that file meets it. The
kernel releases it when the process dies, even on ``kill -9``.

SQLite's own locks are POSIX record locks (``fcntl``), which Linux keeps apart
from ``flock`` on local file systems, so the two do not interfere. (On NFS,
``flock`` is emulated with record locks; a ledger does not belong on NFS
anyway, since SQLite's WAL mode needs shared memory.)

Beside the real path of the ledger, ``<ledger>.lock`` holds who the writer is,
so a second one can name the holder when it refuses to start; it is a note,
not the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from controller.files import FILE_MODE, private_file


class LedgerLockedError(RuntimeError):
    """Another process is writing this ledger."""


class WriterLock:
    """Holds the single-writer lock of one ledger file until :meth:`release`."""

    def __init__(self, ledger_path: Path) -> None:
        # The ledger itself is created here (empty is a valid SQLite file) so that there
        # is an inode to lock before SQLite opens it; private_file makes it 0600.
        real = Path(os.path.realpath(private_file(Path(ledger_path))))
        self.ledger = real
        self.path = Path(f"{real}.lock")
        fd = os.open(real, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            st = os.fstat(fd)
            os.close(fd)
            holder = _describe(self.path, st)
            raise LedgerLockedError(
                f"ledger {ledger_path} (the file {real}, inode {os.stat(real).st_ino}) is "
                f"already being written by {holder}; only one controller may book into a "
                "ledger, whatever path it names it by: stop that one first"
            ) from None
        self._fd: int | None = fd
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": " ".join(sys.argv)[:200], "ledger": str(ledger_path)}
        note = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(note, "w") as out:
            out.write(json.dumps(me))

    def release(self) -> None:
        """Let another writer in."""
        if self._fd is not None:
            with open(self.path, "w"):  # the note goes first: nobody holds it any more
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding an ``flock`` on the inode of ``st``, from Linux's ``/proc/locks``
    (a hard link's note lies beside another path, so the kernel is asked)."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == want:
            return int(fields[4])
    return None


def _describe(path: Path, st: os.stat_result) -> str:
    try:
        who = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        who = {}
    pid = _flock_holder(st)
    if pid is not None and who.get("pid") != pid:  # the note is another path's, or gone
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            command = b"?"
        shown = " ".join(command.decode(errors="replace").split())[:200]
        return f"process {pid} on this host ({shown})"
    if not who:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who.get("since", 0)))
    return (f"process {who.get('pid')} on {who.get('host')} (since {since}: "
            f"{who.get('command') or '?'}, through the path {who.get('ledger', '?')})")
