"""The API contract: bad requests name the field, OpenAPI is served, health reports staleness."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from controller.accounts.figures import METER_IN, METER_OUT
from controller.ledger import CycleEnergy, IntervalBook, LedgerReader, LedgerWriter
from controller.ledger.accumulator import CarryState
from dispatch import LEDGER_FIELDS
from tests.auth_helpers import bearer, public_app
from tests.ledger_helpers import write_ledger


def _cycle() -> dict[str, np.ndarray]:
    flows = {f: np.array([10.0, 20.0]) for f in LEDGER_FIELDS}
    flows["to_peers"] = np.array([30.0, 0.0])
    flows["from_peers"] = np.array([0.0, 30.0])
    return flows


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    # 10 one-minute cycles in a 60 s settlement ledger: each closes its interval
    write_ledger(tmp_path / "ledger.sqlite", ("h01", "h02"), 60, 1020.0, 60.0,
                 [_cycle() for _ in range(10)])
    return TestClient(public_app(LedgerReader(tmp_path / "ledger.sqlite")))


def test_members_list(client: TestClient) -> None:
    assert client.get("/api/v1/members").json() == [{"id": "h01", "name": "H01"},
                                                     {"id": "h02", "name": "H02"}]


def test_energy_window(client: TestClient) -> None:
    whole = client.get("/api/v1/members/h02/energy").json()
    assert whole["intervals"] == 10
    assert whole["from_peers_kwh"] == 0.3
    # liberated = own_pv_used + from_battery_coop + from_peers + from_coop_battery_coop
    assert whole["liberated_kwh"] == round(10 * (20 + 20 + 30 + 20) / 1000, 3)
    # served = own_pv_used + from_battery + from_peers + from_coop_battery + from_grid
    assert whole["served_kwh"] == round(10 * (20 + 20 + 30 + 20 + 20) / 1000, 3)
    assert whole["self_sufficiency"] == round(90 / 130, 4)  # liberated / load (20 Wh shed)
    part = client.get("/api/v1/members/h02/energy",
                      params={"from": "1970-01-01T00:16:40Z", "to": 1000 + 200}).json()
    assert part["intervals"] == 3


@pytest.mark.parametrize(
    ("url", "params", "status", "needle"),
    [
        ("/api/v1/members/nobody/energy", {}, 404, "member_id 'nobody'"),
        ("/api/v1/members/h01/energy", {"from": "yesterday"}, 422, "\"query\",\"from\""),
        ("/api/v1/members/h01/energy", {"to": "2026-13-45"}, 422, "\"query\",\"to\""),
        ("/api/v1/members/h01/energy", {"from": 2000, "to": 1000}, 422, "'from' must not be"),
    ],
)
def test_bad_requests_name_the_field(client: TestClient, url, params, status, needle) -> None:
    response = client.get(url, params=params)
    assert response.status_code == status
    assert needle in response.text


def test_openapi_is_served_and_lists_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == "1.0.0"
    for path in ("/api/v1/members", "/api/v1/members/{member_id}/energy",
                 "/api/v1/coop/summary", "/healthz"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_summary_and_health_without_a_running_controller(client: TestClient) -> None:
    summary = client.get("/api/v1/coop/summary").json()
    assert summary["members"] == 2
    assert summary["shared_peer_to_peer_kwh"] == summary["from_peers_kwh"] == 0.3
    assert set(summary["by_member"]) == {"h01", "h02"}
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ledger-only"
    assert client.get("/").status_code == 200


class _StaleController:
    cycle_s = 1.0
    settlement_s = 900

    def devices(self):
        return [{"name": "h01/meter", "state": "unknown"}]

    def last_cycle_age_s(self):
        return 30.0

    def ledger_status(self):
        return {"state": "ok", "reason": None}

    def unwritten_wh(self, after_ts):
        return {}

    def open_interval_start(self):
        return None


def test_healthz_reports_staleness(tmp_path: Path) -> None:
    LedgerWriter(tmp_path / "l.sqlite", 900, []).close()
    stale = TestClient(public_app(LedgerReader(tmp_path / "l.sqlite"), live=_StaleController()))
    response = stale.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "stale"
    assert response.json()["devices"]["unknown"] == 1


class _LiveController(_StaleController):
    """A running controller whose open interval holds 500 Wh from peers for h02."""

    def __init__(self, ledger_state: str = "ok") -> None:
        self.state = ledger_state

    def devices(self):
        return [{"name": "h01/meter", "state": "ok"}]

    def last_cycle_age_s(self):
        return 0.5

    def ledger_status(self):
        return {"state": self.state, "reason": None if self.state == "ok" else
                "OperationalError: database or disk is full"}

    def unwritten_wh(self, after_ts):
        return {"h02": {"from_peers": 500}, "h01": {"to_peers": 500}}

    def open_interval_start(self):
        return 1620


def test_live_totals_include_the_open_interval_marked_provisional(tmp_path: Path) -> None:
    write_ledger(tmp_path / "l.sqlite", ("h01", "h02"), 60, 1020.0, 60.0,
                 [_cycle() for _ in range(10)])
    live = TestClient(public_app(LedgerReader(tmp_path / "l.sqlite"), live=_LiveController()))
    summary = live.get("/api/v1/coop/summary").json()
    assert summary["provisional"] is True and summary["committed_until"] == 1620
    assert summary["from_peers_kwh"] == 0.3 + 0.5 == summary["to_peers_kwh"]
    assert summary["by_member"]["h02"]["from_peers_kwh"] == 0.8
    energy = live.get("/api/v1/members/h02/energy").json()
    assert energy["provisional"] and energy["from_peers_kwh"] == 0.8
    # a window that ends in the past is committed only
    closed = live.get("/api/v1/members/h02/energy", params={"to": 1620}).json()
    assert not closed["provisional"] and closed["from_peers_kwh"] == 0.3


def test_healthz_says_when_the_ledger_is_failing(tmp_path: Path) -> None:
    LedgerWriter(tmp_path / "l.sqlite", 900, []).close()
    live = TestClient(public_app(LedgerReader(tmp_path / "l.sqlite"),
                                 live=_LiveController("failing")))
    response = live.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ledger"] == "failing" and "disk is full" in body["ledger_detail"]["reason"]


def _ledger_with_a_fast_import_counter(tmp_path: Path, flows: dict, t: float,
                                       cycles: int) -> Path:
    """A ledger of ``cycles`` minute-cycles of ``flows`` for h01 and h02, whose meters'
    counters count what crossed them, h01's import counter 30 % fast."""
    counters = np.array([[0.0, 0.0], [0.0, 0.0], [np.nan, np.nan]])
    path = tmp_path / "l.sqlite"
    writer = LedgerWriter(path, 60, [("h01", "H01"), ("h02", "H02")])
    book = IntervalBook(("h01", "h02"), 60, None, CarryState.fresh(2))
    meter_in = tuple(f for f in METER_IN if f in flows)
    meter_out = tuple(f for f in METER_OUT if f in flows)
    for _ in range(cycles):
        counters[0] += sum(flows[f] for f in meter_in) * np.array([1.3, 1.0])
        counters[1] += sum(flows[f] for f in meter_out)
        for interval, parts in book.add_cycle(CycleEnergy(t, t + 60, flows, np.ones(2, bool),
                                                          counters.copy())):
            writer.commit(interval, parts)
        t += 60
    writer.close()
    return path


def test_the_installer_view_flags_a_meter_whose_counters_drift(tmp_path: Path) -> None:
    """h01's import counter ran 30 % fast for the last day; h02's agrees with the books."""
    now = time.time() // 60 * 60
    path = _ledger_with_a_fast_import_counter(tmp_path, _cycle(), now - 3600, 60)

    class _Installer(_LiveController):
        def devices(self):
            return [{"name": "h01/meter", "kind": "meter", "state": "ok"},
                    {"name": "h02/meter", "kind": "meter", "state": "ok"},
                    {"name": "h02/pv", "kind": "pv", "state": "ok"}]

    reader = LedgerReader(path)
    view = TestClient(public_app(reader, live=_Installer())).get(
        "/api/v1/devices", headers=bearer(reader, "installer"))
    by_name = {d["name"]: d for d in view.json()}
    assert by_name["h01/meter"]["drift_flagged"] is True
    assert by_name["h01/meter"]["drift"]["import"]["drift_kwh"] > 0
    assert by_name["h02/meter"]["drift_flagged"] is False
    assert "drift" not in by_name["h02/pv"]
    from controller.devices_cmd import format_devices

    text = format_devices([{**d, "last_good_age_s": 0.1, "errors_total": 0,
                            "backoff_remaining_s": 0.0, "endpoint": "x"} for d in view.json()])
    assert "DRIFT import" in text and text.count("DRIFT") == 1


def test_the_installer_view_names_a_meter_whose_counters_and_power_disagree(
        tmp_path: Path) -> None:
    """h01's import counter runs 30 % above what its measured power says (150 Wh an
    interval, past settle's 10 % and 50 Wh): settlement flags it, and the installer's
    device entry names the meter, the intervals and the drift in Wh; h02's is null."""
    flows = {f: v * 10.0 for f, v in _cycle().items()}
    path = _ledger_with_a_fast_import_counter(tmp_path, flows, 1_800_000_000.0, 10)

    class _Installer(_LiveController):
        def devices(self):
            return [{"name": "h01/meter", "kind": "meter", "state": "ok"},
                    {"name": "h02/meter", "kind": "meter", "state": "ok"}]

    reader = LedgerReader(path)
    flagged_rows = [r for r in reader.intervals() if r["flagged"]]
    view = TestClient(public_app(reader, live=_Installer())).get(
        "/api/v1/devices", headers=bearer(reader, "installer"))
    by_name = {d["name"]: d for d in view.json()}
    h01 = by_name["h01/meter"]["counters_vs_power"]
    # every settled interval (the first spans no counter reading) flagged, 150 Wh each
    assert h01["intervals"] == len(flagged_rows) == 9
    assert h01["import_drift_wh"] == 9 * 150 and h01["export_drift_wh"] == 0
    assert h01["last_flagged_ts"] == flagged_rows[-1]["start_ts"]
    assert by_name["h02/meter"]["counters_vs_power"] is None
    from controller.devices_cmd import format_devices

    text = format_devices([{**d, "last_good_age_s": 0.1, "errors_total": 0,
                            "backoff_remaining_s": 0.0, "endpoint": "x"} for d in view.json()])
    assert text.count("COUNTERS vs POWER") == 1 and "import +1350 Wh" in text
