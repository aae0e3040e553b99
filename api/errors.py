"""One shape for every error body: ``{"detail": ...}``, naming the parameter at fault.

FastAPI already answers validation errors with ``{"detail": [{"loc": [...], "msg": ...}]}``
and ``HTTPException`` with ``{"detail": "..."}``. What it leaves out: its ``msg`` does
not say *which* parameter failed (only ``loc`` does, which a person reading a browser tab
or a log line skips), and an unexpected exception comes back as a plain-text
``Internal Server Error``. :func:`install_error_shape` closes both gaps, so a client can
always read ``response.json()["detail"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

#: Where a request parameter comes from, as FastAPI names it in ``loc[0]``.
_SOURCES = {"query": "query parameter", "path": "path parameter", "header": "header",
            "cookie": "cookie", "body": "body field"}


def bad_query(name: str, message: str, value: object) -> RequestValidationError:
    """A 422 about query parameter ``name``, in the same shape as FastAPI's own."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", name),
                                    "msg": message, "input": value}])


def _where(loc: Sequence[Any]) -> str:
    """``('query', 'from')`` → ``query parameter 'from'``; a body path joined by dots."""
    if not loc:
        return "request"
    source = _SOURCES.get(str(loc[0]))
    rest = [str(p) for p in loc[1:]] if source else [str(p) for p in loc]
    if source is None:
        return ".".join(rest)
    return f"{source} '{'.'.join(rest)}'" if rest else source


def _named(error: dict[str, Any]) -> dict[str, Any]:
    """The error with its message prefixed by the parameter it is about (once)."""
    where = _where(error.get("loc") or ())
    msg = str(error.get("msg", ""))
    # Messages raised by our own routes may already name the parameter; say it once.
    name = str((error.get("loc") or ("", ""))[-1])
    if f"'{name}'" not in msg:
        msg = f"{where}: {msg}"
    out = {k: v for k, v in error.items() if k not in ("url", "ctx")}
    # ctx can hold the exception object itself; its text is already in msg.
    return out | {"msg": msg}


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_named(dict(e)) for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the log, not to the client: it may name files and hosts.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the "
                         "controller's log"}, status_code=500)


def install_error_shape(app: FastAPI) -> None:
    """Answer validation errors and unexpected exceptions as ``{"detail": ...}``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
