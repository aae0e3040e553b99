"""Private files (#18): ledger, tokens, audit, plan, spools and the local secret are created
0600 in a 0700 directory; a directory that exists is left alone; ``config check`` warns
about what others may read."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from controller.agent.spool import DiskSpool
from controller.files import private_file, write_private
from controller.governance import AuditLog, TokenStore
from controller.governance.local import new_local_secret
from controller.ledger import LedgerWriter
from controller.timeseries.spool import Spool
from tests.test_config_strict import BASE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _make_everything(var: Path) -> list[Path]:
    LedgerWriter(var / "ledger.sqlite", 900, [("a", "A")]).close()
    store = TokenStore.beside(var / "ledger.sqlite")
    store.create("member", "a", "Ada", 4e9)
    AuditLog.beside(var / "ledger.sqlite").append("me", "cli", "test", {}, "done")
    DiskSpool(var / "agent" / "spool.sqlite")._conn.close()
    Spool(var / "ts", 1 << 20).close()
    write_private(var / "plan.json", "{}\n")
    new_local_secret(var / "ledger.sqlite")
    return [var / n for n in ("ledger.sqlite", "tokens.sqlite", "audit.sqlite", "plan.json",
                              "local.secret", "agent/spool.sqlite",
                              "ts/timeseries-spool.sqlite3")]


def test_state_files_are_owner_only_and_so_are_the_directories_we_make(tmp_path: Path,
                                                                      reliability) -> None:
    row = reliability("state-file-modes", "Under the usual umask 022 (a plain open() gives "
                      "0644), the ledger, token store, audit log, plan, local secret, agent "
                      "spool and time-series spool are created 0600, and so are the WAL and "
                      "shared-memory files of an open database, in directories created 0700.")
    old = os.umask(0o022)  # the usual umask, under which a plain open() gives 0644
    try:
        files = _make_everything(tmp_path / "var")
        # WAL and shared-memory files exist only while a connection is open (closing the
        # last one removes them), so look at them with a ledger and a spool held open
        writer = LedgerWriter(tmp_path / "open" / "ledger.sqlite", 900, [("a", "A")])
        spool = DiskSpool(tmp_path / "open" / "spool.sqlite")
    finally:
        os.umask(old)
    try:
        wals = sorted(p for p in (tmp_path / "open").iterdir()
                      if p.name.endswith(("-wal", "-shm")))
        wal_modes = [_mode(p) for p in wals]
    finally:
        writer.close()
        spool._conn.close()
    dirs = [tmp_path / made for made in ("var", "var/agent", "var/ts")]
    modes = {oct(m) for m in [_mode(p) for p in files] + wal_modes}
    row.observed = (f"{sum(_mode(p) == 0o600 for p in files)} of {len(files)} state files "
                    f"and {wal_modes.count(0o600)} of {len(wals)} WAL/shm files of open "
                    "databases "
                    f"0600 (modes seen: {sorted(modes)}); {sum(_mode(d) == 0o700 for d in dirs)}"
                    f" of {len(dirs)} directories made 0700")
    for path in files:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    assert len(wals) == 4, wals  # -wal and -shm of each: the check below is not vacuous
    for wal, mode in zip(wals, wal_modes, strict=True):
        assert mode == 0o600, wal  # SQLite copies the database's mode
    for made in dirs:
        assert _mode(made) == 0o700, made


def test_an_existing_shared_directory_is_left_alone_and_old_files_are_tightened(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    old = shared / "ledger.sqlite"
    old.write_text("")
    old.chmod(0o644)  # as an older version left it
    private_file(old)
    assert _mode(shared) == 0o755  # not ours to tighten: others may keep files there
    assert _mode(old) == 0o600


def test_config_check_warns_about_secrets_others_may_read(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _make_everything(var)
    config = tmp_path / "coop.toml"
    config.write_text(f'[storage]\nledger = "{var}/ledger.sqlite"\n' + BASE)
    config.chmod(0o644)
    (var / "tokens.sqlite").chmod(0o640)
    out = subprocess.run([sys.executable, "-m", "controller.cli", "config", "check",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr  # warnings, not errors
    assert f"warning: {config} (the configuration) is readable by its group and world" \
        in out.stderr
    assert f"warning: {var}/tokens.sqlite (the token store) is readable by its group:" \
        in out.stderr
    assert "ledger.sqlite (the ledger)" not in out.stderr  # 0600: nothing to say
    assert "the ledger's directory" not in out.stderr  # 0700
