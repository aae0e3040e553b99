"""Who sees what: every route against every role, tokens that expire or are revoked, the
404 that keeps membership private, pseudonyms, and web login through a real server."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ROUTE_POLICY
from controller.accounts import pseudonym
from controller.accounts.export import pseudonym_salt
from controller.config import CoopConfig, parse_config
from controller.governance import TokenStore
from controller.governance.tokens import ONCE_TTL_S
from controller.island.live import GridSupervisor
from controller.ledger import LedgerReader
from dispatch import LEDGER_FIELDS
from tests.accounts_ledgers import config_text
from tests.ledger_helpers import write_ledger

MEMBERS = ("h01", "h02", "h03")


class _Live:
    """Enough of a running controller for every route: devices, grid supervisor, clock."""

    cycle_s = 1.0
    settlement_s = 60

    def __init__(self) -> None:
        self.supervisor = GridSupervisor()

    def devices(self):
        return [{"name": f"{m}/meter", "kind": "meter", "state": "ok"} for m in MEMBERS]

    def last_cycle_age_s(self):
        return 0.1

    def ledger_status(self):
        return {"state": "ok"}

    def unwritten_wh(self, after_ts):
        return {}

    def open_interval_start(self):
        return None

    def grid_supervisor(self) -> GridSupervisor:
        return self.supervisor

    def now(self) -> float:
        return time.time()


def _flows() -> dict[str, np.ndarray]:
    return {f: np.array([10.0, 20.0, 30.0]) for f in LEDGER_FIELDS}


@pytest.fixture()
def coop(tmp_path: Path) -> tuple[LedgerReader, CoopConfig]:
    ledger = tmp_path / "ledger.sqlite"
    write_ledger(ledger, MEMBERS, 60, 1020.0, 60.0, [_flows() for _ in range(5)])
    text = config_text(ledger, MEMBERS).replace('name = "H01"\n', 'name = "H01"\npublic = true\n')
    return LedgerReader(ledger), parse_config(text)


@pytest.fixture()
def app(coop: tuple[LedgerReader, CoopConfig]) -> FastAPI:
    reader, config = coop
    return create_app(reader, _Live(), config)


def _token(reader: LedgerReader, role: str, member: str | None = None,
           lifetime_s: float = 3600.0, label: str = "someone") -> tuple[str, str]:
    token, secret = TokenStore.beside(reader.path).create(role, member, label,  # type: ignore[arg-type]
                                                          time.time() + lifetime_s)
    return token.id, secret


def _headers(secret: str | None) -> dict[str, str]:
    return {} if secret is None else {"Authorization": f"Bearer {secret}"}


ISLAND = {"requested_by": "x", "hours": 1}
OVERRIDE = {"kind": "battery_setpoint", "member": "h02", "power_w": 500, "minutes": 10}
OPTOUT = {"load": "load1", "minutes": 10}
#: (method, path, body) → expected status for public, member h02, installer, coordinator.
#: A remote public caller (not loopback). 409 on the island command is "allowed, refused by
#: the grid state machine" (the fake controller has read no devices).
TABLE = [
    ("GET", "/", None, (200, 200, 200, 200)),
    ("GET", "/island", None, (200, 200, 200, 200)),
    ("GET", "/me", None, (200, 200, 200, 200)),
    ("GET", "/coop", None, (200, 200, 200, 200)),
    ("GET", "/installer", None, (200, 200, 200, 200)),
    ("GET", "/assets/commonwatt.js", None, (200, 200, 200, 200)),
    ("GET", "/assets/nothing.js", None, (404, 404, 404, 404)),
    ("GET", "/login", None, (200, 200, 200, 200)),
    ("GET", "/healthz", None, (200, 200, 200, 200)),
    ("GET", "/openapi.json", None, (200, 200, 200, 200)),
    ("GET", "/docs", None, (200, 200, 200, 200)),
    ("GET", "/redoc", None, (200, 200, 200, 200)),
    ("GET", "/docs/oauth2-redirect", None, (200, 200, 200, 200)),
    ("GET", "/metrics", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/live", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/whoami", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/clock", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/members", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/coop/summary", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/coop/report?month=1970-01", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/audit", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/audit/verify", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/island", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/island/transitions", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/island/plan/progress", None, (404, 404, 404, 404)),  # no plan saved
    # h01 is public, h02 is the member token's own, h03 is private to h03
    ("GET", "/api/v1/members/h01/energy", None, (200, 200, 200, 200)),
    ("GET", "/api/v1/members/h02/energy", None, (404, 200, 404, 404)),
    ("GET", "/api/v1/members/h03/energy", None, (404, 404, 404, 404)),
    ("GET", "/api/v1/members/h03/statement?month=1970-01", None, (404, 404, 404, 404)),
    ("GET", "/api/v1/members/h02/statement?month=1970-01", None, (404, 200, 404, 404)),
    ("GET", "/api/v1/members/h03/series", None, (404, 404, 404, 404)),
    ("GET", "/api/v1/members/h02/series", None, (404, 200, 404, 404)),
    ("GET", "/api/v1/members/nobody/energy", None, (404, 404, 404, 404)),
    ("GET", "/api/v1/devices", None, (401, 403, 200, 200)),
    ("GET", "/api/v1/island/plan", None, (401, 403, 404, 404)),  # allowed, but no plan
    ("POST", "/api/v1/island/command", ISLAND, (401, 403, 403, 409)),
    ("POST", "/api/v1/island/return", {"requested_by": "x"}, (401, 403, 403, 409)),
    # Overrides: the coordinator's alone (503: the fake controller runs no cycle).
    ("GET", "/api/v1/overrides", None, (401, 403, 403, 200)),
    ("POST", "/api/v1/overrides", OVERRIDE, (401, 403, 403, 503)),
    ("DELETE", "/api/v1/overrides/1", None, (401, 403, 403, 503)),
    # a member's opt-outs: its own (503: the fake controller has no store), not another's
    ("GET", "/api/v1/members/h02/optouts", None, (401, 200, 403, 200)),
    ("GET", "/api/v1/members/h03/optouts", None, (401, 404, 403, 200)),
    ("GET", "/api/v1/members/h01/optouts", None, (401, 404, 403, 200)),
    ("POST", "/api/v1/members/h02/optouts", OPTOUT, (401, 503, 403, 503)),
    ("POST", "/api/v1/members/h03/optouts", OPTOUT, (401, 404, 403, 503)),
    ("DELETE", "/api/v1/members/h02/optouts/1", None, (401, 503, 403, 503)),
    ("DELETE", "/api/v1/members/h03/optouts/1", None, (401, 404, 403, 503)),
    ("POST", "/logout", None, (200, 200, 200, 200)),
]


#: Routes that never end a response (Server-Sent Events): in the policy, not requested here;
#: tests/test_live_stream.py reads them over a real server.
ENDLESS = {("GET", "/api/v1/live/stream")}


def test_every_route_has_a_policy_and_a_row_in_the_table(app: FastAPI) -> None:
    routes = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert routes <= set(ROUTE_POLICY), routes - set(ROUTE_POLICY)
    tested = {(m, p.split("?")[0]) for m, p, _, _ in TABLE} | ENDLESS
    for method, path in routes:
        concrete = {(m, p) for m, p in tested if m == method and _matches(path, p)}
        assert concrete, f"{method} {path} is not in the test table"


def _matches(template: str, path: str) -> bool:
    a, b = template.split("/"), path.split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b,
                                                                                strict=True))


def test_the_route_table(coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    secrets = [None, _token(reader, "member", "h02")[1], _token(reader, "installer")[1],
               _token(reader, "coordinator")[1]]
    remote = TestClient(app, client=("192.0.2.7", 40000), follow_redirects=False)
    for method, path, body, expected in TABLE:
        for role, secret, status in zip(("public", "member", "installer", "coordinator"),
                                        secrets, expected, strict=True):
            got = remote.request(method, path, json=body, headers=_headers(secret))
            want = (303,) if path == "/logout" else (status,)
            assert got.status_code in want, (method, path, role, got.status_code, got.text)
            assert "detail" in got.json() if got.status_code >= 400 else True


def test_another_members_data_is_404_word_for_word_as_no_member(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    client = TestClient(app, headers=_headers(_token(reader, "member", "h02")[1]))
    hidden = client.get("/api/v1/members/h03/energy")
    absent = client.get("/api/v1/members/nobody/energy")
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["detail"].replace("h03", "X") == absent.json()["detail"].replace(
        "nobody", "X")


def test_the_public_sees_public_members_by_name_and_the_others_by_pseudonym(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    salt = pseudonym_salt(reader)
    h02, h03 = pseudonym(salt, "h02"), pseudonym(salt, "h03")
    public = TestClient(app)
    members = public.get("/api/v1/members").json()
    assert {"id": "h01", "name": "H01"} in members
    assert {"id": h02, "name": h02} in members and {"id": h03, "name": h03} in members
    assert set(public.get("/api/v1/coop/summary").json()["by_member"]) == {"h01", h02, h03}
    report = public.get("/api/v1/coop/report", params={"month": "1970-01"}).json()
    assert {r["member_id"] for r in report["by_member"]} == {"h01", h02, h03}
    assert set(report["budget"]["members"]) == {"h01", h02, h03}
    assert "h02" not in public.get("/api/v1/coop/report", params={"month": "1970-01"}).text
    # the member itself sees its own id; the pseudonyms are stable between requests
    own = TestClient(app, headers=_headers(_token(reader, "member", "h02")[1]))
    assert set(own.get("/api/v1/coop/summary").json()["by_member"]) == {"h01", "h02", h03}


def test_expired_and_revoked_tokens_get_401_saying_why(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    store = TokenStore.beside(reader.path)
    _, expired = _token(reader, "member", "h02", lifetime_s=0.5)
    revoked_id, revoked = _token(reader, "member", "h02")
    client = TestClient(app)
    assert client.get("/api/v1/members/h02/energy", headers=_headers(revoked)).status_code == 200
    store.revoke(revoked_id)  # as the CLI would, while the API runs
    time.sleep(0.6)
    for secret, why in ((expired, "expired"), (revoked, "revoked"), ("made-up", "unknown")):
        # refused on a public route too: a bad token is never silently public
        for path in ("/api/v1/members/h02/energy", "/api/v1/coop/summary"):
            got = client.get(path, headers=_headers(secret))
            assert got.status_code == 401 and why in got.json()["detail"], got.text
            assert got.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/healthz", headers={"Authorization": "Basic abc"}).status_code == 401


def test_no_host_name_is_local_not_even_the_test_clients(app: FastAPI) -> None:
    """Starlette's in-process client calls itself ``testclient``: no special name (#18)."""
    local = TestClient(app)
    assert local.post("/api/v1/island/command", json=ISLAND).status_code == 401


def test_commands_are_in_the_audit_log_with_the_tokens_label(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    _, secret = _token(reader, "coordinator", label="Ana")
    client = TestClient(app, headers=_headers(secret))
    client.post("/api/v1/island/command", json={"requested_by": "Bob", "hours": 2})
    rows = TestClient(app).get("/api/v1/audit").json()["rows"]
    command = [r for r in rows if r["action"] == "island.command"][-1]
    assert command["who"] == "Ana" and command["role"] == "coordinator"
    assert command["outcome"].startswith("refused") and command["detail"]["requested_by"] == "Bob"


@contextlib.contextmanager
def _serve(app: FastAPI) -> Iterator[tuple[str, list[str]]]:
    """``app`` under uvicorn on 127.0.0.1 with its access log captured."""
    lines: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler = _Capture(logging.INFO)
    access.addHandler(handler)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", log_config=None,
                                           access_log=True, lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", lines
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        access.removeHandler(handler)


def test_over_http_login_links_are_one_time_and_no_secret_reaches_the_log(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    reader, _ = coop
    store = TokenStore.beside(reader.path)
    token_id, bearer = _token(reader, "member", "h02")
    code = store.add_secret(token_id, "once", ONCE_TTL_S)
    with _serve(app) as (url, log):
        with httpx.Client(base_url=url, follow_redirects=False) as browser:
            first = browser.get("/login", params={"once": code})
            assert first.status_code == 303 and first.headers["location"] == "/me"
            cookie = first.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert browser.get("/api/v1/members/h02/energy").status_code == 200
            assert browser.get("/api/v1/whoami").json()["member"] == "h02"
            # a member's cookie is no key to another member's data
            assert browser.get("/api/v1/members/h03/energy").status_code == 404
            browser.post("/logout", headers={"Origin": url})  # a browser says where from
            browser.cookies.clear()
            assert browser.get("/api/v1/members/h02/energy").status_code == 404
        with httpx.Client(base_url=url, follow_redirects=False) as replay:
            again = replay.get("/login", params={"once": code})
            assert again.status_code == 401 and "already used" in again.text
            assert "set-cookie" not in again.headers
            # the bearer token is no one-time code, and a once code is no bearer token
            assert replay.get("/login", params={"once": bearer}).status_code == 401
            assert replay.get("/api/v1/members/h02/energy",
                              headers=_headers(code)).status_code == 401
            # pasting the token logs in too
            pasted = replay.post("/login", data={"token": bearer})
            assert pasted.status_code == 303 and "commonwatt_session" in pasted.headers[
                "set-cookie"]
            assert replay.get("/api/v1/members/h02/energy").status_code == 200
            # an expired or revoked token refused over HTTP, by bearer and by cookie
            store.revoke(token_id)
            assert replay.get("/api/v1/members/h02/energy").status_code == 401
            got = httpx.get(url + "/api/v1/members/h02/energy", headers=_headers(bearer))
            assert got.status_code == 401 and "revoked" in got.json()["detail"]
            # through a proxy on this host the public cannot command (401), a member neither
            proxied = {"X-Forwarded-For": "203.0.113.9"}
            assert httpx.post(url + "/api/v1/island/command", json=ISLAND,
                              headers=proxied).status_code == 401
            _, member = _token(reader, "member", "h02")
            assert httpx.post(url + "/api/v1/island/command", json=ISLAND,
                              headers=_headers(member)).status_code == 403
    text = "\n".join(log)
    assert "/login?once=" in text and "[redacted]" in text
    assert code not in text and bearer not in text


def test_the_public_audit_view_names_no_hidden_member(
        coop: tuple[LedgerReader, CoopConfig], app: FastAPI) -> None:
    from controller.governance import AuditLog, issue

    reader, config = coop
    log = AuditLog.beside(reader.path)
    store = TokenStore.beside(reader.path)
    _, secret = issue(store, log, config.governance, role="member", member="h02",
                      label="Ada Lovelace", lifetime_s=3600, by="cli:test")
    log.append("Ana", "coordinator", "island.command", {"requested_by": "Ana"},
               "refused: meters not fresh: h03/meter, h01/meter")
    public = TestClient(app).get("/api/v1/audit")
    text = public.text
    assert "h02" not in text and "h03" not in text and "Ada" not in text
    assert "h01/meter" in text  # h01 is public
    salt = pseudonym_salt(reader)
    rows = public.json()["rows"]
    assert rows[0]["redacted"] and rows[0]["detail"]["member"] == pseudonym(salt, "h02")
    assert f"{pseudonym(salt, 'h03')}/meter" in rows[1]["outcome"]
    own = TestClient(app, headers=_headers(secret)).get("/api/v1/audit").json()["rows"]
    assert own[0]["detail"]["label"] == "Ada Lovelace" and "redacted" not in own[0]
    assert TestClient(app).get("/api/v1/audit/verify").json()["ok"]  # on the raw rows
