"""The operator's view: /healthz says 503 when nothing can be trusted, and Unix times in
queries are seconds only (milliseconds are refused, never silently reinterpreted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from controller.accounts import AccountsInputError, parse_time
from controller.ledger import LedgerReader, LedgerWriter
from dispatch import LEDGER_FIELDS
from tests.auth_helpers import public_app
from tests.ledger_helpers import write_ledger


class _Controller:
    cycle_s = 1.0
    settlement_s = 900

    def __init__(self, states: list[str], ledger: str = "ok") -> None:
        self.states, self.ledger = states, ledger

    def devices(self) -> list[dict]:
        return [{"name": f"h{i}/meter", "state": s} for i, s in enumerate(self.states)]

    def last_cycle_age_s(self) -> float:
        return 0.5

    def ledger_status(self) -> dict:
        return {"state": self.ledger, "reason": None}

    def unwritten_wh(self, after_ts: float) -> dict:
        return {}

    def open_interval_start(self) -> None:
        return None


@pytest.mark.parametrize(("states", "ledger", "code", "status"), [
    (["ok", "ok"], "ok", 200, "ok"),
    (["ok", "unknown"], "ok", 200, "degraded"),
    (["unknown", "backoff"], "ok", 503, "no-device-ok"),
    (["ok", "ok"], "failing", 503, "ledger-failing"),
])
def test_healthz(tmp_path: Path, states: list[str], ledger: str, code: int,
                 status: str) -> None:
    LedgerWriter(tmp_path / "l.sqlite", 900, []).close()
    client = TestClient(public_app(LedgerReader(tmp_path / "l.sqlite"),
                                   live=_Controller(states, ledger)))
    response = client.get("/healthz")
    assert (response.status_code, response.json()["status"]) == (code, status)


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    flows = {f: np.array([10.0, 20.0]) for f in LEDGER_FIELDS}
    write_ledger(tmp_path / "ledger.sqlite", ("h01", "h02"), 60, 1020.0, 60.0,
                 [flows for _ in range(10)])
    return TestClient(public_app(LedgerReader(tmp_path / "ledger.sqlite")))


@pytest.mark.parametrize("url", ["/api/v1/members/h01/energy", "/api/v1/members/h01/series"])
@pytest.mark.parametrize("param", ["from", "to"])
@pytest.mark.parametrize("value", ["1700000000000", "1700000000000.5", "-1700000000000",
                                   "1700000000000000"])
def test_milliseconds_are_refused_naming_the_parameter(client: TestClient, url: str,
                                                       param: str, value: str) -> None:
    response = client.get(url, params={param: value})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", param]
    assert f"query parameter '{param}'" in detail[0]["msg"]
    assert "looks like milliseconds" in detail[0]["msg"]


def test_seconds_and_iso_still_work(client: TestClient) -> None:
    for params in ({"from": "1000", "to": "1200"}, {"from": 1000.0, "to": 1200},
                   {"from": "1970-01-01T00:16:40Z", "to": "1970-01-01T00:20:00"}):
        response = client.get("/api/v1/members/h02/energy", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["intervals"] == 3


def test_parse_time_refuses_milliseconds_naming_the_field() -> None:
    assert parse_time("1700000000", "--from") == 1_700_000_000
    with pytest.raises(AccountsInputError, match=r"--to = '1700000000000': looks like milli"):
        parse_time("1700000000000", "--to")
