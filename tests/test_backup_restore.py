"""Backups that are proven: a running coop (the demo at 600x, committing an interval every
1.5 s) backed up while it runs, restored once stopped, restarted: every committed Wh of the
backup is still there, the ledger's intervals carry on without a hole or a repeat, and the
audit log's hash chain continues from the backup's head."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.backup import BackupError, generations, next_run, verify_backup
from controller.governance import AuditLog, TokenStore
from controller.ledger import LedgerReader
from tests.demo_process import Demo, start_demo

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def start_coop(data: Path) -> Demo:
    return start_demo(data, speed=600, start="09:00")


def stop(demo: Demo) -> str:
    out = demo.stop()
    assert demo.proc.returncode == 0, out
    return out


def wait_intervals(ledger: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ledger.exists():
            try:
                if LedgerReader(ledger).span()[2] >= count:
                    return
            except (sqlite3.Error, FileNotFoundError):
                pass
        time.sleep(0.3)
    raise AssertionError(f"fewer than {count} intervals in {ledger}")


def every_total(reader: LedgerReader, end: float | None = None) -> dict:
    first = reader.span()[0]
    return {m: reader.totals(m, first, end) for m in [None, *(i for i, _ in reader.members())]}


def test_back_up_a_running_coop_restore_restart_and_nothing_is_lost(tmp_path: Path) -> None:
    data, dest, elsewhere = tmp_path / "demo", tmp_path / "backups", tmp_path / "elsewhere"
    elsewhere.mkdir()
    config, ledger = str(data / "coop.toml"), data / "ledger.sqlite"
    demo = start_coop(data)
    try:
        wait_intervals(ledger, 3)
        made = cli("token", "create", config, "--role", "installer", "--label", "Ivo",
                   cwd=elsewhere)
        assert made.returncode == 0, made.stderr
        secret = made.stdout.splitlines()[-1]
        taken = []
        for _ in range(3):  # while the controller commits, from another directory
            out = cli("backup", config, str(dest), "--keep", "2", cwd=elsewhere)
            assert out.returncode == 0, out.stderr
            assert "integrity ok" in out.stdout and "totals equal" in out.stdout
            taken.append(Path(out.stdout.split()[1].rstrip(":")))
            time.sleep(1.2)  # a new second, a new name; the ledger moves on meanwhile
        # three taken, the oldest deleted: two generations kept
        assert generations(dest) == taken[1:] and not taken[0].exists()
        assert not list(dest.glob(".partial-*"))
        refused = cli("restore", config, str(taken[-1]), cwd=elsewhere)
        assert refused.returncode == 1 and "already being written by process" in refused.stderr
    finally:
        stop(demo)
    for name in ("ledger.sqlite", "tokens.sqlite", "audit.sqlite"):  # made owner-only
        assert (data / name).stat().st_mode & 0o077 == 0, name
    latest = taken[-1]
    manifest = verify_backup(latest)
    assert set(manifest["files"]) >= {"ledger.sqlite", "tokens.sqlite", "audit.sqlite"}
    for file in latest.iterdir():
        assert file.stat().st_mode & 0o077 == 0, file  # owner-only
    saved = every_total(LedgerReader(latest / "ledger.sqlite"))
    assert saved[None]["intervals"] >= 3
    # The stopped coop booked more than the backup holds: restoring goes back to it.
    assert LedgerReader(ledger).span()[1] > manifest["booked_until"]
    restored = cli("restore", config, str(latest), cwd=elsewhere)
    assert restored.returncode == 0, restored.stderr
    assert "kept the previous file" in restored.stdout
    assert list(data.glob("ledger.sqlite.before-restore-*"))  # nothing deleted
    assert every_total(LedgerReader(ledger)) == saved
    assert LedgerReader(ledger).span()[1] == manifest["booked_until"]
    # restart on the restored files: the chain continues
    demo = start_coop(data)
    try:
        wait_intervals(ledger, saved[None]["intervals"] + 3)
    finally:
        stop(demo)
    assert "(continued)" in demo.banner
    after = LedgerReader(ledger)
    start, end, count = after.span()
    assert end > manifest["booked_until"] and count == (end - start) // after.step
    # every Wh committed before the backup is still there, to the Wh
    assert every_total(after, manifest["booked_until"]) == saved
    seq, head = manifest["audit_head"]
    verdict = AuditLog(data / "audit.sqlite").verify(head)
    assert verdict.ok and verdict.rows > seq, verdict.problems
    assert TokenStore(data / "tokens.sqlite").resolve(secret).label == "Ivo"


def test_a_damaged_backup_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    from tests.test_config_paths import _ledger

    home = tmp_path / "coop"
    home.mkdir()
    _ledger(home / "ledger.sqlite")
    from tests.accounts_ledgers import config_text
    (home / "coop.toml").write_text(config_text(Path("ledger.sqlite"), ("h01", "h02"))
                                    + '[backup]\ndestination = "../backups"\nkeep = 3\n')
    out = cli("backup", str(home / "coop.toml"), cwd=tmp_path)  # DEST from [backup]
    assert out.returncode == 0, out.stderr
    (taken,) = generations(tmp_path / "backups")
    before = (home / "ledger.sqlite").read_bytes()
    with (taken / "ledger.sqlite").open("r+b") as f:
        f.seek(4096)
        f.write(b"\xff" * 64)
    with pytest.raises(BackupError, match="changed since the backup was taken"):
        verify_backup(taken)
    out = cli("restore", str(home / "coop.toml"), str(taken), cwd=tmp_path)
    assert out.returncode == 1 and "changed since the backup was taken" in out.stderr
    assert (home / "ledger.sqlite").read_bytes() == before
    out = cli("backup", str(home / "nowhere.toml"), str(tmp_path / "b2"), cwd=tmp_path)
    assert out.returncode == 2


def test_the_daily_time_is_the_next_one() -> None:
    day = 1_780_000_000 // 86400 * 86400
    assert next_run(day + 3600, "03:30") == day + 3.5 * 3600
    assert next_run(day + 3.5 * 3600, "03:30") == day + 86400 + 3.5 * 3600


def test_the_running_controllers_schedule_takes_the_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import controller.backup as backup_module
    from controller.config import load_config
    from tests.accounts_ledgers import config_text
    from tests.test_config_paths import _ledger

    _ledger(tmp_path / "ledger.sqlite")
    path = tmp_path / "coop.toml"
    path.write_text(config_text(Path("ledger.sqlite"), ("h01", "h02"))
                    + '[backup]\ndestination = "backups"\ndaily_at = "02:15"\nkeep = 1\n')
    config = load_config(path)
    asked: list[str] = []

    def soon(now: float, daily_at: str) -> float:
        asked.append(daily_at)
        return now + 0.2  # "02:15" is now

    monkeypatch.setattr(backup_module, "next_run", soon)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(backup_module.scheduled_backups(config, stop))
        deadline = time.monotonic() + 20
        while len(generations(tmp_path / "backups")) < 1 or len(asked) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    assert asked[0] == "02:15"
    assert len(generations(tmp_path / "backups")) == 1  # keep = 1, every run checked
