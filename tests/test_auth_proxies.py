"""Commands come from tokens, not from places (#18 deliverables 3 and 4).

Over a real uvicorn on 127.0.0.1 where the point is what the socket shows (a same-host
proxy that adds no header looks exactly like a local client), in process otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth.throttle import LoginThrottle
from controller.config import CoopConfig, parse_config
from controller.governance import AuditLog
from controller.governance.local import local_secret_path, new_local_secret
from controller.ledger import LedgerReader
from tests.accounts_ledgers import config_text
from tests.ledger_helpers import write_ledger
from tests.test_auth import ISLAND, MEMBERS, _flows, _Live, _serve, _token

#: Every header a proxy may add that says "I forwarded this", the two of the probe first.
PROXY_HEADERS = [("X-Forwarded-Host", "coop.example"),
                 ("X-Original-Forwarded-For", "203.0.113.9"),
                 ("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                 ("X-Real-IP", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
                 ("Via", "1.1 nginx"), ("True-Client-IP", "203.0.113.9"),
                 ("CF-Connecting-IP", "203.0.113.9")]


def _coop(tmp_path: Path, api: str = "") -> tuple[LedgerReader, CoopConfig]:
    ledger = tmp_path / "ledger.sqlite"
    write_ledger(ledger, MEMBERS, 60, 1020.0, 60.0, [_flows() for _ in range(5)])
    text = config_text(ledger, MEMBERS) + f"\n[api]\n{api}\n"
    return LedgerReader(ledger), parse_config(text)


def _app(tmp_path: Path, api: str = "") -> tuple[LedgerReader, FastAPI]:
    reader, config = _coop(tmp_path, api)
    return reader, create_app(reader, _Live(), config)


def _audit(reader: LedgerReader) -> list[dict]:
    rows = AuditLog.beside(reader.path).rows(0, 10_000)
    return [r | {"detail": json.loads(r["detail"]) if isinstance(r["detail"], str)
                 else r["detail"]} for r in rows]


def test_a_loopback_client_is_not_enough_without_local_commands(tmp_path: Path) -> None:
    """An SSH tunnel, stunnel or nginx's default adds no header: the API sees 127.0.0.1."""
    _, app = _app(tmp_path)
    with _serve(app) as (url, _):
        got = httpx.post(url + "/api/v1/island/command", json=ISLAND)
    assert got.status_code == 401, got.text


def test_with_local_commands_any_proxy_header_makes_a_request_remote(
        tmp_path: Path, reliability) -> None:
    """Every forwarding header in one row: a parametrized test would record the row once per
    header, the last run's outcome hiding an earlier failure."""
    row = reliability("proxy-headers", "With local_commands on, an island command from "
                      "127.0.0.1 carrying any of the headers a proxy adds (X-Forwarded-*, "
                      "Forwarded, X-Real-IP, Via, True-Client-IP, CF-Connecting-IP, ...) is "
                      "401; the same request without a header is local (409 from the grid "
                      "state machine, audited as 'this host (loopback)'). A same-host tunnel "
                      "that adds no header gets 401 unless local_commands is on "
                      "(test_a_loopback_client_is_not_enough_without_local_commands).")
    reader, app = _app(tmp_path, "local_commands = true")
    with _serve(app) as (url, _):
        proxied = {name: httpx.post(url + "/api/v1/island/command", json=ISLAND,
                                    headers={name: value}).status_code
                   for name, value in PROXY_HEADERS}
        # without the header, the local command is allowed (409: refused by the grid state
        # machine, as the fake controller has read no device) and recorded as local
        allowed = httpx.post(url + "/api/v1/island/command", json=ISLAND)
    commands = [r for r in _audit(reader) if r["action"] == "island.command"]
    row.observed = (f"{sum(c == 401 for c in proxied.values())} of {len(proxied)} proxy "
                    f"headers answered 401 (statuses {sorted(set(proxied.values()))}); "
                    f"without a header {allowed.status_code}, audited as "
                    f"{commands[-1]['who'] if commands else 'nothing'!r} "
                    f"({len(commands)} island.command row(s))")
    assert proxied == dict.fromkeys(proxied, 401), proxied
    assert allowed.status_code == 409, allowed.text
    assert (commands[-1]["who"], commands[-1]["role"]) == ("this host (loopback)", "local")


def test_a_trusted_proxys_request_is_never_local_and_its_client_is_believed(
        tmp_path: Path) -> None:
    reader, app = _app(tmp_path, 'local_commands = true\ntrusted_proxies = ["127.0.0.1"]')
    with _serve(app) as (url, _):
        # through the trusted proxy on this host, even without any header: never local
        assert httpx.post(url + "/api/v1/island/command", json=ISLAND).status_code == 401
        httpx.get(url + "/api/v1/whoami", headers={
            "X-Forwarded-For": "198.51.100.1, 203.0.113.7", "Authorization": "Bearer wrong"})
    failed = [r for r in _audit(reader) if r["action"] == "login.failed"]
    # the rightmost address that is not a trusted proxy: the one the proxy saw
    assert failed[-1]["who"] == "203.0.113.7" and failed[-1]["detail"]["proxied"]


def test_an_untrusted_peers_forwarding_headers_are_not_believed(tmp_path: Path) -> None:
    reader, app = _app(tmp_path)
    remote = TestClient(app, client=("192.0.2.7", 40000))
    remote.get("/api/v1/whoami", headers={"X-Forwarded-For": "10.9.9.9",
                                          "Authorization": "Bearer wrong"})
    assert [r["who"] for r in _audit(reader) if r["action"] == "login.failed"] == ["192.0.2.7"]


def test_trusted_proxies_name_the_field_when_bad(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="trusted_proxies.*'nginx' is not an IP address"):
        _coop(tmp_path, 'trusted_proxies = ["nginx"]')


def test_the_cli_commands_with_the_local_secret_and_the_audit_names_no_body(
        tmp_path: Path) -> None:
    reader, app = _app(tmp_path)
    secret = new_local_secret(reader.path)
    assert oct(local_secret_path(reader.path).stat().st_mode & 0o777) == "0o600"
    with _serve(app) as (url, _):
        assert httpx.post(url + "/api/v1/island/command", json=ISLAND).status_code == 401
        got = httpx.post(url + "/api/v1/island/command",
                         json={**ISLAND, "requested_by": "The Queen"},
                         headers={"Authorization": f"Bearer {secret}"})
        assert got.status_code == 409, got.text
        # the secret is the file's, not a prefix: a guess is a failed login
        assert httpx.post(url + "/api/v1/island/command", json=ISLAND, headers={
            "Authorization": "Bearer local-guess"}).status_code == 401
    row = [r for r in _audit(reader) if r["action"] == "island.command"][-1]
    assert (row["who"], row["role"]) == ("this host (local secret)", "local")
    assert row["detail"]["requested_by"] == "The Queen"  # a claim in the detail, no more
    new_local_secret(reader.path)  # a restarted controller: the old secret is worthless
    assert TestClient(app).post("/api/v1/island/command", json=ISLAND, headers={
        "Authorization": f"Bearer {secret}"}).status_code == 401


def test_failed_logins_are_limited_recorded_without_the_secret_and_answered_429(
        tmp_path: Path, reliability) -> None:
    row = reliability("login-flood", "12 wrong tokens from one client (6 by the login form, "
                      "6 as bearer tokens): the first 10 are 401 and audited as "
                      "login.failed, then the client is locked out for 60 s (429 with "
                      "Retry-After, even for a right token); another client and public "
                      "pages stay open; no audit row holds a guessed token or its prefix.")
    reader, app = _app(tmp_path)
    guesser = TestClient(app, client=("192.0.2.7", 40000))
    wrong = [f"guess{i:03d}-not-a-token" for i in range(12)]
    codes = [guesser.post("/login", data={"token": w}).status_code for w in wrong[:6]]
    codes += [guesser.get("/api/v1/whoami", headers={"Authorization": f"Bearer {w}"}
                          ).status_code for w in wrong[6:]]
    assert codes == [401] * 10 + [429] * 2, codes
    locked = guesser.get("/api/v1/whoami", headers={"Authorization": "Bearer x"})
    assert locked.status_code == 429 and "too many failed logins" in locked.json()["detail"]
    assert 0 < int(locked.headers["retry-after"]) <= 61
    page = guesser.post("/login", data={"token": "another"})
    assert page.status_code == 429 and "too many failed logins" in page.text
    # even the right token waits: the lockout is the client's
    _, good = _token(reader, "member", "h02")
    right = guesser.get("/api/v1/whoami", headers={"Authorization": f"Bearer {good}"})
    assert right.status_code == 429
    # another client is not locked out, and public pages stay open to the guesser
    other = TestClient(app, client=("192.0.2.8", 1)).get("/api/v1/whoami", headers={
        "Authorization": f"Bearer {good}"})
    assert other.json()["member"] == "h02"
    public = guesser.get("/api/v1/coop/summary")
    assert public.status_code == 200
    rows = _audit(reader)
    failed = [r for r in rows if r["action"] == "login.failed"]
    assert len(failed) == 10 and {r["who"] for r in failed} == {"192.0.2.7"}
    assert {r["detail"]["via"] for r in failed} == {"form", "bearer"}
    assert [r["detail"]["lock_s"] for r in rows if r["action"] == "login.locked"] == [60.0]
    text = repr(rows)
    leaked = sum(w in text or w[:6] in text for w in wrong)
    row.observed = (f"{codes.count(401)} × 401 then {codes.count(429)} × 429 for 12 guesses; "
                    f"right token while locked {right.status_code}, Retry-After "
                    f"{locked.headers['retry-after']} s; another client "
                    f"{other.status_code}, public page {public.status_code}; "
                    f"{len(failed)} login.failed and "
                    f"{sum(r['action'] == 'login.locked' for r in rows)} login.locked audit "
                    f"rows; {leaked} of {len(wrong)} guesses found in the audit log")
    assert not leaked  # never the secret


def test_failed_logins_per_token_prefix_across_clients(tmp_path: Path) -> None:
    _, app = _app(tmp_path)
    for i in range(10):  # ten addresses, one prefix: a spread-out attack on one token
        TestClient(app, client=(f"192.0.2.{i + 10}", 1)).get(
            "/api/v1/whoami", headers={"Authorization": f"Bearer AbCdEf{i}"})
    fresh = TestClient(app, client=("192.0.2.99", 1))
    assert fresh.get("/api/v1/whoami", headers={
        "Authorization": "Bearer AbCdEfZZ"}).status_code == 429
    assert fresh.get("/api/v1/whoami", headers={
        "Authorization": "Bearer OtherPrefix"}).status_code == 401


def test_the_lockout_backs_off_and_forgives_after_quiet() -> None:
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    locks = []
    for _ in range(3):
        for _ in range(10):
            lock = throttle.failed(["client:a"])
        locks.append(lock)
        now[0] += lock + 1
        assert throttle.locked_for(["client:a"]) == 0
    assert locks == [60.0, 120.0, 240.0]
    now[0] += 3600 + 1
    for _ in range(10):
        lock = throttle.failed(["client:a"])
    assert lock == 60.0


ORIGIN_CASES = [({}, 403), ({"Origin": "https://evil.example"}, 403),
                ({"Referer": "https://evil.example/page"}, 403),
                ({"Origin": "http://testserver"}, 503),
                ({"Referer": "http://testserver/installer"}, 503)]


def test_a_state_change_on_the_session_cookie_checks_origin(
        tmp_path: Path, reliability) -> None:
    """Every Origin/Referer case in one row (a parametrized test would record it per case)."""
    row = reliability("cross-site-post", "A coordinator's browser, logged in by cookie, "
                      "POSTs an override: with no Origin or Referer, or one from another "
                      "site, it is 403 naming Origin; from the API's own origin it passes "
                      "the check (503 here: the stand-in controller has no override store).")
    reader, app = _app(tmp_path)
    _, secret = _token(reader, "coordinator")
    browser = TestClient(app, follow_redirects=False)
    login = browser.post("/login", data={"token": secret},
                         headers={"Origin": "http://testserver"})
    assert login.status_code == 303
    got = [browser.post("/api/v1/overrides", json={
        "kind": "battery_setpoint", "member": "h02", "power_w": 500, "minutes": 10},
        headers=headers) for headers, _ in ORIGIN_CASES]
    statuses = [r.status_code for r in got]
    foreign = [s for s, (_, want) in zip(statuses, ORIGIN_CASES, strict=True) if want == 403]
    own = [s for s, (_, want) in zip(statuses, ORIGIN_CASES, strict=True) if want != 403]
    refused = [r for r in got if r.status_code == 403]
    row.observed = (f"login {login.status_code}; no, cross-site Origin, cross-site Referer: "
                    f"{foreign}, {sum(r.json()['detail'].startswith('Origin:') for r in refused)}"
                    f" of {len(refused)} refusals name Origin; own Origin, own Referer: {own}")
    # past the Origin check, the fake controller has no override store: 503
    assert statuses == [want for _, want in ORIGIN_CASES], [r.text for r in got]
    assert all(r.json()["detail"].startswith("Origin:") for r in refused)


def test_a_bearer_token_needs_no_origin_and_reads_need_none(tmp_path: Path) -> None:
    reader, app = _app(tmp_path)
    _, secret = _token(reader, "coordinator")
    api = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert api.post("/api/v1/island/command", json=ISLAND).status_code == 409
    browser = TestClient(app, follow_redirects=False)
    browser.post("/login", data={"token": secret}, headers={"Origin": "http://testserver"})
    assert browser.get("/api/v1/overrides", headers={"Origin": "https://evil.example"}
                       ).status_code == 200
    assert browser.post("/login", data={"token": secret},
                        headers={"Origin": "https://evil.example"}).status_code == 403
