"""``commonwatt scan`` and ``commonwatt devices`` against simulated devices on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from controller.cli import main
from devices.templates.schema import template
from simulators.clock import SimClock
from simulators.coop import INVERTER_UNIT, SimulatedCoop
from simulators.household import HouseholdSpec, demo_households
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port
from tests.serving import serving

SPEC = HouseholdSpec("a", "A", pv_kwp=6, annual_kwh=4000, battery_wh=10_000,
                     battery_max_w=5000, soc_start_pct=60)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_finds_sunspec_models_identity_and_values(capsys) -> None:
    clock = SimClock(start_s=12 * 3600, speed=0)
    with serving(lambda: SimulatedCoop(demo_households(1), clock)) as coop:
        host, port = coop.endpoint("h01")
        code, out, _ = run_cli(capsys, "scan", f"{host}:{port}", "--unit",
                               str(INVERTER_UNIT), "--json")
        result = json.loads(out)
        code_text, text, _ = run_cli(capsys, "scan", f"{host}:{port}")
    assert code == 0 and code_text == 0
    s = result["sunspec"]
    assert s["found"] and s["base"] == 40000 and s["serial"] == "INV-h01"
    assert s["models"] == [1, 103, 120, 123]  # common, inverter, nameplate, immediate controls
    assert s["kinds"]["pv"]["power_w"] > 0
    assert result["templates"] == []
    assert result["suggested"] == [{"kind": "pv", "family": "sunspec", "host": host,
                                    "port": port, "unit": 1}]
    assert "SunSpec at 40000" in text and 'family = "sunspec"' in text


def test_scan_recognises_a_vendor_template_by_probing(capsys) -> None:
    ident = {"model": "SUN2000-10KTL-M1", "serial": "HV2210123456"}
    make = lambda: TemplateHousehold(  # noqa: E731
        template("huawei-sun2000"), SPEC, free_port(), SimClock(speed=0), ident)
    with serving(make) as sim:
        code, out, _ = run_cli(capsys, "scan", f"127.0.0.1:{sim.server.port}", "--json")
    result = json.loads(out)
    assert code == 0
    assert not result["sunspec"]["found"]
    assert "no SunSpec marker" in result["sunspec"]["reason"]
    assert [t["family"] for t in result["templates"]] == ["huawei-sun2000"]
    found = result["templates"][0]
    assert found["identity"]["serial"] == "HV2210123456"
    assert set(found["kinds"]) == {"pv", "meter", "battery"}
    assert found["kinds"]["battery"]["soc_pct"] == pytest.approx(60.0)


def test_scan_of_nothing_says_so(capsys) -> None:
    code, out, _ = run_cli(capsys, "scan", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert code == 1 and out.strip().endswith(": connection refused")  # one line
    code, _, err = run_cli(capsys, "scan", "127.0.0.1:99999")
    assert code == 2 and "HOST:PORT" in err


def test_devices_lists_templates_and_reports_an_absent_controller(capsys) -> None:
    code, out, _ = run_cli(capsys, "devices", "--templates", "--json")
    assert code == 0 and len(json.loads(out)) >= 8
    code, _, err = run_cli(capsys, "devices", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "no controller answered" in err
