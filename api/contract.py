"""The API's published contract: what ``/openapi.json`` promises a generated client.

FastAPI derives most of the document from the routes; three things it cannot know are
added here, from :data:`api.auth.policy.ROUTE_POLICY`, the one table of who may call what:

* **security**: one app-wide dependency reads the token for every route (it declares the
  bearer scheme so the docs have an Authorize button), so FastAPI marks *every* route as
  needing it. A public route is then a route a generated client refuses to call without a
  token. Public routes get no security requirement; the rest keep it.
* **errors**: ``401`` (a bad or missing token) on every route that is not public, ``403``
  on the role routes, ``404`` on a member's routes (another member's, or none: the same
  answer, so membership does not leak) and ``409`` on the island commands, each with the
  one-string ``detail`` the README promises (:class:`ErrorDetail`).
* **typed answers**: a route that builds a plain dict (for speed, or because it always
  has) declares its answer's model with :func:`answers` (``responses=``); the document
  then shows that model alone, not the ``dict`` FastAPI infers from the return annotation,
  while the answer is still encoded as before (no re-validation on the way out: the
  tests hold each real answer to its model).
* **short operation ids**: the endpoint's own name (``member_energy``, ``coop_summary``),
  not FastAPI's ``member_energy_api_v1_members__member_id__energy_get``
  (:func:`operation_id`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api.auth.policy import ISLAND_COMMAND, MEMBER_DATA, PUBLIC, ROUTE_POLICY


class ErrorDetail(BaseModel):
    """Every error but a 422: one string saying what is wrong and what to do."""

    detail: str = Field(description="what is wrong, naming the parameter or the reason")


#: Endpoint names that say too little on their own in a generated client.
_NAMED = {"create": "create_override", "listing": "list_overrides", "end": "end_override",
          "command": "island_command", "end_island": "island_return", "plan": "island_plan",
          "progress": "island_plan_progress", "transitions": "island_transitions",
          "latest": "live", "stream": "live_stream", "scrape": "metrics",
          "report": "coop_report", "verify": "audit_verify", "statement": "member_statement",
          "series": "member_series", "members": "list_members"}


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its endpoint's name, or a clearer one from :data:`_NAMED`
    (unique in this app, checked by a test)."""
    return _NAMED.get(route.name, route.name)


_ERRORS = {
    401: "no token, or a token refused (expired, revoked, unknown)",
    403: "the token's role may not call this route",
    404: "no such member, or one whose figures this caller may not see (the same answer)",
    409: "refused: a precondition failed; the detail names every one",
}


def _errors_for(policy: Any, method: str, path: str) -> list[int]:
    if policy == PUBLIC:
        return []
    codes = [401]
    if isinstance(policy, frozenset) or policy == ISLAND_COMMAND:
        codes.append(403)
    if policy == MEMBER_DATA or "{" in path:
        codes.append(404)
    if policy == ISLAND_COMMAND and method == "post":
        codes.append(409)
    return codes


def answers(model: Any, status: int = 200, description: str = "") -> dict[int | str, Any]:
    """``responses=`` for a route whose ``status`` answer is ``model`` (a pydantic model,
    or ``list[...]``/``... | None`` of one), documented without validating the answer."""
    if not description:
        doc = model.__doc__ if isinstance(model, type) else None
        description = (doc or "Successful Response").strip().split("\n")[0]
    return {status: {"model": model, "description": description}}


def _declares(route: Any) -> bool:
    """Whether ``route`` declares its success answer with :func:`answers` while FastAPI
    also inferred a response model from its return annotation."""
    return (getattr(route, "response_field", None) is not None
            and "model" in (getattr(route, "responses", None) or {}).get(
                getattr(route, "status_code", None) or 200, {}))


class _DeclaredContext(routing.RouteContext):
    """A route as the document sees it when it declares its answer: without the model
    FastAPI inferred from the return annotation (``dict[str, Any]``), which it would
    otherwise merge into the declared model's schema. Serving is untouched."""

    @property
    def response_field(self) -> None:
        return None


def _document_routes(app: FastAPI) -> list[Any]:
    """The app's routes (included routers flattened) for :func:`get_openapi`."""
    out: list[Any] = []
    for ctx in routing.iter_route_contexts(app.routes):
        if _declares(ctx):
            ctx = _DeclaredContext(**{f.name: getattr(ctx, f.name)
                                      for f in dataclasses.fields(ctx)})
        out.append(ctx)
    return out


def contract_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with the policy's security and errors (see the module's doc)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=_document_routes(app))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorDetail"] = ErrorDetail.model_json_schema()
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            policy = ROUTE_POLICY.get((method.upper(), path))
            if policy == PUBLIC:
                op.pop("security", None)
            responses = op.setdefault("responses", {})
            for code in _errors_for(policy, method, path):
                responses.setdefault(str(code), {
                    "description": _ERRORS[code],
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ErrorDetail"}}}})
    return schema


def install_contract(app: FastAPI) -> None:
    """Serve :func:`contract_schema` as ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = contract_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
