"""``commonwatt backup`` and ``commonwatt restore``: copies of the coop's books that are proven.

**Backup.** The ledger, the tokens, the audit log (and the agents' late readings, where
a coop has agents) are SQLite files the running controller writes. Each is copied with
SQLite's online backup API (:meth:`sqlite3.Connection.backup`), which gives a consistent
snapshot while the controller keeps committing; the island plan is a plain file, copied.
Each copy is then checked before it counts:

* ``PRAGMA integrity_check`` answers ``ok`` on every copied database;
* the copy's committed totals equal the source's over the same committed intervals
  (the source has moved on meanwhile: it is read up to the copy's last interval), column
  by column, for the coop and for every member;
* the audit log's hash chain verifies in the copy, with the source's head at copy time.

A backup is written into ``DEST/.partial-<stamp>`` and renamed to ``DEST/<stamp>``
only once checked, so a directory named like a backup is a whole, checked one. Its
``manifest.json`` lists every file with its SHA-256 and the figures checked. The oldest
backups beyond ``keep`` are deleted. Everything is owner-only (0700 directories, 0600
files): the tokens and the audit log are the coop's keys and its record.

**Restore.** :func:`restore` takes the writer lock of the configured ledger
(:class:`~controller.ledger.lock.WriterLock`), so it refuses while a controller runs
on it, checks the backup against its manifest and ``integrity_check`` again, moves the
current files aside (``<name>.before-restore-<stamp>``: nothing is deleted) and puts the
copies in place. The controller started afterwards continues the restored chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from controller.config import CoopConfig
from controller.ledger.lock import WriterLock

#: A finished backup's directory name: its UTC time.
STAMP = "%Y%m%dT%H%M%SZ"
_STAMPED = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
log = logging.getLogger(__name__)


class BackupError(RuntimeError):
    """A backup that could not be taken or did not check out, or a restore refused."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What one backup wrote and checked."""

    path: Path
    files: dict[str, str]  # name -> sha256
    intervals: int
    booked_until: float | None
    removed: list[Path]


def coop_files(config: CoopConfig) -> dict[str, Path]:
    """The coop's state files, by the name they have in a backup: the ledger's own name,
    then the files kept beside it (``tokens.sqlite``, ``audit.sqlite``, the agents'
    ledger and the island plan), where they exist."""
    from controller.governance.audit import AUDIT_FILE
    from controller.governance.tokens import TOKENS_FILE

    ledger = config.storage.ledger
    files = {ledger.name: ledger,
             TOKENS_FILE: ledger.parent / TOKENS_FILE,
             AUDIT_FILE: ledger.parent / AUDIT_FILE,
             f"{ledger.stem}-agents.sqlite": ledger.with_name(f"{ledger.stem}-agents.sqlite"),
             "plan.json": config.plan_path}
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_db(source: Path, target: Path) -> None:
    """An online, consistent copy (SQLite's backup API), owner-only."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # One file, no -wal beside it: the copy stands alone.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database file: ``ok`` or the problems it lists."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def _check_ledger(source: Path, copy: Path) -> tuple[int, float | None]:
    """The copy's committed totals equal the source's over the copy's intervals, for the
    coop and each member; returns the copy's interval count and last committed end."""
    from controller.ledger import LedgerReader

    mine, theirs = LedgerReader(copy), LedgerReader(source)
    first, last, count = mine.span()
    if last is None:
        return 0, None
    for member, _ in [(None, None), *mine.members()]:
        a = mine.totals(member, first, last)
        b = theirs.totals(member, first, last)
        if a != b:
            diff = {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
            raise BackupError(f"{copy.name}: totals of {member or 'the coop'} differ from the "
                              f"running ledger's over the same intervals: {diff}")
    return count, float(last)


def backup(config: CoopConfig, dest: Path, keep: int = 7,
           now: float | None = None) -> BackupResult:
    """Take a checked backup of the coop's state into ``dest`` (see the module's docstring).

    Raises:
        BackupError: no ledger to back up, or a copy that does not check out (the partial
            directory is removed; earlier backups are untouched).
    """
    if keep < 1:
        raise BackupError(f"keep = {keep}: expected at least 1")
    ledger = config.storage.ledger
    if not ledger.is_file():
        raise BackupError(f"[storage] ledger = {ledger}: no ledger there to back up")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime(STAMP, time.gmtime(time.time() if now is None else now))
    final = dest / stamp
    n = 1
    while final.exists():
        final, n = dest / f"{stamp}-{n}", n + 1
    partial = dest / f".partial-{final.name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    try:
        files: dict[str, str] = {}
        audit_head = None
        for name, source in coop_files(config).items():
            if not source.is_file():
                continue
            target = partial / name
            if name.endswith(".sqlite"):
                if name == "audit.sqlite":
                    from controller.governance.audit import AuditLog
                    audit_head = AuditLog(source).head()  # before the copy: it only grows
                _copy_db(source, target)
                verdict = integrity(target)
                if verdict != "ok":
                    raise BackupError(f"{name}: integrity_check of the copy: {verdict}")
            else:
                shutil.copyfile(source, target)
                target.chmod(0o600)
            files[name] = _sha256(target)
        intervals, until = _check_ledger(ledger, partial / ledger.name)
        if audit_head is not None:
            from controller.governance.audit import AuditLog
            verdict = AuditLog(partial / "audit.sqlite").verify(audit_head[1])
            if not verdict.ok:
                raise BackupError("audit.sqlite: the copy's hash chain does not verify: "
                                  + "; ".join(verdict.problems))
        manifest = {"coop": config.name, "taken": stamp, "ledger": str(ledger),
                    "intervals": intervals, "booked_until": until, "files": files,
                    "audit_head": None if audit_head is None else list(audit_head)}
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                               encoding="utf-8")
        (partial / "manifest.json").chmod(0o600)
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    removed = prune(dest, keep)
    return BackupResult(final, files, intervals, until, removed)


def generations(dest: Path) -> list[Path]:
    """The finished backups in ``dest``, oldest first."""
    if not dest.is_dir():
        return []
    return sorted(p for p in dest.iterdir() if p.is_dir() and _STAMPED.match(p.name)
                  and (p / "manifest.json").is_file())


def prune(dest: Path, keep: int) -> list[Path]:
    """Delete the oldest backups beyond ``keep``; the ones deleted."""
    old = generations(dest)[:-keep]
    for path in old:
        shutil.rmtree(path)
    return old


def verify_backup(path: Path) -> dict:
    """The manifest of a backup whose files match it and whose databases are intact.

    Raises:
        BackupError: naming the file that is missing, changed or damaged.
    """
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: not a Commonwatt backup (manifest.json: {exc})") from None
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BackupError(f"{file}: missing from the backup")
        if _sha256(file) != digest:
            raise BackupError(f"{file}: changed since the backup was taken (sha256)")
        if name.endswith(".sqlite") and (verdict := integrity(file)) != "ok":
            raise BackupError(f"{file}: integrity_check: {verdict}")
    return manifest


def restore(config: CoopConfig, path: Path, now: float | None = None) -> list[Path]:
    """Put the backup in ``path`` in place of the coop's files; the files moved aside.

    Raises:
        LedgerLockedError: a controller runs on the ledger (stop it first).
        BackupError: the backup does not check out; nothing was changed.
    """
    ledger = config.storage.ledger
    lock = WriterLock(ledger)  # refuses while a controller writes the ledger
    try:
        manifest = verify_backup(path)
        if ledger.name not in manifest["files"]:
            raise BackupError(f"{path}: holds no ledger named {ledger.name}")
        stamp = time.strftime(STAMP, time.gmtime(time.time() if now is None else now))
        targets = coop_files(config)
        moved: list[Path] = []
        for name in manifest["files"]:
            target = targets.get(name)
            if target is None:
                raise BackupError(f"{path}: {name} is not a file of this coop")
            # The live file and SQLite's journal beside it: a stale -wal would replay
            # the old state over the restored one.
            for live in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
                if live.exists():
                    aside = live.with_name(f"{live.name}.before-restore-{stamp}")
                    live.rename(aside)
                    moved.append(aside)
        for name in manifest["files"]:
            target = targets[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path / name, target)
            target.chmod(0o600)
        return moved
    finally:
        lock.release()


def next_run(now: float, daily_at: str) -> float:
    """The next ``HH:MM`` (UTC) strictly after ``now``, epoch seconds."""
    hours, minutes = (int(x) for x in daily_at.split(":"))
    today = now // 86400 * 86400 + hours * 3600 + minutes * 60
    return today if today > now else today + 86400


async def scheduled_backups(config: CoopConfig, stop: asyncio.Event) -> None:
    """Take ``[backup]``'s daily backup until ``stop`` is set (the running controller's
    task). A failed backup is logged with its reason and tried again the next day; it
    never stops the controller."""
    spec = config.backup
    if spec is None:
        return
    while not stop.is_set():
        delay = next_run(time.time(), spec.daily_at) - time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(delay, 0.0))
        if stop.is_set():
            return
        try:
            result = await asyncio.to_thread(backup, config, spec.destination, spec.keep)
        except (BackupError, OSError, sqlite3.Error) as exc:
            log.error("backup into %s failed: %s", spec.destination, exc)
        else:  # at WARNING, the default level: the service's journal shows every backup
            log.warning("backup %s: %d intervals, checked; %d old removed", result.path,
                        result.intervals, len(result.removed))
