"""``[tariff]`` time-of-use periods and battery wear prices: parsed, checked, priced."""

from __future__ import annotations

import numpy as np
import pytest

from controller.config import ConfigError, parse_config
from controller.planning.money import member_wear, plan_money

BASE = """
[[members]]
id = "h01"
name = "A"
[[members.devices]]
kind = "meter"
host = "127.0.0.3"
[[members.devices]]
kind = "battery"
host = "127.0.0.1"
offered = true
{battery}
[[members]]
id = "h02"
name = "B"
[[members.devices]]
kind = "meter"
host = "127.0.0.2"

[tariff]
peer_price_per_kwh = 0.10
grid_import_per_kwh = 0.30
grid_export_per_kwh = 0.05
timezone = "Europe/Paris"
{periods}
"""
OFF_PEAK = """
[[tariff.periods]]
name = "night and day"
hours = [0, 17]
import_per_kwh = 0.20
export_per_kwh = 0.04
"""
PEAK = """
[[tariff.periods]]
name = "peak"
hours = [17, 24]
{days}
import_per_kwh = 0.40
export_per_kwh = 0.08
"""


def parse(periods: str = "", battery: str = ""):  # noqa: ANN201 - a CoopConfig
    text = BASE.format(periods=periods, battery=battery)
    if periods == "TZ":
        text = text.replace("TZ", "").replace("Europe/Paris", "Mars/Olympus")
    return parse_config(text)


def test_a_week_of_periods_prices_each_local_hour() -> None:
    config = parse(OFF_PEAK + PEAK.format(days=""))
    # 2026-01-05 is a Monday; 16:00 UTC is 17:00 in Paris (winter): peak.
    monday = 1767571200.0
    imp, exp = config.tariff.prices_at([monday, monday + 15 * 3600, monday + 16 * 3600])
    np.testing.assert_array_equal(imp, [0.20, 0.20, 0.40])
    np.testing.assert_array_equal(exp, [0.04, 0.04, 0.08])
    flat = parse().tariff.prices_at([monday])
    assert flat[0][0] == 0.30 and flat[1][0] == 0.05


@pytest.mark.parametrize(("periods", "expected"), [
    (OFF_PEAK + PEAK.format(days='weekdays = ["mon", "tue", "wed", "thu", "fri"]'),
     "tariff: periods: no price for sat 17:00, sat 18:00, sat 19:00 and 11 more hours"),
    (OFF_PEAK.replace("[0, 17]", "[0, 18]") + PEAK.format(days=""),
     "tariff: periods[1].hours: mon 17:00 is already in periods[0]"),
    (PEAK.format(days="").replace("[17, 24]", "[17, 25]"),
     "tariff.periods[0].hours"),
    (PEAK.format(days='weekdays = ["monday"]'), "tariff.periods[0].weekdays"),
    ("TZ", "tariff.timezone = 'Mars/Olympus': 'Mars/Olympus': not an IANA time zone"),
])
def test_gaps_overlaps_and_bad_values_name_the_field(periods: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(periods)
    assert expected in str(caught.value)


def test_wear_price_by_default_is_price_over_lifetime_throughput() -> None:
    config = parse(battery="price = 5400.0\ncapacity_kwh = 10.0\nrated_cycles = 6000\ndod = 0.9")
    battery = config.members[0].devices[1]
    assert battery.wear_per_kwh == pytest.approx(5400 / (10 * 0.9 * 6000))  # 0.1 per kWh
    np.testing.assert_allclose(member_wear(config.members), [0.1, np.nan])
    assert parse(battery="").members[0].devices[1].wear_per_kwh is None
    with pytest.raises(ConfigError, match="price: the wear price needs the battery's capacity"):
        parse(battery="price = 5400.0")


def test_the_plan_gets_prices_per_step_and_wear_per_wh() -> None:
    config = parse(OFF_PEAK + PEAK.format(days=""),
                   battery="price = 5400.0\ncapacity_kwh = 10.0")
    money = plan_money(config.tariff, member_wear(config.members))
    assert money is not None
    monday = 1767571200.0
    out = money(monday + 15 * 3600, 4, 900.0)  # 16:00 Paris, four quarter hours
    np.testing.assert_allclose(out["import_price"], [0.20e-3] * 4)
    out = money(monday + 15.5 * 3600, 4, 900.0)  # 16:30: two quarters off-peak, two peak
    np.testing.assert_allclose(out["import_price"], [0.20e-3, 0.20e-3, 0.40e-3, 0.40e-3])
    np.testing.assert_allclose(out["wear_price"], [0.1e-3, 0.0])
    assert plan_money(None, np.array([np.nan, np.nan])) is None


def test_the_controllers_plan_takes_the_tariff_wear_and_books_its_saving(tmp_path) -> None:  # noqa: ANN001
    from controller.planning.hook import RollingPlan

    text = BASE.format(periods=OFF_PEAK + PEAK.format(days=""),
                       battery="price = 5400.0\ncapacity_kwh = 10.0")
    config = parse_config(text.replace("[tariff]", f'[storage]\nledger = "{tmp_path}/l.sqlite"'
                                       '\n\n[dispatch]\nplan = true\n\n[tariff]'))
    plan = RollingPlan.from_config(config)
    try:
        assert plan.savings == tmp_path / "plan_savings.sqlite"
        money = plan.worker.money(1767571200.0 + 16 * 3600, 2, 900.0)
        np.testing.assert_allclose(money["import_price"], [0.40e-3] * 2)
        np.testing.assert_allclose(money["wear_price"], [0.1e-3, 0.0])
        assert plan.worker.solver.func.__name__ == "plan_and_expect"
    finally:
        plan.close()
