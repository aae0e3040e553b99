"""Turns pydantic validation errors into one line per problem that names the field.

Used for every file a person writes by hand (the coop configuration, device
templates), so that each mistake reads ``file: key.path = value: expected``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def key_path(loc: tuple[Any, ...]) -> str:
    """``members[1].devices[0].port`` from a pydantic error location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        for arg in args:
            candidates += list(getattr(arg, "__args__", ()))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)


def format_errors(
    source: str, data: dict[str, Any], error: ValidationError, root: type[BaseModel]
) -> str:
    """One line per problem: ``file: key.path = value: what was expected``."""
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if not loc:
            # A check across the whole file: its message names each key path itself.
            message = err["msg"].removeprefix("Value error, ")
            lines += [f"{source}: {line}" for line in message.splitlines()]
            continue
        path = key_path(loc)
        if err["type"] == "extra_forbidden":
            fields = _allowed_keys(root, loc)
            hint = f"; allowed keys here: {', '.join(fields)}" if fields else ""
            lines.append(f"{source}: {path}: unknown key{hint}")
            continue
        if err["type"] == "missing":
            lines.append(f"{source}: {path}: required key is missing")
            continue
        value = _lookup(data, loc) if loc else None
        message = err["msg"].removeprefix("Value error, ")
        shown = f" = {value!r}" if value is not None and not isinstance(value, dict | list) else ""
        lines.append(f"{source}: {path}{shown}: {message}")
    return "\n".join(lines)


def read_text(path: Path, error: type[Exception]) -> str:
    """A configuration file's text; ``error`` naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None


def parse_toml(text: str, source: str, model: type[M], error: type[Exception]) -> M:
    """TOML text validated as ``model``; raises ``error`` with one line per problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(format_errors(source, data, exc, model)) from None
