"""``commonwatt scan``: the unit-id sweep, the manufacturer check, giving up on a port
that does not speak Modbus, and no pymodbus output on the installer's terminal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from controller.scan import COMMON_UNITS, manufacturer_matches
from devices.templates.schema import template
from simulators.clock import SimClock
from simulators.household import HouseholdSpec
from simulators.modbus_server import SimulatedModbusServer
from simulators.sunspec_image import SunSpecImage
from simulators.template_device import TemplateHousehold
from tests.conftest import free_port
from tests.test_scan_cli import serving

ROOT = Path(__file__).resolve().parents[1]
SPEC = HouseholdSpec("a", "A", pv_kwp=6, annual_kwh=4000)


def cli(*argv: str, timeout: float = 60) -> tuple[int, str, str, float]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "controller.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - began


@pytest.mark.parametrize(("claimed", "maker", "match"), [
    ("Fronius", "Fronius", True),
    ("SMA Solar Technology AG", "SMA", True),
    ("SolarEdge ", "SolarEdge", True),
    ("Huawei Technologies", "Huawei", True),
    ("Fronius", "SMA", False),
    ("Commonwatt Sim", "Fronius", False),
    (None, "Fronius", True),  # nothing claimed: nothing contradicts
])
def test_manufacturer_strings_are_compared_loosely(claimed: str | None, maker: str,
                                                   match: bool) -> None:
    assert manufacturer_matches(claimed, maker) is match


def meter(maker: str, serial: str) -> SunSpecImage:
    image = SunSpecImage([
        (1, {"Mn": maker, "Md": "Smart Meter TS 65A-3", "Vr": "1.0", "SN": serial, "DA": 1}),
        (203, {"W_SF": 0, "TotWh_SF": 0, "Hz_SF": -2, "Hz": 5000, "A_SF": -2, "V_SF": -1,
               "VA_SF": 0, "VAR_SF": 0, "PF_SF": -2, "TotVAh_SF": 0, "TotVArh_SF": 0}),
    ])
    image.set(203, "W", 812.0)
    return image


class FroniusLike:
    """A SunSpec meter behind a GEN24 (unit 200) and one behind a Datamanager (unit 240)."""

    def __init__(self, maker: str) -> None:
        self.server = SimulatedModbusServer(free_port(), {200: meter(maker, "GEN24-M"),
                                                          240: meter(maker, "DM2-M")})

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


def test_scan_sweeps_the_common_unit_ids_and_finds_meters_on_200_and_240() -> None:
    assert {1, 2, 3, 100, 126, 200, 240, 247} <= set(COMMON_UNITS)
    with serving(lambda: FroniusLike("Fronius")) as sim:
        code, out, err, _ = cli("scan", f"127.0.0.1:{sim.server.port}")
        code_json, js, _, _ = cli("scan", f"127.0.0.1:{sim.server.port}", "--json")
    assert code == 0 and code_json == 0, out + err
    assert err == ""
    assert "unit ids answering: 200, 240" in out
    assert 'family = "sunspec"' in out and "unit = 200" in out and "unit = 240" in out
    # The manufacturer string matches the Fronius family: its installer notes are shown.
    notes = out.split("Notes for fronius-sunspec")[1].split("Configuration lines")[0]
    assert "240" in notes and "Datamanager" in notes and "201" in notes
    result = json.loads(js)
    assert [u["unit"] for u in result["units"] if u["answers"]] == [200, 240]
    assert {(s["kind"], s["unit"]) for s in result["suggested"]} == {("meter", 200),
                                                                    ("meter", 240)}
    assert result["vendor_notes"] == ["fronius-sunspec"]


def test_scan_suggests_no_vendor_family_whose_manufacturer_differs() -> None:
    with serving(lambda: FroniusLike("Some Other Maker GmbH")) as sim:
        code, out, err, _ = cli("scan", f"127.0.0.1:{sim.server.port}", "--json")
    result = json.loads(out)
    assert code == 0 and err == ""
    assert result["vendor_notes"] == [] and result["templates"] == []
    assert {s["family"] for s in result["suggested"]} == {"sunspec"}


@contextmanager
def tcp_server(reply: bytes | None) -> Iterator[int]:
    """Accepts connections; answers every request with ``reply`` (None: stays silent)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        conns = []
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.settimeout(0.05)
                conns.append(conn)
            except OSError:
                pass
            for conn in list(conns):
                try:
                    if conn.recv(256) and reply is not None:
                        conn.sendall(reply)
                except OSError:
                    pass
        for conn in conns:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"],
                         ids=["silent", "speaks-http"])
def test_scan_gives_up_on_a_port_that_does_not_speak_modbus(reply: bytes | None) -> None:
    with tcp_server(reply) as port:
        code, out, err, took = cli("scan", f"127.0.0.1:{port}")
    assert code == 1
    assert out.strip().count("\n") == 0, out  # one line
    assert "no Modbus answer" in out and "3 s" in out
    assert err == "", err  # no pymodbus hex dumps or warnings
    assert took < 3.0 + 3.0, took  # the budget plus the interpreter's start


def test_scan_of_a_refused_port_is_one_line() -> None:
    code, out, err, _ = cli("scan", f"127.0.0.1:{free_port()}")
    assert code == 1 and err == ""
    assert out.strip().count("\n") == 0 and out.strip().endswith(": connection refused")


def test_read_prints_no_pymodbus_output_either(tmp_path: Path) -> None:
    with tcp_server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        config = tmp_path / "coop.toml"
        config.write_text(f"""
[storage]
ledger = "{(tmp_path / 'l.sqlite').as_posix()}"
[[members]]
id = "a"
name = "A"
devices = [{{ kind = "meter", family = "eastron-sdm630", host = "127.0.0.1", port = {port} }}]
""")
        code, out, err, _ = cli("read", str(config))
    assert code == 1 and "a/meter" in out and "FAILED" in out
    assert err == "", err


@pytest.mark.parametrize(("code", "family"), [(71, "carlo-gavazzi-em24"),
                                              (1650, "carlo-gavazzi-em24-ethernet")])
def test_scan_tells_the_two_em24_maps_apart_by_identification_code(code: int,
                                                                  family: str) -> None:
    make = lambda: TemplateHousehold(  # noqa: E731
        template(family), SPEC, free_port(), SimClock(speed=0), {"model": str(code)})
    with serving(make) as sim:
        sim.image.set("meter", "power_w", 640.0)
        _, out, err, _ = cli("scan", f"127.0.0.1:{sim.server.port}", "--json")
    result = json.loads(out)
    assert err == ""
    assert [t["family"] for t in result["templates"]] == [family]
