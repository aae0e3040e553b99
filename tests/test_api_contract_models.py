"""The published contract: public routes need no token in ``/openapi.json``, the others
declare their 401/403/404/409 with a string ``detail``, operation ids are short and unique,
``from``/``to`` take ISO 8601 or Unix seconds, and the summary's typed model holds for what
the route really sends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.auth.policy import PUBLIC, ROUTE_POLICY
from api.summary_model import CoopSummary
from tests.pages_world import PagesWorld, build, push_cycle


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> PagesWorld:
    w = build(tmp_path_factory.mktemp("contract"))
    push_cycle(w.app, time.time())
    return w


@pytest.fixture(scope="module")
def api(world: PagesWorld) -> Iterator[TestClient]:
    yield TestClient(world.app)


def test_security_only_where_a_token_is_needed(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    ids = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            policy = ROUTE_POLICY[(method.upper(), path)]
            assert ("security" in op) == (policy != PUBLIC), (method, path)
            ids.append(op["operationId"])
            if policy != PUBLIC:
                error = op["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorDetail"}
    assert len(ids) == len(set(ids)) and all(len(i) <= 24 and "api_v1" not in i for i in ids)
    paths = doc["paths"]
    assert "409" in paths["/api/v1/island/command"]["post"]["responses"]
    assert "404" in paths["/api/v1/members/{member_id}/energy"]["get"]["responses"]
    assert "403" in paths["/api/v1/devices"]["get"]["responses"]
    assert paths["/api/v1/members/{member_id}/energy"]["get"]["operationId"] == "member_energy"
    assert doc["components"]["schemas"]["ErrorDetail"]["properties"]["detail"]["type"] == "string"
    times = [p for ops in paths.values() for op in ops.values()
             for p in op.get("parameters", ()) if p["name"] in ("from", "to")]
    assert len(times) >= 4  # member energy and series, at least
    for param in times:  # on every route: ISO 8601 or Unix seconds, and said so
        forms = {(s.get("type"), s.get("format")) for s in param["schema"]["anyOf"]}
        assert {("string", "date-time"), ("number", None)} <= forms, param
        said = " ".join(s.get("description", "") for s in param["schema"]["anyOf"])
        assert "ISO 8601" in said and "Unix seconds" in said, param
    summary = paths["/api/v1/coop/summary"]["get"]["responses"]["200"]["content"]
    assert summary["application/json"]["schema"] == {"$ref": "#/components/schemas/CoopSummary"}


def test_the_declared_answers_are_the_real_ones(api: TestClient, world: PagesWorld) -> None:
    body = api.get("/api/v1/coop/summary").json()
    summary = CoopSummary.model_validate(body)  # every field typed as sent, none missing
    assert set(body) == set(CoopSummary.model_fields)
    assert set(next(iter(body["by_member"].values()))) == set(
        CoopSummary.model_fields["by_member"].annotation.__args__[1].model_fields)
    assert summary.members == len(summary.by_member)
    for path, code in (("/api/v1/devices", 401), ("/api/v1/members/nobody/energy", 404)):
        headers = {"Authorization": "Bearer wrong"} if code == 401 else {}
        answer = api.get(path, headers=headers)
        assert answer.status_code == code and isinstance(answer.json()["detail"], str)
    headers = {"Authorization": f"Bearer {world.member_secret}"}
    unix = api.get("/api/v1/members/h02/energy", params={"from": 0}, headers=headers)
    iso = api.get("/api/v1/members/h02/energy", params={"from": "1970-01-01T00:00:00Z"},
                  headers=headers)
    assert unix.status_code == iso.status_code == 200, unix.text
    assert unix.json()["liberated_kwh"] == iso.json()["liberated_kwh"]


def test_the_snapshot_is_the_contract() -> None:
    # the committed snapshot carries the same promises (regenerated in its own commit)
    import json
    doc = json.loads((Path(__file__).with_name("openapi_snapshot.json")).read_text())
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert doc["paths"]["/healthz"]["get"]["operationId"] == "healthz"


def _typed(schema: dict, media: str) -> bool:
    """A success body's schema names its shape: a model (or a list, or a nullable one);
    HTML, metrics and the event stream are text."""
    if media != "application/json":
        return schema.get("type") == "string"
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return "$ref" in schema.get("items", {})
    options = schema.get("anyOf", [])
    return any("$ref" in o for o in options) and all(
        "$ref" in o or o.get("type") == "null" for o in options)


def test_every_route_declares_a_typed_answer(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    components = doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            successes = {c: r for c, r in op["responses"].items() if c[0] in "23"}
            assert successes, (method, path)
            for code, response in successes.items():
                content = response.get("content", {})
                assert content or code.startswith("3"), (method, path, code)  # a redirect
                for media, body in content.items():
                    assert _typed(body.get("schema", {}), media), (method, path, code, body)
    for name, schema in components.items():  # every model says what it is (not FastAPI's)
        assert schema.get("description") or name.endswith("ValidationError"), name
    # a number's unit is in its description (or its name: _kwh, _w, _s, _pct, _ts, _h)
    units = ("_kwh", "_w", "_s", "_pct", "_ts", "_h", "_hours", "_wh", "_ms")
    vague = [f"{name}.{field}" for name, schema in components.items()
             for field, spec in schema.get("properties", {}).items()
             if any(o.get("type") == "number" for o in spec.get("anyOf", [spec]))
             and not field.endswith(units) and not spec.get("description")]
    assert not vague, vague
