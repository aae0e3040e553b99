"""Coop-level figures computed from per-member totals."""

from __future__ import annotations

from collections.abc import Iterable


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index: 1 when everyone is equal, 1/n when one member has all."""
    xs = list(values)
    if not xs or not any(xs):
        return None
    return round(sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs)), 4)
