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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from api.auth import Authority
from api.auth.throttle import LoginThrottle
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
        yield {"app": app, "callers": callers}


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
