"""Mandates: the token commands, term limits, the rotation draw anyone can recompute, and an
audit log in which a deleted or edited row is found."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from controller.cli import main
from controller.governance import (
    AuditLog,
    TokenStore,
    draw,
    interval_digest,
    parse_duration,
    seed_of,
)
from controller.ledger import LedgerReader
from dispatch import LEDGER_FIELDS
from tests.accounts_ledgers import config_text
from tests.ledger_helpers import write_ledger

MEMBERS = ("h01", "h02")


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    ledger = tmp_path / "ledger.sqlite"
    rng = np.random.default_rng(7)
    write_ledger(ledger, MEMBERS, 60, 1020.0, 60.0,
                 [{f: rng.uniform(0, 50, 2) for f in LEDGER_FIELDS} for _ in range(5)])
    path = tmp_path / "coop.toml"
    path.write_text(config_text(ledger, MEMBERS)
                    + "[governance]\ncoordinator_max_days = 30\nmax_consecutive_terms = 1\n",
                    encoding="utf-8")
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_durations() -> None:
    assert [parse_duration(t) for t in ("45s", "90m", "12h", "30d")] == [
        45, 5400, 43200, 30 * 86400]
    for bad in ("30", "1w", "-1d", "0d", "d"):
        with pytest.raises(ValueError, match="30d, 12h"):
            parse_duration(bad)


def test_token_create_list_revoke_and_the_store_holds_only_hashes(config: Path) -> None:
    code, out, _ = run("token", "create", str(config), "--role", "member", "--member", "h01",
                       "--expires", "2h", "--link")
    assert code == 0
    secret = out.splitlines()[-1]
    assert "http://127.0.0.1:8000/login?once=" in out and len(secret) >= 40
    code, out, _ = run("token", "create", str(config), "--role", "installer", "--link",
                       "https://coop.example/", "--expires", "1h")
    assert "https://coop.example/login?once=" in out
    run("token", "revoke", str(config), out.split()[1].rstrip(":"))
    ledger = LedgerReader(config.parent / "ledger.sqlite")
    store_bytes = (config.parent / "tokens.sqlite").read_bytes()
    assert secret.encode() not in store_bytes  # only its hash is kept
    token = TokenStore.beside(ledger.path).resolve(secret)
    assert token.member == "h01" and token.label == "h01"
    assert 7100 < token.expires_ts - time.time() <= 7200
    code, out, _ = run("token", "list", str(config))
    fields = out.splitlines()[0].split()
    assert fields[:4] == [token.id, "member", "h01", "'h01'"] and fields[-1] == "active"
    assert run("token", "revoke", str(config), token.id)[0] == 0
    assert run("token", "list", str(config))[1].splitlines()[0].split()[-1] == "revoked"
    assert run("token", "revoke", str(config), token.id)[0] == 1
    assert run("token", "revoke", str(config), "nope")[0] == 2
    # default lifetime: 90 days; a coordinator's is capped at 30
    code, out, _ = run("token", "create", str(config), "--role", "installer", "--label", "Ivo")
    assert code == 0 and TokenStore.beside(ledger.path).resolve(
        out.splitlines()[-1]).expires_ts - time.time() == pytest.approx(90 * 86400, abs=60)
    code, _, err = run("token", "create", str(config), "--role", "coordinator", "--label",
                       "Ana", "--expires", "31d")
    assert code == 2 and "coordinator_max_days" in err
    code, _, err = run("token", "create", str(config), "--role", "member", "--member", "zz")
    assert code == 2 and "h01, h02" in err
    actions = [(r["action"], r["outcome"][:7]) for r in AuditLog.beside(ledger.path).rows()]
    assert actions == [("token.create", "done"), ("token.create", "done"),
                       ("token.revoke", "done"), ("token.revoke", "done"),
                       ("token.create", "done"), ("token.create", "refused")]


def test_rotation_is_reproducible_from_the_published_seed_and_respects_term_limits(
        config: Path) -> None:
    code, out, _ = run("rotate", str(config), "--role", "coordinator", "--candidates",
                       "cleo,ana,bruno")
    assert code == 0, out
    reader = LedgerReader(config.parent / "ledger.sqlite")
    audit = AuditLog.beside(reader.path)
    drawn = next(json.loads(r["detail"]) for r in audit.rows() if r["action"] == "rotate")
    # anyone with the ledger recomputes the seed and the winner
    start, digest = interval_digest(reader)
    assert (start, digest) == (drawn["interval_start"], drawn["interval_digest"])
    assert interval_digest(reader, start) == (start, digest)  # as checked once it is older
    with pytest.raises(LookupError, match="no committed interval"):
        interval_digest(reader, start + 7)
    day = datetime.now(UTC).date()
    assert seed_of(digest, day) == drawn["seed"]
    winner = draw(drawn["seed"], ["bruno", "cleo", "ana"])  # order typed does not matter
    assert winner == drawn["winner"] and f"drawn: {winner}" in out
    seq = next(r["seq"] for r in audit.rows() if r["action"] == "rotate")
    code, checked, _ = run("audit", "draw", str(config), str(seq))
    assert code == 0 and checked.count("matches") == 3
    store = TokenStore.beside(reader.path)
    first = store.resolve(out.splitlines()[-1])
    assert first.role == "coordinator" and first.label == winner
    # max_consecutive_terms = 1: the winner cannot be drawn again next time
    code, out, _ = run("rotate", str(config), "--role", "coordinator", "--candidates", winner)
    assert code == 1
    assert "refused" in audit.rows()[-1]["outcome"]
    others = sorted({"ana", "bruno", "cleo"} - {winner})
    code, out, _ = run("rotate", str(config), "--role", "coordinator", "--candidates",
                       ",".join([winner, *others]))
    second = store.resolve(out.splitlines()[-1])
    assert code == 0 and second.label in others
    # the mandate was handed over: the first coordinator's token is revoked
    assert store.get(first.id).state(time.time()) == "revoked"  # type: ignore[union-attr]
    assert run("token", "create", str(config), "--role", "coordinator", "--label",
               second.label)[0] == 2


def test_the_seed_changes_with_the_ledger(tmp_path: Path) -> None:
    for name, scale in (("a", 1.0), ("b", 2.0)):
        write_ledger(tmp_path / name / "l.sqlite", MEMBERS, 60, 1020.0, 60.0,
                     [{f: np.array([10.0, 20.0]) * scale for f in LEDGER_FIELDS}] * 3)
    a = interval_digest(LedgerReader(tmp_path / "a" / "l.sqlite"))
    b = interval_digest(LedgerReader(tmp_path / "b" / "l.sqlite"))
    assert a[0] == b[0] and a[1] != b[1]


def _log(tmp_path: Path, rows: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.sqlite")
    for i in range(rows):
        log.append("Ana", "coordinator", "island.command", {"n": i}, "accepted", 1000.0 + i)
    return log


def test_an_edited_row_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    assert log.verify().ok
    conn = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET outcome = 'refused' WHERE seq = 3")
    # someone with the file drops the guard first
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET who = 'Bob' WHERE seq = 3")
    conn.commit()
    conn.close()
    verdict = log.verify()
    assert not verdict.ok and any("seq 3" in p and "edited" in p for p in verdict.problems)


def test_an_edited_row_with_its_hash_recomputed_breaks_the_next_link(tmp_path: Path) -> None:
    from controller.governance.audit import row_hash

    log = _log(tmp_path)
    row = log.rows()[1]
    conn = sqlite3.connect(log.path)
    conn.execute("DROP TRIGGER audit_no_update")
    forged = row_hash(row["seq"], row["ts"], "Bob", row["role"], row["action"], row["detail"],
                      row["outcome"], row["prev_hash"])
    conn.execute("UPDATE audit SET who = 'Bob', hash = ? WHERE seq = 2", (forged,))
    conn.commit()
    conn.close()
    verdict = log.verify()
    assert not verdict.ok and any(p.startswith("seq 3: prev_hash") for p in verdict.problems)


def test_a_deleted_row_is_detected_and_a_cut_tail_against_a_noted_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _, head = log.head()
    conn = sqlite3.connect(log.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE seq = 2")
    conn.commit()
    verdict = log.verify()
    assert not verdict.ok and any("row 2 is missing" in p for p in verdict.problems)
    assert any("prev_hash" in p for p in verdict.problems)
    # cutting the last row leaves a valid chain, but not the head published before
    tail = _log(tmp_path / "t")
    _, head = tail.head()
    conn = sqlite3.connect(tail.path)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE seq = 5")
    conn.commit()
    assert tail.verify().ok and not tail.verify(head).ok


def test_the_api_and_the_cli_report_a_broken_chain(config: Path) -> None:
    assert run("token", "create", str(config), "--role", "installer", "--label", "Ivo")[0] == 0
    assert run("token", "create", str(config), "--role", "installer", "--label", "Eva")[0] == 0
    reader = LedgerReader(config.parent / "ledger.sqlite")
    api = TestClient(create_app(reader))
    body = api.get("/api/v1/audit").json()
    assert [r["who"].startswith("cli:") for r in body["rows"]] == [True, True]
    assert body["head"]["seq"] == 2 and api.get("/api/v1/audit/verify").json()["ok"]
    code, out, _ = run("audit", "verify", str(config), "--head", body["head"]["hash"])
    assert code == 0 and "2 rows" in out
    conn = sqlite3.connect(config.parent / "audit.sqlite")
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET detail = replace(detail, 'Ivo', 'Ivan')")
    conn.commit()
    conn.close()
    verdict = api.get("/api/v1/audit/verify").json()
    assert not verdict["ok"] and "seq 1" in verdict["problems"][0]
    code, out, _ = run("audit", "verify", str(config))
    assert code == 1 and "BROKEN" in out


def test_a_changed_config_is_noted_once(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite")
    assert log.record_config('{"a": 1}') and not log.record_config('{"a": 1}')
    assert log.record_config('{"a": 2}')
    rows = log.rows()
    assert [r["action"] for r in rows] == ["config.change"] * 2
    assert json.loads(rows[1]["detail"])["previous"] == json.loads(rows[0]["detail"])["sha256"]
