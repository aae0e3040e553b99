"""Rotation by lot, committed before it is revealed: nobody can steer the draw.

A draw that took "the last committed interval" when the command ran could be
steered by choosing when to run it (over 12 intervals each of three candidates
won at least twice, #18). So a rotation is two steps:

1. ``rotate announce`` (:func:`announce`) writes to the audit log the
   candidates, the :data:`RULES` and ``decide_from``: the first settlement
   boundary after the announcement. Nobody can know the energy of the
   interval starting there.
2. ``rotate draw`` (:func:`rotate`) takes exactly that interval (the first the
   ledger committed from ``decide_from``, a gap skipped), once. The seed is
   ``sha256("<interval digest>:<announcement row hash>")``, the winner the
   sorted eligible candidate at ``int(seed, 16) mod n``. Running it an hour or
   a month later draws the same winner; a second draw for the announcement is
   refused; a second announcement is refused while one waits for its draw.

``audit draw`` recomputes a draw from the ledger and the two audit rows
(:func:`reveal`), and checks that the interval is the one announced and that
the announcement preceded it. :func:`draw_from_ledger` and :func:`seed_of` are
the old, steerable draw, kept to recompute rows written before.
"""

from __future__ import annotations

import hashlib
import json
import math
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
    """No candidate may take the mandate, or the draw may not happen (yet); ``str()`` says
    why."""


#: What an announcement commits to, word for word in its audit row.
RULES = ("the seed is sha256('<digest of the deciding interval>:<hash of this announcement "
         "row>'); the deciding interval is the first the ledger commits that starts at or "
         "after decide_from (the first settlement boundary after the announcement, so it "
         "closes at least one full interval later); the winner is the eligible candidate at "
         "int(seed, 16) mod n, candidates sorted; one draw per announcement")


@dataclass(frozen=True, slots=True)
class Announcement:
    """A rotation announced in the audit log (commit), to be drawn later (reveal)."""

    seq: int
    hash: str
    ts: float
    role: Role
    eligible: tuple[str, ...]
    decide_from: int
    step: int

    @classmethod
    def of(cls, row: dict[str, object]) -> Announcement:
        """From its audit row (action ``rotate.announce``)."""
        d = json.loads(str(row["detail"]))
        return cls(int(row["seq"]), str(row["hash"]), float(row["ts"]),  # type: ignore[arg-type]
                   d["role"], tuple(d["eligible"]), int(d["decide_from"]), int(d["step"]))


def decide_from(announced_ts: float, step: int) -> int:
    """The start of the first interval wholly after ``announced_ts``: nobody can know its
    energy when the announcement is made."""
    return int(math.ceil(announced_ts / step)) * step


def deciding_interval(reader: LedgerReader, start: int) -> int | None:
    """The first committed interval starting at or after ``start`` (a gap skipped), or None
    while the ledger has not committed one."""
    _, last_end, count = reader.span()
    if not count or last_end is None:
        return None
    window = 96 * reader.step
    lo = start
    while lo < last_end:
        rows = reader.intervals(lo, lo + window)
        if rows:
            return int(rows[0]["start_ts"])  # type: ignore[call-overload]
        lo += window
    return None


def seed_of_announced(digest: str, announcement_hash: str) -> str:
    """The seed of an announced draw: the deciding interval's digest and the announcement."""
    return hashlib.sha256(f"{digest}:{announcement_hash}".encode()).hexdigest()


def _rows(audit: AuditLog, action: str) -> list[dict[str, object]]:
    out, after = [], 0
    while batch := audit.rows(after, 5000):
        out += [r for r in batch if r["action"] == action]
        after = batch[-1]["seq"]
    return out


def pending(audit: AuditLog, role: Role) -> Announcement | None:
    """The announcement of ``role`` not drawn yet (at most one), or None."""
    drawn = {json.loads(str(r["detail"])).get("announcement_seq") for r in _rows(audit, "rotate")}
    for row in _rows(audit, "rotate.announce"):
        if row["outcome"] != "announced":
            continue  # a refused announcement commits to nothing
        a = Announcement.of(row)
        if a.role == role and a.seq not in drawn:
            return a
    return None


def announce(step: int, store: TokenStore, audit: AuditLog, gov: GovernanceConfig, role: Role,
             candidates: list[str], by: str, now: float | None = None) -> Announcement:
    """Commit to a draw: the candidates, the rules and the deciding interval, in the audit log.

    Refused (recorded) while an announcement of ``role`` waits for its draw: announcing
    again until the next one looks better would steer the lot. Candidates past the term
    limit are named and left out, as they would be at a draw."""
    now = time.time() if now is None else now
    pool = sorted(set(candidates))
    tokens = store.all()
    excluded = {c: why for c in pool
                if role == "coordinator" and (why := term_refusal(tokens, c, gov))}
    eligible = [c for c in pool if c not in excluded]
    what: dict[str, object] = {"role": role, "candidates": pool, "excluded": excluded,
                               "eligible": eligible, "rules": RULES, "step": step,
                               "decide_from": decide_from(now, step)}
    waiting = pending(audit, role)
    if waiting is not None:
        why = f"announcement {waiting.seq} of {role} is not drawn yet"
        audit.append(by, "cli", "rotate.announce", what, f"refused: {why}", now)
        raise RotationRefused(why)
    if not eligible:
        reason = "; ".join(excluded.values()) or "no candidates"
        audit.append(by, "cli", "rotate.announce", what, f"refused: {reason}", now)
        raise RotationRefused(reason)
    row = audit.append(by, "cli", "rotate.announce", what, "announced", now)
    return Announcement.of(row)


def reveal(reader: LedgerReader, a: Announcement) -> Draw:
    """The draw an announcement decides, from the ledger; RotationRefused until the deciding
    interval is committed. Anyone can run it: it depends on nothing but the two logs."""
    start = deciding_interval(reader, a.decide_from)
    if start is None:
        raise RotationRefused(f"the deciding interval (from {a.decide_from}) is not "
                              "committed yet: draw once the ledger has closed it")
    _, digest = interval_digest(reader, start)
    seed = seed_of_announced(digest, a.hash)
    return Draw(start, digest, datetime.fromtimestamp(start, UTC).date().isoformat(), seed,
                a.eligible, draw(seed, a.eligible))


def rotate(reader: LedgerReader, store: TokenStore, audit: AuditLog, gov: GovernanceConfig,
           role: Role, by: str, now: float | None = None,
           lifetime_s: float | None = None) -> tuple[Draw, Token, str]:
    """Draw the announced rotation of ``role`` and hand over the mandate.

    Exactly the announced interval decides, once: a second draw for the same
    announcement is refused (there is no pending one any more). The holders of ``role``
    still in office are revoked, then the winner's token is issued. Everything goes into
    the audit log: the draw with its seed and announcement, each revocation, the token.
    """
    now = time.time() if now is None else now
    if lifetime_s is not None and lifetime_s > max_lifetime_s(role, gov):
        # Checked before anyone is revoked: a handover must not leave the office empty.
        raise MandateError(f"a {role} token lives at most "
                           f"{max_lifetime_s(role, gov) / 86400:g} days")
    a = pending(audit, role)
    if a is None:
        why = f"no announced rotation of {role} waits for its draw: run 'rotate announce'"
        audit.append(by, "cli", "rotate.draw", {"role": role}, f"refused: {why}", now)
        raise RotationRefused(why)
    chosen = reveal(reader, a)
    audit.append(by, "cli", "rotate", {"role": role, "announcement_seq": a.seq,
                                       "announcement_hash": a.hash} | chosen.as_dict(),
                 f"drawn: {chosen.winner}", now)
    for old in store.all():
        if old.role == role and old.state(now) == "active":
            store.revoke(old.id, now)
            audit.append(by, "cli", "token.revoke", {"id": old.id, "role": old.role,
                                                     "label": old.label, "why": "rotation"},
                         "done", now)
    token, secret = issue(store, audit, gov, role=role, member=None, label=chosen.winner,
                          lifetime_s=lifetime_s, by=by, now=now,
                          detail={"rotation_seed": chosen.seed})
    return chosen, token, secret
