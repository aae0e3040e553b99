"""Relative paths in a config are relative to the config file, from any working directory:
the ledger (and the tokens and audit log beside it), the plan, the spool, the MQTT password
and TLS files, the charter. ``token create`` refuses where no ledger is."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from controller.cli import main
from controller.config import load_config, parse_config
from controller.ledger import LedgerReader
from dispatch import LEDGER_FIELDS
from tests.accounts_ledgers import config_text
from tests.ledger_helpers import write_ledger

MEMBERS = ("h01", "h02")
REPO = Path(__file__).resolve().parents[1]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def coop_dir(tmp_path: Path) -> Path:
    """A coop directory whose config names its ledger relatively: ``data/ledger.sqlite``."""
    home = tmp_path / "coop"
    (home / "data").mkdir(parents=True)
    (home / "coop.toml").write_text(config_text(Path("data/ledger.sqlite"), MEMBERS),
                                    encoding="utf-8")
    return home


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shell in another directory than the config's."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    return other


def _ledger(path: Path) -> None:
    rng = np.random.default_rng(3)
    write_ledger(path, MEMBERS, 60, 1020.0, 60.0,
                 [{f: rng.uniform(0, 50, 2) for f in LEDGER_FIELDS} for _ in range(3)])


def test_every_relative_path_is_resolved_against_the_config_file(
        coop_dir: Path, elsewhere: Path) -> None:
    text = config_text(Path("data/ledger.sqlite"), MEMBERS) + "\n".join([
        "[island]", 'plan_file = "plans/plan.json"',
        "[timeseries]", 'spool_dir = "spool"',
        "[mqtt]", 'username = "cw"', 'password_file = "secret/mqtt.pw"',
        'tls_ca = "tls/ca.pem"', 'tls_cert = "/etc/ssl/client.pem"', 'tls_key = "tls/c.key"',
        "[federation]", 'charter = "../charter.toml"', ""])
    path = coop_dir / "full.toml"
    path.write_text(text, encoding="utf-8")
    for given in (path, Path("../coop/full.toml")):  # absolute, and relative to the shell
        config = load_config(given)
        assert config.storage.ledger == coop_dir / "data/ledger.sqlite"
        assert config.plan_path == coop_dir / "plans/plan.json"
        assert config.timeseries is not None and config.timeseries.spool_dir == coop_dir / "spool"
        assert config.mqtt is not None
        assert config.mqtt.password_file == coop_dir / "secret/mqtt.pw"
        assert config.mqtt.tls_ca == coop_dir / "tls/ca.pem"
        assert config.mqtt.tls_cert == Path("/etc/ssl/client.pem")  # absolute stays
        assert config.mqtt.tls_key == coop_dir / "tls/c.key"
        assert config.federation is not None
        assert config.federation.charter == coop_dir.parent / "charter.toml"
        # the tables the file had are still told apart from defaults
        assert "island" in config.model_fields_set and "site" not in config.model_fields_set
    # Parsed text without a file keeps what it says (the caller knows no directory).
    assert parse_config(text).storage.ledger == Path("data/ledger.sqlite")
    # The default plan file sits beside the resolved ledger.
    assert load_config(coop_dir / "coop.toml").plan_path == coop_dir / "data/plan.json"


def test_token_create_refuses_where_no_ledger_is_and_names_the_path(
        coop_dir: Path, elsewhere: Path) -> None:
    code, out, err = run("token", "create", str(coop_dir / "coop.toml"), "--role", "installer")
    assert code == 2 and out == ""
    assert str(coop_dir / "data/ledger.sqlite") in err and "no ledger there" in err
    # nothing was written, neither beside the config nor in the shell's directory
    assert not list(elsewhere.rglob("*.sqlite")) and not list(coop_dir.rglob("*.sqlite"))


def test_a_token_made_from_another_directory_is_the_one_the_api_accepts(
        coop_dir: Path, elsewhere: Path) -> None:
    ledger = coop_dir / "data/ledger.sqlite"
    _ledger(ledger)
    config = coop_dir / "coop.toml"
    code, out, err = run("token", "create", str(config), "--role", "member", "--member", "h01")
    assert code == 0 and f"ledger {ledger}" in err
    secret = out.splitlines()[-1]
    assert (ledger.parent / "tokens.sqlite").is_file()
    assert not list(elsewhere.rglob("*"))  # nothing in the shell's directory
    api = TestClient(create_app(LedgerReader(ledger), config=load_config(config)))
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/members/h01/energy", headers=headers).status_code == 200
    # without it the member's figures stay private (404 hides whether the member exists)
    assert api.get("/api/v1/members/h01/energy").status_code == 404
    code, _, err = run("token", "list", str(config))
    assert code == 0 and str(ledger) in err


def test_reports_from_another_directory_read_the_configs_ledger(
        coop_dir: Path, elsewhere: Path) -> None:
    ledger = coop_dir / "data/ledger.sqlite"
    _ledger(ledger)
    code, out, err = run("export", str(coop_dir / "coop.toml"))
    assert code == 0 and out.count("\n") == 1 + 3 * len(MEMBERS), (out, err)
    assert f"export: ledger {ledger}" in err
    # and config check prints the resolved ledger
    code, out, _ = run("config", "check", str(coop_dir / "coop.toml"))
    assert code == 0 and f"ledger {ledger}" in out


def test_the_console_script_resolves_from_another_directory(
        coop_dir: Path, elsewhere: Path) -> None:
    """The real process, as a service or a shell would start it, in another directory."""
    ledger = coop_dir / "data/ledger.sqlite"
    _ledger(ledger)
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "token", "create",
                           str(coop_dir / "coop.toml"), "--role", "installer"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert str(ledger) in proc.stderr
    assert (ledger.parent / "tokens.sqlite").is_file() and not list(elsewhere.iterdir())
