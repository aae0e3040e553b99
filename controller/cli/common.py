"""Helpers shared by the command groups: config loading and argparse value types."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from controller.config import ConfigError, CoopConfig, load_config

#: What ``parser.set_defaults(func=...)`` holds: parsed arguments in, exit code out.
Command = Callable[[argparse.Namespace], int]


def load_or_report(path: Path) -> CoopConfig | None:
    """The validated config, or ``None`` after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def host_port(text: str) -> tuple[str, int]:
    """Argparse type: ``HOST:PORT``."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def time_of_day(text: str) -> float:
    """Argparse type: ``HH:MM`` as hours since midnight."""
    try:
        hours, minutes = text.split(":")
        value = int(hours) + int(minutes) / 60.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM, got {text!r}") from None
    if not 0 <= value < 24:
        raise argparse.ArgumentTypeError(f"expected a time of day 00:00–23:59, got {text!r}")
    return value


def positive(text: str) -> float:
    """Argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value
