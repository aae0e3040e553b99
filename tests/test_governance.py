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
from controller.config import parse_config
from controller.governance import (
    AuditLog,
    TokenStore,
    draw,
    interval_digest,
    parse_duration,
    seed_of,
)
from controller.governance.rotation import (
    RotationRefused,
    announce,
    rotate,
    seed_of_announced,
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


def _book_from(config: Path, t0: float, intervals: int, seed: int = 7) -> None:
    """Append ``intervals`` minutes of flows to the fixture's ledger from ``t0``."""
    rng = np.random.default_rng(seed)
    write_ledger(config.parent / "ledger.sqlite", MEMBERS, 60, t0, 60.0,
                 [{f: rng.uniform(0, 50, 2) for f in LEDGER_FIELDS} for _ in range(intervals)])


def test_rotation_is_announced_then_drawn_reproducibly_and_respects_term_limits(
        config: Path) -> None:
    code, out, err = run("rotate", "announce", str(config), "--role", "coordinator",
                         "--candidates", "cleo,ana,bruno")
    assert code == 0, err
    reader = LedgerReader(config.parent / "ledger.sqlite")
    audit = AuditLog.beside(reader.path)
    announced = audit.rows()[-1]
    decide = json.loads(announced["detail"])["decide_from"]
    assert decide >= announced["ts"] and decide % 60 == 0
    # before the deciding interval has closed there is nothing to draw, nor a second
    # announcement to try instead
    assert run("rotate", "draw", str(config), "--role", "coordinator")[0] == 1
    assert run("rotate", "announce", str(config), "--role", "coordinator", "--candidates",
               "ana")[0] == 1
    _book_from(config, decide - 120, 6)  # two intervals before it (skipped), then it
    code, out, err = run("rotate", "draw", str(config), "--role", "coordinator")
    assert code == 0, err
    drawn = next(json.loads(r["detail"]) for r in audit.rows() if r["action"] == "rotate")
    # anyone with the ledger and the audit log recomputes the seed and the winner
    assert drawn["interval_start"] == decide and drawn["announcement_seq"] == announced["seq"]
    start, digest = interval_digest(reader, decide)
    assert digest == drawn["interval_digest"]
    with pytest.raises(LookupError, match="no committed interval"):
        interval_digest(reader, start + 7)
    assert seed_of_announced(digest, announced["hash"]) == drawn["seed"]
    winner = draw(drawn["seed"], ["bruno", "cleo", "ana"])  # order typed does not matter
    assert winner == drawn["winner"] and f"drawn: {winner}" in out
    seq = next(r["seq"] for r in audit.rows() if r["action"] == "rotate")
    code, checked, _ = run("audit", "draw", str(config), str(seq))
    assert code == 0 and checked.count("matches") == 8, checked
    store = TokenStore.beside(reader.path)
    first = store.resolve(out.splitlines()[-1])
    assert first.role == "coordinator" and first.label == winner
    # one draw per announcement
    code, _, err = run("rotate", "draw", str(config), "--role", "coordinator")
    assert code == 1 and "no announced rotation" in err, err
    # max_consecutive_terms = 1: the winner is left out of the next announcement
    code, _, err = run("rotate", "announce", str(config), "--role", "coordinator",
                       "--candidates", winner)
    assert code == 1 and "refused" in audit.rows()[-1]["outcome"]
    others = sorted({"ana", "bruno", "cleo"} - {winner})
    assert run("rotate", "announce", str(config), "--role", "coordinator", "--candidates",
               ",".join([winner, *others]))[0] == 0
    again = json.loads(audit.rows()[-1]["detail"])
    assert again["eligible"] == others and winner in again["excluded"]
    _book_from(config, reader.span()[1], again["decide_from"] // 60 - reader.span()[1] // 60
               + 1, seed=8)
    code, out, err = run("rotate", "draw", str(config), "--role", "coordinator")
    second = store.resolve(out.splitlines()[-1])
    assert code == 0 and second.label in others, err
    # the mandate was handed over: the first coordinator's token is revoked
    assert store.get(first.id).state(time.time()) == "revoked"  # type: ignore[union-attr]
    assert run("token", "create", str(config), "--role", "coordinator", "--label",
               second.label)[0] == 2


def test_when_the_commands_run_does_not_change_the_winner(tmp_path: Path, reliability) -> None:
    """Steering by timing (#18): before, each of three candidates won at least twice over
    12 consecutive intervals. Now the announcement fixes the interval: drawing right
    after it closes, an hour, a day or a month later gives one winner, and drawing later
    is not another chance."""
    row = reliability("draw-steering", "The announcement fixes the interval whose ledger "
                      "digest seeds the draw: running the draw 1 min, 1 h, about a day or 30 "
                      "days after it gives one winner from one interval, and a second run is "
                      "refused; the old draw (seeded by the interval it ran in) gave more "
                      "than one winner over 12 consecutive intervals.")
    ledger = tmp_path / "ledger.sqlite"
    t_announce = 1_780_000_000.0 + 17.0
    rng = np.random.default_rng(3)
    write_ledger(ledger, MEMBERS, 60, t_announce - 600 - 17, 60.0,
                 [{f: rng.uniform(0, 50, 2) for f in LEDGER_FIELDS} for _ in range(60)])
    reader = LedgerReader(ledger)
    gov = parse_config(config_text(ledger, MEMBERS)).governance
    winners, intervals, refused = set(), set(), 0
    for i, later_s in enumerate((60.0, 3600.0, 86_400.0 - 700, 30 * 86_400.0)):
        sub = tmp_path / f"run{i}"
        sub.mkdir()
        store, audit = TokenStore(sub / "tokens.sqlite"), AuditLog(sub / "audit.sqlite")
        # the same announcement row each time (same time, same candidates, same log)
        a = announce(60, store, audit, gov, "coordinator", ["ana", "bruno", "cleo"], "cli:t",
                     t_announce)
        chosen, token, _ = rotate(reader, store, audit, gov, "coordinator", "cli:t",
                                  t_announce + later_s)
        winners.add(chosen.winner)
        intervals.add(chosen.interval_start)
        assert chosen.interval_start == a.decide_from == 1_780_000_020
        with pytest.raises(RotationRefused, match="no announced rotation"):
            rotate(reader, store, audit, gov, "coordinator", "cli:t", t_announce + later_s + 1)
        refused += 1
    # while the old draw, run at each of 12 consecutive intervals, picks from all three
    old = {draw(seed_of(interval_digest(reader, int(t_announce) + 3 + 60 * k)[1],
                        datetime.fromtimestamp(t_announce, UTC).date()),
                ["ana", "bruno", "cleo"]) for k in range(12)}
    row.observed = (f"4 draw times → {len(winners)} winner(s) {sorted(winners)} from "
                    f"{len(intervals)} interval(s); {refused} of 4 second runs refused; "
                    f"old draw over 12 intervals: {len(old)} different winners")
    assert len(winners) == 1 and len(intervals) == 1
    assert len(old) > 1


def test_audit_draw_catches_a_draw_from_another_interval(config: Path) -> None:
    assert run("rotate", "announce", str(config), "--role", "coordinator", "--candidates",
               "ana,bruno,cleo")[0] == 0
    audit = AuditLog.beside(config.parent / "ledger.sqlite")
    announced = audit.rows()[-1]
    decide = json.loads(announced["detail"])["decide_from"]
    _book_from(config, decide - 60, 4)
    reader = LedgerReader(config.parent / "ledger.sqlite")
    # a forged draw row from the interval before the announced one, seeded as the rules say
    start, digest = interval_digest(reader, decide - 60)
    seed = seed_of_announced(digest, announced["hash"])
    forged = audit.append("cli:mallory", "cli", "rotate", {
        "role": "coordinator", "announcement_seq": announced["seq"],
        "announcement_hash": announced["hash"], "interval_start": start,
        "interval_digest": digest, "day": "x", "seed": seed,
        "candidates": ["ana", "bruno", "cleo"],
        "winner": draw(seed, ["ana", "bruno", "cleo"])}, "drawn")
    code, out, _ = run("audit", "draw", str(config), str(forged["seq"]))
    assert code == 1
    assert "the announced interval: DOES NOT MATCH" in out
    assert "announcement before the interval: matches" in out


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
