"""Rotation by lot, from a seed anyone can recompute.

The seed is ``sha256("<interval digest>:<YYYY-MM-DD>")``: the digest of the
last settlement interval the ledger has committed (:func:`interval_digest`)
and the UTC date of the draw. Nobody can choose the last interval's energy,
and any member with a copy of the ledger (or the published CSV) can recompute
the digest. The draw is then plain arithmetic: the candidates are sorted, and
the one at ``int(seed, 16) mod n`` wins, so the order in which they were typed
does not matter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date

from controller.ledger import LedgerReader


@dataclass(frozen=True, slots=True)
class Draw:
    """One draw: what went in and who came out."""

    interval_start: int
    interval_digest: str
    day: str
    seed: str
    candidates: tuple[str, ...]
    winner: str

    def as_dict(self) -> dict[str, object]:
        """For the audit log."""
        return {"interval_start": self.interval_start, "interval_digest": self.interval_digest,
                "day": self.day, "seed": self.seed, "candidates": list(self.candidates),
                "winner": self.winner}


def interval_digest(reader: LedgerReader) -> tuple[int, str]:
    """The last committed interval's start and the SHA-256 of its rows.

    The rows are the coop row (:meth:`LedgerReader.intervals`, without its
    commit time, which no one else can know) and every member's row
    (:meth:`LedgerReader.raw_rows`, ordered by member id), each one line of
    compact JSON. LookupError on an empty ledger.
    """
    _, last_end, count = reader.span()
    if not count or last_end is None:
        raise LookupError(f"{reader.path}: the ledger has no committed interval yet, so "
                          "there is no seed to draw from")
    start = last_end - reader.step
    lines = [json.dumps(row, sort_keys=True, separators=(",", ":"))
             for row in reader.intervals(start, last_end)]
    lines += [json.dumps(list(row), separators=(",", ":"))
              for row in reader.raw_rows(start, last_end)]
    return start, hashlib.sha256("\n".join(lines).encode()).hexdigest()


def seed_of(digest: str, day: date) -> str:
    """The draw's seed from the interval digest and the UTC date."""
    return hashlib.sha256(f"{digest}:{day.isoformat()}".encode()).hexdigest()


def draw(seed: str, candidates: list[str] | tuple[str, ...]) -> str:
    """The winner among ``candidates`` (sorted, duplicates dropped) for this seed."""
    pool = sorted(set(candidates))
    if not pool:
        raise ValueError("no candidates to draw from")
    return pool[int(seed, 16) % len(pool)]


def draw_from_ledger(reader: LedgerReader, candidates: list[str], day: date) -> Draw:
    """Seed from the ledger's last committed interval and ``day``, then draw."""
    start, digest = interval_digest(reader)
    seed = seed_of(digest, day)
    return Draw(start, digest, day.isoformat(), seed, tuple(sorted(set(candidates))),
                draw(seed, candidates))
