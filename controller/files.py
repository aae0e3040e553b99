"""Files only the service user may read: the ledger, tokens, audit log, plans and spools.

The rule (#18): Commonwatt creates its state files owner-only (0600) and, when
it creates their directory, that directory owner-only (0700). A directory that
already exists is left as it is: it may be shared (``var/``, ``/srv``) and
belong to someone else, and tightening it could lock others out of their own
files. A state file that exists and belongs to this user is tightened to 0600
(a ledger created by an older version was 0644); one that belongs to another
user is left alone (``config check`` names what is readable by others).

SQLite creates its ``-wal``, ``-shm`` and ``-journal`` files with the database
file's own mode, so creating the database file first, owner-only, covers them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) if it is missing; a directory made here is 0700.

    Parents made on the way get the default mode: only the leaf holds the files.
    An existing directory is not touched (see the module's rule)."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        else:
            os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it is missing (its directory by :func:`private_dir`);
    tighten it to 0600 if it exists and is this user's. Returns ``path``."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~0o077 & 0o777)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, the new file 0600 from its first byte."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def readable_by_others(path: Path) -> str | None:
    """``"group"``, ``"world"`` or ``"group and world"`` when ``path`` may be read by others
    than its owner; None when it is owner-only or missing."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError:
        return None
    who = [w for bit, w in ((0o040, "group"), (0o004, "world")) if mode & bit]
    return " and ".join(who) or None
