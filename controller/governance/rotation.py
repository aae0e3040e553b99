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
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from controller.config import GovernanceConfig
from controller.governance.audit import AuditLog
from controller.governance.terms import MandateError, issue, max_lifetime_s, term_refusal
from controller.governance.tokens import Role, Token, TokenStore
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


def interval_digest(reader: LedgerReader, start: int | None = None) -> tuple[int, str]:
    """The start and the SHA-256 of the rows of the interval starting at ``start``, by
    default the last committed one (a later check passes the start the audit row names,
    since the ledger has gone on since).

    The rows are the coop row (:meth:`LedgerReader.intervals`, without its
    commit time, which no one else can know) and every member's row
    (:meth:`LedgerReader.raw_rows`, ordered by member id), each one line of
    compact JSON. LookupError on an empty ledger or an interval it does not hold.
    """
    _, last_end, count = reader.span()
    if not count or last_end is None:
        raise LookupError(f"{reader.path}: the ledger has no committed interval yet, so "
                          "there is no seed to draw from")
    start = last_end - reader.step if start is None else int(start)
    if not reader.intervals(start, start + reader.step):
        raise LookupError(f"{reader.path}: no committed interval starts at {start}")
    end = start + reader.step
    lines = [json.dumps(row, sort_keys=True, separators=(",", ":"))
             for row in reader.intervals(start, end)]
    lines += [json.dumps(list(row), separators=(",", ":"))
              for row in reader.raw_rows(start, end)]
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


class RotationRefused(Exception):
    """No candidate may take the mandate; ``str()`` says why for each."""


def rotate(reader: LedgerReader, store: TokenStore, audit: AuditLog, gov: GovernanceConfig,
           role: Role, candidates: list[str], by: str, now: float | None = None,
           lifetime_s: float | None = None) -> tuple[Draw, Token, str]:
    """Draw the next holder of ``role`` by lot and hand over the mandate.

    Candidates past the term limit are left out of the draw (and named in the
    audit row); the draw is among the others. The holders of ``role`` still in
    office are revoked, then the winner's token is issued. Everything goes into
    the audit log: the draw with its seed, each revocation, the new token.
    RotationRefused (recorded) when nobody may take it.
    """
    now = time.time() if now is None else now
    if lifetime_s is not None and lifetime_s > max_lifetime_s(role, gov):
        # Checked before anyone is revoked: a handover must not leave the office empty.
        raise MandateError(f"a {role} token lives at most "
                           f"{max_lifetime_s(role, gov) / 86400:g} days")
    tokens = store.all()
    excluded = {c: why for c in sorted(set(candidates))
                if role == "coordinator" and (why := term_refusal(tokens, c, gov))}
    eligible = [c for c in sorted(set(candidates)) if c not in excluded]
    what: dict[str, object] = {"role": role, "candidates": sorted(set(candidates)),
                               "excluded": excluded}
    if not eligible:
        reason = "; ".join(excluded.values()) or "no candidates"
        audit.append(by, "cli", "rotate", what, f"refused: {reason}", now)
        raise RotationRefused(reason)
    chosen = draw_from_ledger(reader, eligible, datetime.fromtimestamp(now, UTC).date())
    audit.append(by, "cli", "rotate", what | chosen.as_dict(), f"drawn: {chosen.winner}", now)
    for old in tokens:
        if old.role == role and old.state(now) == "active":
            store.revoke(old.id, now)
            audit.append(by, "cli", "token.revoke", {"id": old.id, "role": old.role,
                                                     "label": old.label, "why": "rotation"},
                         "done", now)
    token, secret = issue(store, audit, gov, role=role, member=None, label=chosen.winner,
                          lifetime_s=lifetime_s, by=by, now=now,
                          detail={"rotation_seed": chosen.seed})
    return chosen, token, secret
