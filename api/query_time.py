"""The time a query parameter may hold: ISO 8601, or Unix *seconds*.

Pydantic reads a number above 2e10 as milliseconds. A client that sends
milliseconds where seconds are documented gets an answer about the wrong time
and never knows; this type refuses such a number instead, and FastAPI's error
(shaped by :mod:`api.errors`) names the parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from controller.accounts.figures import seconds_problem


def _seconds_only(value: object) -> object:
    if isinstance(value, bool):
        return value
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value  # ISO 8601, checked by pydantic
    if number is not None:
        problem = seconds_problem(number)
        if problem is not None:
            raise ValueError(problem)
    return value


#: How OpenAPI declares it: both forms it takes, so a generated client may send either.
TIME_SCHEMA = {"anyOf": [
    {"type": "string", "format": "date-time",
     "description": "ISO 8601; UTC when it has no offset"},
    {"type": "number", "description": "Unix seconds (not milliseconds: refused)"},
]}
#: ``datetime`` for ``from``/``to`` query parameters, refusing milliseconds.
QueryTime = Annotated[datetime, BeforeValidator(_seconds_only), WithJsonSchema(TIME_SCHEMA)]
