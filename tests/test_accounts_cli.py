"""Open-data export, and ``commonwatt statement | report | export`` run as a user would."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.accounts import export_csv, pseudonym
from controller.accounts.export import HEADER, pseudonym_salt
from controller.accounts.figures import iso
from controller.cli import main
from controller.ledger import LedgerReader
from controller.ledger.schema import MEMBER_COLUMNS
from tests.accounts_ledgers import JAN31_20H, build_ledger, config_text

MEMBERS = ("h01", "h02", "h03")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("accounts_cli") / "ledger.sqlite"
    build_ledger(path, MEMBERS, seed=3, cycles=72)
    return path


@pytest.fixture(scope="module")
def config(ledger: Path) -> Path:
    path = ledger.parent / "coop.toml"
    path.write_text(config_text(ledger, MEMBERS))
    return path


def exported(reader: LedgerReader, pseudonymous: bool, start: float | None = None,
             end: float | None = None) -> list[dict[str, str]]:
    out = io.StringIO()
    count = export_csv(reader, start, end, pseudonymous, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows)
    return rows


def test_export_is_every_member_and_interval(ledger: Path) -> None:
    reader = LedgerReader(ledger)
    rows = exported(reader, pseudonymous=False)
    first, last, intervals = reader.span()
    assert len(rows) == len(MEMBERS) * intervals
    assert list(rows[0]) == list(HEADER)
    assert rows[0]["interval_start"] == iso(first) and rows[-1]["interval_end"] == iso(last)
    assert rows[0]["interval_start"].endswith("Z")
    # the cells are the ledger's integers, empty where a meter has no counter
    for row, (ts, member, *values) in zip(rows, reader.raw_rows(), strict=True):
        assert (row["interval_start"], row["member"]) == (iso(ts), member)
        assert [row[c] for c in MEMBER_COLUMNS] == ["" if v is None else str(v) for v in values]
    assert any(r["meter_import"] == "" for r in rows if r["member"] == "h03")


def test_export_range_is_whole_intervals_inside_it(ledger: Path) -> None:
    reader = LedgerReader(ledger)
    start, end = JAN31_20H + 3600, JAN31_20H + 3 * 3600 + 60
    rows = exported(reader, False, start, end)
    assert len(rows) == len(MEMBERS) * 8
    assert rows[0]["interval_start"] == iso(start)
    assert rows[-1]["interval_end"] == iso(JAN31_20H + 3 * 3600)


def test_pseudonyms_are_stable_keyed_and_not_the_ids(ledger: Path) -> None:
    reader = LedgerReader(ledger)
    plain, first, again = (exported(reader, False), exported(reader, True),
                           exported(reader, True))
    assert first == again
    salt = pseudonym_salt(reader)
    names = {pseudonym(salt, m): m for m in MEMBERS}
    assert len(names) == len(MEMBERS)
    assert {r["member"] for r in first} == set(names)
    assert not {r["member"] for r in first} & set(MEMBERS)
    assert all(p.startswith("m-") and len(p) == 12 for p in names)
    assert pseudonym("another salt", "h01") != pseudonym(salt, "h01")
    # same rows, only renamed; within an interval ordered by pseudonym, not by id
    key = lambda r: (r["interval_start"], r["member"])  # noqa: E731
    assert sorted(({**r, "member": names[r["member"]]} for r in first), key=key) == plain
    per_interval = [r["member"] for r in first[:len(MEMBERS)]]
    assert per_interval == sorted(per_interval)
    text = "".join(",".join(r.values()) for r in first)
    assert not any(f",{m}," in text for m in MEMBERS)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_cli_statement_formats(config: Path, ledger: Path) -> None:
    from controller.accounts import member_statement, parse_month, statement_dict
    from controller.config import load_config

    loaded = load_config(config)
    st = member_statement(LedgerReader(ledger), "h02", parse_month("2026-02")[0],
                          loaded.ledger, loaded.tariff)
    as_json = run("statement", config, "h02", "--month", "2026-02", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == json.loads(json.dumps(statement_dict(st)))
    as_csv = run("statement", config, "h02", "--month", "2026-02", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["day"] for r in rows] == ["2026-02-01", "total"]
    assert float(rows[-1]["liberated_kwh"]) == statement_dict(st)["totals"]["liberated_kwh"]
    text = run("statement", config, "h02", "--month", "2026-02")
    assert text.returncode == 0
    assert "Statement of h02 (H02) for 2026-02" in text.stdout
    assert "Money (EUR)" in text.stdout and "2026-02-01" in text.stdout


def test_cli_report_formats(config: Path) -> None:
    as_json = run("report", config, "--month", "2026-01", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["month"] == "2026-01" and report["budget"]["balanced"] is True
    assert report["intervals"]["committed"] == 16  # 20:00 to midnight
    text = run("report", config, "--month", "2026-01")
    assert "Coop report for 2026-01" in text.stdout and "balanced to the cent" in text.stdout


def test_cli_export(config: Path, ledger: Path) -> None:
    out = run("export", config, "--pseudonymous")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len(MEMBERS) * LedgerReader(ledger).span()[2]
    assert {r["member"] for r in rows}.isdisjoint(MEMBERS)
    part = run("export", config, "--from", "2026-02-01", "--to", "2026-02-01T01:00:00Z")
    assert part.returncode == 0
    assert len(part.stdout.splitlines()) == 1 + 4 * len(MEMBERS)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("statement", "{config}", "x", "--month", "2026-02"),
         "statement: member 'x' is not in this coop (members: h01, h02, h03)"),
        (("statement", "{config}", "h01", "--month", "2026-13"),
         "statement: --month = '2026-13': expected YYYY-MM"),
        (("report", "{config}", "--month", "Feb"), "report: --month = 'Feb': expected YYYY-MM"),
        (("export", "{config}", "--from", "yesterday"), "export: --from = 'yesterday'"),
        (("export", "{config}", "--from", "2026-02-02", "--to", "2026-02-01"),
         "export: --from = '2026-02-02' is after --to"),
        (("report", "{missing}", "--month", "2026-02"),
         "report: [storage] ledger = {nowhere}: no ledger here yet"),
        (("statement", "{config}", "h01", "--month", "2026-02", "--format", "xml"),
         "invalid choice: 'xml'"),
    ],
)
def test_cli_bad_input_names_the_field_and_exits_2(config: Path, args: tuple[str, ...],
                                                   needle: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = config.parent / "nowhere.sqlite"
    missing = config.parent / "missing.toml"
    missing.write_text(config_text(nowhere, MEMBERS))
    names = {"config": config, "missing": missing, "nowhere": nowhere}
    # in-process for speed (the same main() as the console script); one case below runs it
    try:
        code = main([a.format(**names) for a in args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    assert needle.format(**names) in err
    assert out == ""


def test_cli_bad_input_exits_2_from_the_command_line(config: Path) -> None:
    out = run("statement", config, "x", "--month", "2026-02")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"statement: ledger {config.parent / 'ledger.sqlite'}",
                                       "statement: member 'x' is not in this coop "
                                       "(members: h01, h02, h03)"]


def test_cli_member_in_config_but_not_in_ledger(config: Path, ledger: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    wider = config.parent / "wider.toml"
    wider.write_text(config_text(ledger, (*MEMBERS, "h04")))
    assert main(["statement", str(wider), "h04", "--month", "2026-02"]) == 2
    err = capsys.readouterr().err
    assert "member 'h04' is not in this coop" in err
    assert "in the config but the ledger has no entry for it yet" in err


def test_help_lists_the_accounts_commands() -> None:
    out = run("--help")
    for command in ("statement", "report", "export"):
        assert command in out.stdout
