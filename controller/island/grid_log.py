"""The grid log: every change of grid state, noted fault and refused command, for the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from controller.island.grid_model import TransitionRecord


def _iso(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC, ``2026-06-21T04:30:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TransitionLog:
    """Append-only: records are added, never changed or removed.

    Refusals are kept too (``refused``), with who asked and why, so members can
    see why the island they were promised did not happen.
    """

    def __init__(self) -> None:
        self._records: list[TransitionRecord] = []

    def append(self, record: TransitionRecord | None) -> None:
        """Add a record; None (a step that changed nothing) is skipped.

        So the controller can write ``log.append(step(...).record)`` and
        ``log.append(refusal.record(machine.state))`` alike.
        """
        if record is not None:
            self._records.append(record)

    @property
    def records(self) -> tuple[TransitionRecord, ...]:
        """The records, oldest first (a copy: the log itself stays append-only)."""
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[TransitionRecord]:
        return iter(tuple(self._records))

    def as_rows(self) -> list[dict[str, object]]:
        """JSON-ready rows for an API table, oldest first."""
        return [
            {
                "time": _iso(r.ts),
                "from": r.from_state.name,
                "to": r.to_state.name,
                "cause": r.cause,
                "requested_by": r.requested_by,
                "refused": r.refused,
            }
            for r in self._records
        ]
