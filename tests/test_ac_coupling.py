"""The factor-1.0 rule: the coop refuses to island when AC-coupled PV exceeds the
grid-formers' rating, and says so in the refusal it records."""

from __future__ import annotations

import pytest

from controller.config import parse_config
from controller.island.ac_coupling import coupling, standing_refusals
from controller.island.grid_model import GridInputs, Refusal
from controller.island.live import GridSupervisor

CONFIG = """
name = "Factor one"
[[members]]
id = "h01"
name = "One"
devices = [
  {{ kind = "meter", host = "127.0.0.1", port = 5020, unit = 1 }},
  {{ kind = "battery", host = "127.0.0.1", port = 5020, unit = 3, max_power_w = {former},
     grid_forming = true }},
  {{ kind = "pv", family = "huawei-sun2000", host = "127.0.0.1", port = 5021,
     params = {{ rated_w = 6000 }} }},
]
[[members]]
id = "h02"
name = "Two"
devices = [
  {{ kind = "meter", host = "127.0.0.1", port = 5022, unit = 1 }},
  {{ kind = "pv", host = "127.0.0.1", port = 5022, unit = 2 }},
]
[site]
latitude = 45.76
longitude = 4.84
tz = "+01:00"
[[site.arrays]]
member = "h02"
kwp = 5.0
"""


def config(former: int):  # noqa: ANN201
    return parse_config(CONFIG.format(former=former).replace("\n     ", " "))


@pytest.mark.parametrize(("former", "ok"), [(10000, False), (11000, True), (12000, True)])
def test_ac_coupled_pv_against_the_grid_formers(former: int, ok: bool) -> None:
    # h01's inverter is rated 6 kW AC; h02's has no rating, so its 5 kWp array counts: 11 kVA.
    c = coupling(config(former))
    assert c.pv_va == 11000.0 and c.grid_former_va == former and c.ok is ok
    if not ok:
        assert c.refusal() == ("AC-coupled PV 11.0 kVA exceeds the grid-formers' 10.0 kVA "
                               "(factor-1.0 rule: the grid-formers must be able to absorb all "
                               "AC-coupled PV when the load drops)")


def test_the_island_command_is_refused_and_the_refusal_recorded() -> None:
    records = []
    sup = GridSupervisor(on_record=records.append)
    sup.standing_refusals = standing_refusals(config(10000))
    sup.update(GridInputs("on", True, 90.0), 0.0)
    answer = sup.request_island("Ada (coordinator)", 0.0, 3600.0, 50.0, 0.0)
    assert isinstance(answer, Refusal)
    assert answer.reasons[0].startswith("REFUSE_AC_COUPLING: AC-coupled PV 11.0 kVA exceeds")
    assert records[-1].refused and "factor-1.0 rule" in records[-1].cause
    # Within the rule the same command is accepted.
    sup = GridSupervisor()
    sup.standing_refusals = standing_refusals(config(12000))
    sup.update(GridInputs("on", True, 90.0), 0.0)
    assert not isinstance(sup.request_island("Ada", 0.0, 3600.0, 50.0, 0.0), Refusal)
