"""``commonwatt forecast calibrate``: the walk-forward score on a ledger booked through the
real booking and commit path, checked against the flows that were booked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.planning.calibrate import calibrate, ledger_power
from dispatch import LEDGER_FIELDS
from tests.ledger_helpers import write_ledger

MEMBERS = ("h01", "h02", "h03")
STEP = 900
DAYS = 10
T0 = 1_780_000_000 // 86400 * 86400


def profiles() -> tuple[np.ndarray, np.ndarray]:
    """PV and load (W per 15 min) over ten days: a clear or cloudy day, a noisy evening."""
    rng = np.random.default_rng(3)
    hours = np.arange(DAYS * 96) / 4 % 24
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    cloud = np.repeat(rng.uniform(0.2, 1.0, DAYS), 96)
    pv = (sun * cloud)[:, None] * np.array([4000.0, 2500.0, 0.0])[None, :]
    evening = np.where((hours >= 18) & (hours < 22), 2.0, 1.0)
    load = evening[:, None] * 400.0 * rng.lognormal(0, 0.3, (DAYS * 96, 3))
    return np.round(pv), np.round(load)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    path = tmp_path_factory.mktemp("cal") / "ledger.sqlite"
    pv, load = profiles()

    def cycles():  # each 15-min cycle: PV exported, load imported (Wh)
        for t in range(len(pv)):
            flows = {f: np.zeros(3) for f in LEDGER_FIELDS}
            flows["to_grid"] = pv[t] / 4
            flows["from_grid"] = load[t] / 4
            yield flows

    write_ledger(path, MEMBERS, STEP, T0, STEP, cycles())
    return path, pv, load


def test_ledger_power_is_what_was_booked(ledger) -> None:
    path, pv, load = ledger
    members, got_pv, got_load, step = ledger_power(path)
    assert members == list(MEMBERS) and step == STEP
    rows = len(got_pv)
    assert rows >= len(pv) - 2  # the last interval may still be open
    np.testing.assert_allclose(got_pv, pv[:rows], atol=4.0)  # booked in whole Wh
    np.testing.assert_allclose(got_load, load[:rows], atol=4.0)


def test_walk_forward_scores_match_an_independent_count(ledger) -> None:
    path, pv, load = ledger
    report = calibrate(path)
    _, got_pv, got_load, _ = ledger_power(path)
    truth = got_load[7 * 96:, 0]
    persistence = got_load[6 * 96:-96, 0]
    history = np.mean([got_load[(7 - k) * 96:len(got_load) - k * 96, 0] for k in range(1, 8)],
                      axis=0)
    row = report["load"]["members"]["h01"]
    assert row["mae_w"] == pytest.approx(np.abs(history - truth).mean(), abs=0.01)
    assert row["persistence_mae_w"] == pytest.approx(np.abs(persistence - truth).mean(),
                                                     abs=0.01)
    assert row["skill"] > 0  # a week's mean beats yesterday on noisy load
    assert report["pv"]["members"]["h03"]["skill"] is None  # no PV: nothing to beat
    assert report["pv"]["coop"]["mae_w"] > 0


def test_cli(ledger, tmp_path: Path) -> None:
    config = tmp_path / "coop.toml"
    config.write_text(f'[storage]\nledger = "{ledger[0]}"\n[[members]]\nid = "h01"\n'
                      'name = "Ada"\ndevices = [{ kind = "meter", host = "127.0.0.1", '
                      'port = 5020, unit = 2 }]\n')
    args = [sys.executable, "-m", "controller.cli", "forecast", "calibrate", str(config)]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "COOP" in text and "persistence" in text
    report = json.loads(subprocess.run([*args, "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert set(report) >= {"pv", "load", "days"}
    short = tmp_path / "short.toml"
    short.write_text(config.read_text().replace(str(ledger[0]), str(tmp_path / "none.sqlite")))
    failed = subprocess.run([*args[:-1], str(short)], capture_output=True, text=True)
    assert failed.returncode == 2 and "no ledger" in failed.stderr
