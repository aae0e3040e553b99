"""The API's contract: its OpenAPI schema against a committed snapshot, and a bounded
schemathesis run over every endpoint (in process, with a controller running on the
simulated coop behind it, so that its routes answer rather than 503) that finds no 500.

When the schema changes on purpose, regenerate the snapshot and commit it:

    UPDATE_OPENAPI_SNAPSHOT=1 python -m pytest tests/test_openapi_contract.py -k snapshot
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import httpx
import pytest
import schemathesis
from fastapi import FastAPI, routing
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, TypeAdapter

from api.app import create_app
from api.auth import Authority
from api.auth.throttle import LoginThrottle
from api.contract import ErrorDetail
from controller.governance import TokenStore
from controller.ledger import LedgerReader
from tests.coop_harness import Harness, start_harness
from tests.ledger_helpers import write_ledger
from tests.test_api import _cycle
from tests.test_overrides_live import _Live

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")
#: Endless by design (Server-Sent Events every cycle): a generated call would never return.
ENDLESS = "/api/v1/live/stream"
MAX_EXAMPLES = 10


def _app(tmp: Path) -> FastAPI:
    path = tmp / "ledger.sqlite"
    write_ledger(path, ("h01", "h02"), 60, 1020.0, 60.0, [_cycle() for _ in range(10)])
    reader = LedgerReader(path)
    # The generator sends made-up bearer tokens by the hundred: with the real limit, the
    # in-process client would soon be locked out (429) and the run would test little else.
    # The limit itself is tested in tests/test_auth_proxies.py.
    auth = Authority.beside(path, reader)
    auth.throttle = LoginThrottle(limit=10**9)
    return create_app(reader, auth=auth)


def _deliberate(response: object) -> bool:
    """A 5xx the API chose (503 "no controller is running on this ledger"): JSON with
    a ``detail``, unlike a crash."""
    try:
        return "detail" in response.json()  # type: ignore[attr-defined]
    except ValueError:
        return False


def _pretty(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def test_the_openapi_schema_matches_the_snapshot(tmp_path: Path) -> None:
    now = _pretty(_app(tmp_path).openapi())
    if os.environ.get("UPDATE_OPENAPI_SNAPSHOT"):
        SNAPSHOT.write_text(now)
    before = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(difflib.unified_diff(before.splitlines(True), now.splitlines(True),
                                        "tests/openapi_snapshot.json", "the app's schema now"))
    assert not diff, (
        "The API's OpenAPI schema changed. If that is intended, regenerate the snapshot "
        "with `UPDATE_OPENAPI_SNAPSHOT=1 python -m pytest tests/test_openapi_contract.py "
        f"-k snapshot` and commit tests/openapi_snapshot.json.\n{diff}")


@contextlib.contextmanager
def _running_controller(tmp: Path) -> Iterator[tuple[Harness, asyncio.AbstractEventLoop]]:
    """A controller on the simulated coop (Modbus on 127.0.0.1), its loop in a thread, a
    settlement interval committed, so the controller-backed routes answer."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):  # noqa: ANN001, ANN202 - a coroutine on the harness's loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    h = run(start_harness(tmp, households=3, start_hour=12.0, settlement_s=300))
    try:
        for _ in range(12):  # 6 simulated minutes of 30 s cycles: one interval committed
            run(h.step())
        yield h, loop
    finally:
        run(h.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The app over a running controller, and the headers of each caller the run plays."""
    tmp = tmp_path_factory.mktemp("contract")
    with _running_controller(tmp) as (h, _):
        reader = LedgerReader(tmp / "ledger.sqlite")
        auth = Authority.beside(reader.path, reader, h.config)
        auth.throttle = LoginThrottle(limit=10**9)  # see _app
        app = create_app(reader, _Live(h), h.config, auth)
        tokens = TokenStore.beside(tmp / "ledger.sqlite")
        expires = time.time() + 3600
        callers = {"public": {}}
        for role, member in (("member", "h01"), ("installer", None), ("coordinator", None)):
            _, secret = tokens.create(role, member, f"contract-{role}", expires)
            callers[role] = {"Authorization": f"Bearer {secret}"}
        yield {"app": app, "callers": callers, "harness": h, "tmp": tmp}


def test_no_endpoint_answers_500(contract: dict) -> None:
    # schemathesis's own pytest plugin does not load under pytest 9: the operations
    # are walked here instead, each a bounded hypothesis run of its generated cases.
    schema = schemathesis.openapi.from_asgi("/openapi.json", contract["app"])
    callers = contract["callers"]
    seen, failures, own, unavailable = [], [], [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == ENDLESS:
            continue
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def generated(case: schemathesis.Case) -> None:
            # Each generated request as the public, a member (whose own id, h01, the
            # generator may or may not pick), an installer and a coordinator.
            calls = list(callers.items())
            if "member_id" in (case.path_parameters or {}):
                calls.append(("member-own", callers["member"]))
            for role, headers in calls:
                if role == "member-own":  # the member's own data, past the 404 wall
                    case.path_parameters = {**case.path_parameters, "member_id": "h01"}
                response = case.call(headers=headers)
                if role == "member-own":
                    own.append(response.status_code)
                if response.status_code == 503:
                    unavailable.append(f"{role}: {case.method.upper()} "
                                       f"{case.path}: {response.text[:120]}")
                if response.status_code == 500 or (
                        response.status_code > 500 and not _deliberate(response)):
                    failures.append(f"{role}: {case.as_curl_command()} -> "
                                    f"{response.status_code} {response.text[:300]}")

        generated()
    assert len(seen) >= 20, seen
    assert not failures, "\n".join(failures)
    assert 200 in own, own  # the member token did reach its own figures
    # a controller runs behind the API: no route says it has none
    assert not unavailable, "\n".join(unavailable)


def _declared_answers(app: FastAPI) -> dict[tuple[str, str, int], Any]:
    """(method, path, status) → the type the document declares for that answer: the
    route's :func:`api.contract.answers` model, else its response model."""
    out: dict[tuple[str, str, int], Any] = {}
    for ctx in routing.iter_route_contexts(app.routes):
        route = ctx.original_route
        if not isinstance(route, routing.APIRoute) or not route.include_in_schema:
            continue
        for method in ctx.methods or ():
            for code, declared in (ctx.responses or {}).items():
                if "model" in declared:
                    out[(method, ctx.path_format, int(code))] = declared["model"]
            success = ctx.status_code or 200
            if (method, ctx.path_format, success) not in out and ctx.response_model:
                out[(method, ctx.path_format, success)] = ctx.response_model
    return out


def _undeclared(tp: Any, value: Any, where: str) -> list[str]:
    """Every key of ``value`` that ``tp`` does not declare (a model that allows extra keys
    declares them all), recursively: a field sent but missing from the document."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        if value is None:
            return []
        options = [a for a in args if a is not type(None)]
        return _undeclared(options[0], value, where) if len(options) == 1 else []
    if origin is list and isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _undeclared(args[0], v, f"{where}[{i}]")]
    if origin is dict and isinstance(value, dict):
        return [p for k, v in value.items() for p in _undeclared(args[1], v, f"{where}.{k}")]
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        fields = {(f.alias or n): f for n, f in tp.model_fields.items()}
        out = [] if tp.model_config.get("extra") == "allow" else [
            f"{where}.{k}" for k in value if k not in fields]
        for key, field in fields.items():
            if key in value:
                out += _undeclared(field.annotation, value[key], f"{where}.{key}")
        return out
    return []


def test_every_answer_is_its_declared_model(contract: dict) -> None:
    """Each route's real answers, on a running controller, against the model the document
    declares for them: every field typed as sent, none missing, none undeclared."""
    from api.surface import cycle_done
    from tests.test_island_page import island_plan

    app, callers, h = contract["app"], contract["callers"], contract["harness"]
    (contract["tmp"] / "plan.json").write_text(json.dumps(island_plan()))
    cycle_done(app, h.controller.last_report, h.controller.grid.status())
    coordinator, member = callers["coordinator"], callers["member"]
    api = TestClient(app)
    answers: list[tuple[str, str, Any]] = []

    def call(method: str, path: str, headers: dict, template: str | None = None,
             **kw: Any) -> Any:
        response = api.request(method, path, headers=headers, **kw)
        answers.append((method, template or path, response))
        return response

    for path in ("/healthz", "/api/v1/whoami", "/api/v1/live", "/api/v1/coop/summary",
                 "/api/v1/members", "/api/v1/audit", "/api/v1/audit/verify",
                 "/api/v1/island", "/api/v1/island/transitions",
                 "/api/v1/island/plan/progress"):
        call("GET", path, {})
    for path in ("/api/v1/whoami", "/api/v1/live"):
        call("GET", path, member)
    for path in ("/api/v1/devices", "/api/v1/island/plan", "/api/v1/overrides",
                 "/api/v1/coop/report?month=2026-06"):
        call("GET", path, coordinator, path.split("?")[0])
    call("GET", "/api/v1/plan/ahead", {})  # the harness runs greedy: no plan in force
    for tail in ("energy", "statement?month=2026-06", "series", "optouts", "plan/ahead"):
        call("GET", f"/api/v1/members/h01/{tail}", member,
             f"/api/v1/members/{{member_id}}/{tail.split('?')[0]}")
    battery = next(d["name"].split("/")[0] for d in h.controller.poller.health()
                   if d["kind"] == "battery")
    made = call("POST", "/api/v1/overrides", coordinator, json={
        "kind": "battery_setpoint", "member": battery, "power_w": 500, "minutes": 5})
    call("DELETE", f"/api/v1/overrides/{made.json()['id']}", coordinator,
         "/api/v1/overrides/{override_id}")
    # An opt-out started by the store (the harness's households have no plug to keep on),
    # then listed and ended through the API.
    now = h.clock.now()
    kept = h.controller.overrides.add("shed_optout", "h01", now, now + 300, "test",
                                      load_id="h01/load1")
    call("GET", "/api/v1/members/h01/optouts", member, "/api/v1/members/{member_id}/optouts")
    call("DELETE", f"/api/v1/members/h01/optouts/{kept.id}", member,
         "/api/v1/members/{member_id}/optouts/{override_id}")
    call("POST", "/api/v1/island/command", coordinator,
         json={"requested_by": "test", "hours": 1, "required_soc_pct": 0})
    call("POST", "/api/v1/island/return", coordinator, json={"requested_by": "test"})
    call("POST", "/api/v1/island/eve/cancel", coordinator, json={"requested_by": "test"})
    call("GET", "/api/v1/clock", {})

    declared, doc = _declared_answers(app), app.openapi()
    problems, checked = [], set()
    for method, template, response in answers:
        key = (method, template, response.status_code)
        if response.status_code >= 400:  # the errors contract_schema declares, one string
            assert str(response.status_code) in \
                doc["paths"][template][method.lower()]["responses"], key
            declared[key] = ErrorDetail
        assert key in declared, f"{method} {template}: {response.status_code} undeclared: " \
                                f"{response.text[:200]}"
        tp = declared[key]
        body = response.json()
        try:
            TypeAdapter(tp).validate_python(body)
        except ValueError as exc:
            problems.append(f"{method} {template}: {exc}")
        problems += _undeclared(tp, body, f"{method} {template}")
        if response.status_code < 300:
            checked.add((method, template))
    assert not problems, "\n".join(problems)
    json_routes = {(m.upper(), p) for p, ops in doc["paths"].items()
                   for m, op in ops.items() if any(
                       "application/json" in r.get("content", {})
                       for c, r in op["responses"].items() if c.startswith("2"))}
    # Not answered 2xx here: an opt-out needs a plug (the harness has none), the return
    # an island in force (the command takes effect at the next cycle) and the eve's cancel
    # an eve in force (a command for later); they answer the models checked above
    # (OverrideShown, IslandAccepted), and tests/test_member_optouts.py, the island
    # command tests and tests/test_island_eve.py run them.
    assert json_routes - checked <= {("POST", "/api/v1/members/{member_id}/optouts"),
                                     ("POST", "/api/v1/island/return"),
                                     ("POST", "/api/v1/island/eve/cancel")}, \
        json_routes - checked


def test_a_generated_client_reads_a_members_energy_with_a_token(
        contract: dict, tmp_path: Path) -> None:
    """openapi-python-client, given the live server's /openapi.json, makes a client whose
    member_energy answers a typed Energy (not a dict), with a token made by
    ``commonwatt token create``; a public route needs none, and a refused token is a
    typed ErrorDetail. Everything generated stays under tmp_path."""
    from simulators.demo_config import coop_toml
    from tests.test_island_page import serve

    generator = Path(sys.executable).with_name("openapi-python-client")
    assert generator.exists(), ("openapi-python-client is missing: install the dev extra "
                                "(pip install -c constraints.txt -e '.[dev]')")
    h, tmp = contract["harness"], contract["tmp"]
    config = tmp_path / "coop.toml"
    config.write_text(coop_toml(h.coop, tmp / "ledger.sqlite", settlement_s=300))
    made = subprocess.run(
        [sys.executable, "-m", "controller.cli", "token", "create", str(config), "--role",
         "member", "--member", "h01", "--label", "generated client", "--expires", "10m"],
        capture_output=True, text=True, timeout=60, check=True)
    secret = made.stdout.splitlines()[-1]
    (tmp_path / "gen.yaml").write_text("post_hooks: []\n"
                                       "package_name_override: commonwatt_client\n")
    with serve(contract["app"]) as url:
        generated = subprocess.run(
            [str(generator), "generate",
             "--url", f"{url}/openapi.json", "--meta", "none", "--fail-on-warning",
             "--output-path", str(tmp_path / "commonwatt_client"),
             "--config", str(tmp_path / "gen.yaml")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert generated.returncode == 0, generated.stdout + generated.stderr
        sys.path.insert(0, str(tmp_path))
        try:
            from commonwatt_client import AuthenticatedClient, Client
            from commonwatt_client.api.members import member_energy
            from commonwatt_client.api.ops import healthz
            from commonwatt_client.models import Energy, ErrorDetail, Health
            with AuthenticatedClient(base_url=url, token=secret) as client:
                energy = member_energy.sync("h01", client=client)
            with AuthenticatedClient(base_url=url, token="not-a-token") as client:
                refused = member_energy.sync("h01", client=client)
            with Client(base_url=url) as client:  # a public route: no token asked
                health = healthz.sync(client=client)
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m.split(".")[0] == "commonwatt_client"]:
                del sys.modules[name]
        raw = httpx.get(f"{url}/api/v1/members/h01/energy",
                        headers={"Authorization": f"Bearer {secret}"}).json()
    assert get_type_hints(member_energy.sync)["return"] is not None
    assert isinstance(energy, Energy), energy
    assert energy.member_id == "h01" and energy.intervals == raw["intervals"] > 0
    assert isinstance(energy.liberated_kwh, float)
    assert energy.to_dict() == raw  # every field read back as the server sent it
    assert isinstance(refused, ErrorDetail) and "token" in refused.detail, refused
    assert isinstance(health, Health) and health.status.value in ("ok", "degraded"), health
