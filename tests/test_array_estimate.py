"""A PV member without ``[[site.arrays]]``: its array estimated from the ledger's history,
stated by ``config check`` and ``island plan``, or an error naming the member and why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from controller.cli import main
from controller.config import ConfigError, parse_config
from controller.island.site import resolve
from controller.island_day.array_estimate import MIN_DAYS, kwp_from_history
from dispatch.rounding import LEDGER_FIELDS
from simulators.profiles import _tmy, pv_w_per_kwp
from tests.ledger_helpers import write_ledger

#: A clear day of 1 kWp by local hour, Wh: daylight from 06:00 to 18:00.
CLEAR = np.clip(np.sin((np.arange(24) - 6) / 12 * np.pi), 0, None) * 700.0
NIGHT, NOON = 2, 12


def history(kwp: float, index: list[float], drop: tuple[int, int] | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """One member's booked PV (1 × days × 24) at ``kwp`` × the days' clear-sky ``index``."""
    clear = np.tile(CLEAR, (len(index), 1))
    pv = kwp * clear * np.array(index)[:, None]
    if drop is not None:
        pv[drop] = np.nan
    return pv[None], clear


@pytest.mark.parametrize(("kwp", "index", "drop", "expected_kwp", "days"), [
    (4.0, [1.0] * 5, None, 4.0, 5),                    # every day clear
    (4.0, [0.3, 0.5, 1.0, 0.4, 0.2, 1.0, 0.6], None, 4.0, 7),  # the clear days' level
    (6.0, [0.5] * 5, None, 3.0, 5),                    # never clear: reads low (safe side)
    (4.0, [1.0] * (MIN_DAYS - 1), None, np.nan, MIN_DAYS - 1),  # too few days
    (4.0, [1.0] * MIN_DAYS, (0, NOON), np.nan, MIN_DAYS - 1),   # a daylight hour missing
    (4.0, [1.0] * MIN_DAYS, (0, NIGHT), 4.0, MIN_DAYS),        # a night hour is no loss
    (4.0, [0.0] * 5, None, np.nan, 5),                 # booked, but never any PV
])
def test_the_array_is_the_clear_days_level_over_whole_days(
        kwp: float, index: list[float], drop: tuple[int, int] | None, expected_kwp: float,
        days: int) -> None:
    pv, clear = history(kwp, index, drop)
    got, counted = kwp_from_history(pv, clear)
    assert counted.tolist() == [days]
    np.testing.assert_allclose(got, [expected_kwp], rtol=0.06)


TOML = """
name = "Greensboro test coop"
[storage]
ledger = "{ledger}"
[ledger]
settlement_s = 3600
[site]
latitude = {lat}
longitude = {lon}
tz = "-05:00"
altitude_m = {alt}
{arrays}
"""


def coop_toml(ledger: Path, members: dict[str, bool], arrays: str = "") -> str:
    """A coop whose members have a PV inverter where ``members`` says True."""
    _, meta = _tmy()
    text = TOML.format(ledger=ledger, lat=meta["latitude"], lon=meta["longitude"],
                       alt=meta["altitude"], arrays=arrays)
    for i, (member, pv) in enumerate(members.items()):
        text += f'\n[[members]]\nid = "{member}"\nname = "{member}"\n'
        kinds = ("meter", "pv") if pv else ("meter",)
        for unit, kind in enumerate(kinds, start=1):
            text += (f'  [[members.devices]]\n  kind = "{kind}"\n  host = "127.0.0.1"\n'
                     f"  port = {15020 + i}\n  unit = {unit}\n")
    return text


def test_without_history_the_error_names_the_member_and_why(tmp_path: Path) -> None:
    config = parse_config(coop_toml(tmp_path / "ledger.sqlite", {"h01": True, "h02": False}),
                          "coop.toml")
    assert config.site is not None
    with pytest.raises(ConfigError) as raised:
        resolve(config, config.site, config.island, "coop.toml",
                no_array={"h01": "there is no ledger at /x/ledger.sqlite to estimate one from"})
    message = str(raised.value)
    assert message.startswith("coop.toml: site.arrays: member 'h01' (members[0]) has a PV "
                              "inverter but no [[site.arrays]] entry, and none could be "
                              "estimated: there is no ledger at /x/ledger.sqlite")
    assert "h02" not in message  # no inverter, no array needed


#: The simulator's households' kWp (simulators.household.demo_households draws from these).
KWP = {"h01": 3.0, "h02": 9.0}
DAYS = 10
PLAN_DOY = 181  # 1 July of the typical year


def test_a_ledger_with_history_gives_the_simulators_kwp_and_the_plan_states_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The ledger books what the simulator's inverters made over ten days of its typical
    year (pvlib's Greensboro TMY3, the demo's weather); the estimate is held to the
    simulator's own kWp within the spread measured over the year (module docstring)."""
    tz = timezone(timedelta(hours=-5))
    plan_day = datetime(2026, 1, 1, tzinfo=tz) + timedelta(days=PLAN_DOY)
    ids = (*KWP, "h03")  # h03 has an inverter but nothing booked
    kwp = np.array([*KWP.values(), 0.0])
    cycles = []
    for day in range(PLAN_DOY - DAYS, PLAN_DOY):
        hourly = pv_w_per_kwp(day).reshape(24, 60).mean(axis=1)  # the simulator's W per kWp
        for hour in range(24):
            flows = {f: np.zeros(len(ids)) for f in LEDGER_FIELDS}
            flows["own_pv_used"] = kwp * hourly[hour]  # Wh in the hour
            cycles.append(flows)
    ledger = tmp_path / "ledger.sqlite"
    write_ledger(ledger, ids[:2], 3600, (plan_day - timedelta(days=DAYS)).timestamp(),
                 3600.0, [{f: v[:2] for f, v in c.items()} for c in cycles])
    config = tmp_path / "coop.toml"
    config.write_text(coop_toml(ledger, dict.fromkeys(ids, True)), encoding="utf-8")
    start = plan_day.isoformat()

    assert main(["island", "plan", str(config), "--start", start, "--hours", "24",
                 "--no-odds", "--json"]) == 2
    said = capsys.readouterr().err
    assert ("member 'h03' (members[2]) has a PV inverter but no [[site.arrays]] entry, and "
            "none could be estimated: the ledger has 0 whole days of its PV") in said

    config.write_text(coop_toml(ledger, dict.fromkeys(ids, True), arrays=(
        '[[site.arrays]]\nmember = "h03"\nkwp = 2.0\n')), encoding="utf-8")
    assert main(["island", "plan", str(config), "--start", start, "--hours", "24",
                 "--no-odds", "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    for member, true_kwp in KWP.items():
        stated = next(n for n in notes if n.startswith(f"{member}: array estimated from "
                                                       f"{DAYS} days of history: "))
        estimated = float(stated.split(": ")[2].split(" kWp")[0])
        # the measured spread, plus the statement's rounding to 0.1 kWp
        assert abs(estimated - true_kwp) <= 0.057 * true_kwp + 0.05, stated
    assert not any(n.startswith("h03") for n in notes)  # its array is written
