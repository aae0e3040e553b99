"""`commonwatt simulate`: CSV what-if studies, with errors naming file, row and column."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.simulate import InputError, load_study, run_study

FLEET = (
    "member,battery_wh,battery_max_charge_w,battery_max_discharge_w,soc_start_pct,soc_min_pct,"
    "efficiency,offered\n"
) + """a,10000,3000,3000,50,10,0.9,1
b,0,0,0,0,0,1,0
c,5000,2500,2500,20,10,0.81,0
"""


def series(rows_per_member: int = 48) -> str:
    lines = ["timestamp,member,pv_w,load_w"]
    for t in range(rows_per_member):
        stamp = f"2026-06-{21 + t // 24}T{t % 24:02d}:00:00Z"
        sun = max(0.0, float(np.sin((t - 6) / 12 * np.pi)))
        lines += [f"{stamp},a,{5000 * sun:.1f},400", f"{stamp},b,{3000 * sun:.1f},600",
                  f"{stamp},c,0,500"]
    return "\n".join(lines) + "\n"


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    fleet, data = tmp_path / "fleet.csv", tmp_path / "series.csv"
    fleet.write_text(FLEET)
    data.write_text(series())
    return fleet, data


def test_study_totals_balance(files) -> None:
    report = run_study(load_study(*files))
    coop = report["coop"]
    assert coop["ticks"] == 48 and coop["step_s"] == 3600
    for m in report["members"].values():
        assert m["load"] == pytest.approx(m["served"] + m["shed"], abs=1e-5)
        assert m["liberated"] <= m["served"] + 1e-9
    assert coop["from_peers"] == pytest.approx(coop["to_peers"], abs=1e-5)
    assert 0 < coop["self_sufficiency"] <= 1
    assert coop["jain_fairness"] is not None


def test_island_sheds_instead_of_importing(files) -> None:
    report = run_study(load_study(*files), island=True)
    assert report["coop"]["from_grid"] == 0 and report["coop"]["to_grid"] == 0
    assert report["coop"]["shed"] > 0


def test_an_offered_battery_liberates_more(tmp_path: Path, files) -> None:
    """What-if: household c (no PV) adds a 10 kWh battery and offers it to the coop."""
    without = tmp_path / "without.csv"
    without.write_text(FLEET.replace("c,5000,2500,2500,20,10,0.81,0", "c,0,0,0,0,0,1,0"))
    with_battery = tmp_path / "with.csv"
    with_battery.write_text(FLEET.replace("c,5000,2500,2500,20,10,0.81,0",
                                          "c,10000,3000,3000,0,10,0.9,1"))
    before = run_study(load_study(without, files[1]))["coop"]
    after = run_study(load_study(with_battery, files[1]))["coop"]
    assert after["liberated"] > before["liberated"] + 1.0
    assert after["from_grid"] < before["from_grid"]


@pytest.mark.parametrize(
    ("target", "old", "new", "message"),
    [
        ("fleet", "efficiency,offered", "eff,offered", "fleet.csv: missing column efficiency"),
        ("fleet", "c,5000,2500", "c,-5,2500", "fleet.csv: row 4, column battery_wh: '-5'"),
        ("fleet", "0.81", "1.3", "fleet.csv: row 4, column efficiency"),
        ("fleet", "b,0,0,0", "a,0,0,0", "fleet.csv: row 3, column member: 'a' appears twice"),
        ("series", "pv_w,load_w", "pv,load_w", "series.csv: missing column pv_w"),
        ("series", ",c,0,500", ",zed,0,500", "column member: unknown member 'zed'"),
        ("series", "T03:00:00Z,c,0,500", "T03:00:00Z,c,-1,500", "row 13, column pv_w: '-1'"),
        ("series", "T01:00:00Z,a", "T00:00:00Z,a", "row 5, column timestamp: duplicated"),
        ("series", "T05:00:00Z,a", "T99:00:00Z,a", "row 17, column timestamp: "),
        ("series", "T02:00:00Z,b,", "T02:00:00Z,b,abc", "row 9, column pv_w: 'abc"),
    ],
)
def test_bad_input_names_file_row_and_column(files, target, old, new, message) -> None:
    path = files[0] if target == "fleet" else files[1]
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        load_study(*files)
    assert message in str(err.value)


def test_cli_json_output(files) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(files[0]),
         "--series", str(files[1]), "--policy", "equal", "--json"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == {"members", "coop"}
    fields = {"load", "served", "shed", "liberated", "own_pv_used", "from_peers", "to_peers",
              "from_battery", "to_battery", "from_grid", "to_grid", "curtailed", "losses",
              "battery_start", "battery_end", "self_sufficiency"}
    assert set(report["members"]["a"]) == fields
    assert {"self_sufficiency", "jain_fairness"} <= set(report["coop"])


def test_cli_bad_input_exits_nonzero(files) -> None:
    files[1].write_text(files[1].read_text().replace(",c,0,500", ",zed,0,500", 1))
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(files[0]),
         "--series", str(files[1])], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "unknown member 'zed'" in out.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FLEET_HEADER = ("member,battery_wh,battery_max_charge_w,battery_max_discharge_w,soc_start_pct,"
                "soc_min_pct,efficiency")


def flat_series(rows: dict[str, tuple[float, float]], hours: int = 6) -> str:
    """``hours`` hourly steps with constant (pv_w, load_w) per member."""
    lines = ["timestamp,member,pv_w,load_w"]
    for t in range(hours):
        lines += [f"2026-06-21T{t:02d}:00:00Z,{m},{pv},{load}" for m, (pv, load) in rows.items()]
    return "\n".join(lines) + "\n"


def test_starting_charge_is_not_liberated(tmp_path: Path) -> None:
    """A full battery and no PV at all: what it discharges into the load has unknown origin."""
    fleet = write(tmp_path / "fleet.csv", f"{FLEET_HEADER}\nsolo,10000,3000,3000,100,0,0.9\n")
    data = write(tmp_path / "series.csv", flat_series({"solo": (0, 500)}))
    report = run_study(load_study(fleet, data))
    solo = report["members"]["solo"]
    assert solo["from_battery"] > 2.5  # 6 h × 500 W, all from the battery
    assert solo["from_grid"] == pytest.approx(0, abs=1e-6)
    assert solo["liberated"] == 0
    assert solo["self_sufficiency"] == 0
    assert report["coop"]["liberated"] == 0


def test_starting_charge_of_an_offered_battery_is_not_liberated_for_peers(tmp_path: Path) -> None:
    fleet = write(tmp_path / "fleet.csv", f"{FLEET_HEADER},offered\n"
                  "owner,10000,3000,3000,100,0,0.9,1\nneighbour,0,0,0,0,0,1,0\n")
    data = write(tmp_path / "series.csv", flat_series({"owner": (0, 200), "neighbour": (0, 500)}))
    report = run_study(load_study(fleet, data))
    assert report["coop"]["from_battery"] > 1.0
    assert report["coop"]["liberated"] == 0


def test_shed_load_lowers_self_sufficiency(tmp_path: Path) -> None:
    """Islanded: ``dark`` has no PV and gets only the 300 W its neighbour spares of 1,200 W."""
    fleet = write(tmp_path / "fleet.csv", f"{FLEET_HEADER}\nsunny,0,0,0,0,0,1\n"
                  "dark,0,0,0,0,0,1\n")
    data = write(tmp_path / "series.csv",
                 flat_series({"sunny": (700, 400), "dark": (0, 1200)}))
    report = run_study(load_study(fleet, data), island=True)
    dark, sunny, coop = report["members"]["dark"], report["members"]["sunny"], report["coop"]
    assert dark["shed"] == pytest.approx(dark["load"] * 3 / 4, rel=1e-6)
    assert dark["self_sufficiency"] <= 1 / 3
    assert dark["self_sufficiency"] == pytest.approx(0.25, abs=1e-6)
    assert sunny["self_sufficiency"] == pytest.approx(1.0)
    assert coop["self_sufficiency"] < 1
    assert coop["self_sufficiency"] == pytest.approx(coop["liberated"] / coop["load"], abs=1e-5)
    assert coop["jain_fairness"] < 1
    assert coop["jain_fairness"] == pytest.approx(1.25**2 / (2 * (1 + 0.25**2)), abs=1e-4)


def test_cli_text_reports_shed_and_self_sufficiency(tmp_path: Path) -> None:
    fleet = write(tmp_path / "fleet.csv", f"{FLEET_HEADER}\nsunny,0,0,0,0,0,1\n"
                  "dark,0,0,0,0,0,1\nidle,0,0,0,0,0,1\n")
    data = write(tmp_path / "series.csv", flat_series(
        {"sunny": (700, 400), "dark": (0, 1200), "idle": (0, 0)}))
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(fleet),
         "--series", str(data), "--island"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()[1:6]
    assert header.split() == ["member", "load", "served", "shed", "liberated", "from_peers",
                              "to_peers", "from_grid", "to_grid", "curtailed", "self_suff"]
    cells = {row.split()[0]: row.split()[1:] for row in rows}
    assert cells["dark"][2] == "5.400" and cells["dark"][-1] == "0.250"
    assert cells["idle"][-1] == "-"  # no load, no self-sufficiency
    assert float(cells["COOP"][-1]) == pytest.approx(700 / 1600, abs=1e-3)
    assert "self-sufficiency 0.4375 (liberated / load" in out.stdout


@pytest.mark.parametrize(("policy", "column"), [("static", "key"), ("tiers", "tier")])
def test_cli_policy_needs_its_fleet_column(files, policy: str, column: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(files[0]),
         "--series", str(files[1]), "--policy", policy], capture_output=True, text=True,
        timeout=120)
    assert out.returncode == 2
    assert f"{files[0]}: missing column {column}" in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("policy", "column", "values"),
                         [("static", "key", ("2", "1", "0.5")), ("tiers", "tier", ("0", "1", "1"))])
def test_cli_policy_with_its_fleet_column_runs(files, policy: str, column: str,
                                               values: tuple[str, ...]) -> None:
    header, *rows = files[0].read_text().splitlines()
    files[0].write_text("\n".join([f"{header},{column}"]
                                  + [f"{r},{v}" for r, v in zip(rows, values, strict=True)]))
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "simulate", "--fleet", str(files[0]),
         "--series", str(files[1]), "--policy", policy, "--json"], capture_output=True,
        text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["coop"]["ticks"] == 48
