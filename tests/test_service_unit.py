"""``commonwatt service install``: a hardened systemd unit that ``systemd-analyze verify``
accepts, running the controller on the absolute config in its own directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.accounts_ledgers import config_text

ROOT = Path(__file__).resolve().parents[1]


def test_the_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    home = tmp_path / "etc-commonwatt"
    home.mkdir()
    (home / "coop.toml").write_text(
        config_text(Path("data/ledger.sqlite"), ("h01", "h02"))
        + '[backup]\ndestination = "/srv/commonwatt-backups-test-never-created"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    unit = tmp_path / "commonwatt.service"
    # the backups' directory is outside anything writable here: printed, not made
    out = subprocess.run([sys.executable, "-m", "controller.cli", "service", "install",
                          "coop.toml", "--unit", "-"], cwd=home, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    (home / "coop.toml").write_text(config_text(Path("data/ledger.sqlite"), ("h01", "h02")))
    out = subprocess.run([sys.executable, "-m", "controller.cli", "service", "install",
                          str(home / "coop.toml"), "--unit", str(unit), "--user", "cw"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "useradd --system" in out.stdout and "systemctl daemon-reload" in out.stdout
    assert (home / "data").is_dir()  # the ledger's directory is made
    written = unit.read_text()
    lines = set(written.splitlines())
    for line in ("User=cw", "Group=cw", f"WorkingDirectory={home}", "Restart=on-failure",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", f"ReadWritePaths={home / 'data'}",
                 "UMask=0077", "PrivateDevices=yes", "CapabilityBoundingSet=",
                 "ExecReload=/bin/kill -HUP $MAINPID", "WantedBy=multi-user.target"):
        assert line in lines, line
    assert f"ExecStart={sys.executable} -m controller.cli run {home / 'coop.toml'}" in lines
    assert "ReadWritePaths=/srv/commonwatt-backups-test-never-created" in text.splitlines()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: the unit was not verified")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert str(unit) not in verify.stderr, verify.stderr  # no warning about our unit


def test_a_bad_config_writes_no_unit(tmp_path: Path) -> None:
    (tmp_path / "coop.toml").write_text("members = 3\n")
    out = subprocess.run([sys.executable, "-m", "controller.cli", "service", "install",
                          str(tmp_path / "coop.toml"), "--unit", str(tmp_path / "u.service")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "members" in out.stderr
    assert not (tmp_path / "u.service").exists()
