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


def number_in(low: float, high: float, what: str, bounds: str, *,
              low_open: bool = False) -> Callable[[str], float]:
    """Argparse type: a number from ``low`` (excluded when ``low_open``) to ``high``;
    ``what`` names it and ``bounds`` words the range in the error."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"expected {bounds}, got {text!r}")
        return value

    return parse


#: Argparse type: a number above 0.
positive = number_in(0.0, float("inf"), "a number", "a number above 0", low_open=True)
