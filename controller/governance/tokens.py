"""Access tokens: random secrets, stored only as SHA-256 hashes, each with an expiry.

The store is an SQLite file beside the ledger (:data:`TOKENS_FILE`). The CLI
writes it (``commonwatt token create|revoke``, ``commonwatt rotate``) while the
controller may be running; the API opens a fresh connection per lookup, so a
token created or revoked takes effect on the very next request.

Three kinds of secret map to one token (table ``secrets``):

* ``bearer``: what ``token create`` prints, sent as ``Authorization: Bearer``;
* ``once``: a one-time login link's code, consumed by its first use;
* ``session``: the cookie a web login sets, living no longer than its token.

A secret is 32 random bytes (``secrets.token_urlsafe(32)``); its SHA-256 is
enough as a hash because it is not a password: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from controller.files import private_file

#: The store's file name, beside the ledger.
TOKENS_FILE = "tokens.sqlite"
#: How long a one-time login link stays usable, s.
ONCE_TTL_S = 15 * 60

Role = Literal["public", "member", "installer", "coordinator"]
#: Roles a token can carry (``public`` is what a request without a token gets).
TOKEN_ROLES: tuple[Role, ...] = ("member", "installer", "coordinator")

_DDL = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    member TEXT,
    label TEXT NOT NULL,
    created_ts REAL NOT NULL,
    expires_ts REAL NOT NULL,
    revoked_ts REAL
);
CREATE TABLE IF NOT EXISTS secrets (
    hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    kind TEXT NOT NULL CHECK (kind IN ('bearer', 'once', 'session')),
    expires_ts REAL NOT NULL,
    used_ts REAL
);
"""


class TokenError(Exception):
    """A token that cannot be used; ``str()`` says why (expired, revoked, unknown)."""


@dataclass(frozen=True, slots=True)
class Token:
    """A token's public facts (never its secret)."""

    id: str
    role: Role
    member: str | None
    label: str
    created_ts: float
    expires_ts: float
    revoked_ts: float | None

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_ts is not None:
            return "revoked"
        return "expired" if now >= self.expires_ts else "active"


def secret_hash(secret: str) -> str:
    """The hex SHA-256 stored in place of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` as seconds; ValueError naming the text otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a duration such as 30d, 12h, 90m or 45s, got {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class TokenStore:
    """The tokens of one coop, in ``path`` (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._version: tuple[int, bytes] | None = None
        self._rows: dict[str, tuple | None] = {}

    @classmethod
    def beside(cls, ledger: Path) -> TokenStore:
        """The store beside a ledger file."""
        return cls(Path(ledger).parent / TOKENS_FILE)

    def _connect(self) -> sqlite3.Connection:
        private_file(self.path)  # secrets' hashes: owner-only (controller.files)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.executescript(_DDL)
        return conn

    def _read(self) -> sqlite3.Connection | None:
        # Readers never create the file: a coop without tokens has only the public.
        if not self.path.exists():
            return None
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)

    def create(self, role: Role, member: str | None, label: str, expires_ts: float,
               now: float | None = None) -> tuple[Token, str]:
        """A new token and its bearer secret (shown once, stored only as a hash)."""
        if role not in TOKEN_ROLES:
            raise ValueError(f"role {role!r}: expected one of {', '.join(TOKEN_ROLES)}")
        if (role == "member") != (member is not None):
            raise ValueError("a member token names its member (--member); other roles do not")
        now = time.time() if now is None else now
        secret = secrets.token_urlsafe(32)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            token_id = self._new_id(conn)
            conn.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                         (token_id, role, member, label, now, expires_ts))
            conn.execute("INSERT INTO secrets VALUES (?, ?, 'bearer', ?, NULL)",
                         (secret_hash(secret), token_id, expires_ts))
            conn.execute("COMMIT")
        finally:
            conn.close()
        return Token(token_id, role, member, label, now, expires_ts, None), secret

    @staticmethod
    def _new_id(conn: sqlite3.Connection) -> str:
        # Short, so it can be typed for `token revoke`; it is not a secret.
        while True:
            token_id = secrets.token_hex(4)
            if conn.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone() is None:
                return token_id

    def add_secret(self, token_id: str, kind: Literal["once", "session"],
                   ttl_s: float, now: float | None = None) -> str:
        """A one-time code or a session secret for an active token; TokenError otherwise."""
        now = time.time() if now is None else now
        token = self.get(token_id)
        if token is None:
            raise TokenError(f"no token with id {token_id!r}")
        if token.state(now) != "active":
            raise TokenError(f"token {token_id} is {token.state(now)}")
        secret = secrets.token_urlsafe(32)
        conn = self._connect()
        try:
            conn.execute("INSERT INTO secrets VALUES (?, ?, ?, ?, NULL)",
                         (secret_hash(secret), token_id, kind,
                          min(now + ttl_s, token.expires_ts)))
        finally:
            conn.close()
        return secret

    def get(self, token_id: str) -> Token | None:
        """The token with this id, if any."""
        conn = self._read()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        finally:
            conn.close()
        return None if row is None else Token(*row)

    def all(self) -> list[Token]:
        """Every token, oldest first."""
        conn = self._read()
        if conn is None:
            return []
        try:
            rows = conn.execute("SELECT * FROM tokens ORDER BY created_ts, id").fetchall()
        finally:
            conn.close()
        return [Token(*r) for r in rows]

    def revoke(self, token_id: str, now: float | None = None) -> Token:
        """Revoke a token (and with it its sessions and links); KeyError if unknown."""
        now = time.time() if now is None else now
        conn = self._connect()
        try:
            changed = conn.execute("UPDATE tokens SET revoked_ts = ? WHERE id = ? AND "
                                   "revoked_ts IS NULL", (now, token_id)).rowcount
        finally:
            conn.close()
        token = self.get(token_id)
        if token is None:
            raise KeyError(token_id)
        if not changed:
            raise TokenError(f"token {token_id} was already revoked")
        return token

    def _file_version(self) -> tuple[int, bytes] | None:
        """The file's inode and SQLite's file change counter (header bytes 24-27), which
        every commit increments in the rollback-journal mode used here: an exact "has
        anything changed", unlike an mtime that two quick writes can share."""
        try:
            with open(self.path, "rb") as f:
                return os.fstat(f.fileno()).st_ino, f.read(28)[24:28]
        except FileNotFoundError:
            return None

    def _lookup(self, digest: str) -> tuple | None:
        # Cached until the file changes: a revocation counts on the very next request,
        # yet an unchanged store costs one 28-byte read instead of an SQLite connection.
        version = self._file_version()
        with self._lock:
            if version != self._version:
                self._version, self._rows = version, {}
            if digest in self._rows:
                return self._rows[digest]
        row = None
        conn = self._read()
        if conn is not None:
            try:
                row = conn.execute(
                    "SELECT s.kind, s.expires_ts, s.used_ts, t.* FROM secrets s JOIN tokens t "
                    "ON t.id = s.token_id WHERE s.hash = ?", (digest,)).fetchone()
            finally:
                conn.close()
        with self._lock:
            if self._version == version and len(self._rows) < 10_000:
                self._rows[digest] = row
        return row

    def resolve(self, secret: str, kinds: tuple[str, ...] = ("bearer", "session"),
                now: float | None = None) -> Token:
        """The active token behind a secret; TokenError saying why not."""
        now = time.time() if now is None else now
        row = self._lookup(secret_hash(secret))
        if row is None or row[0] not in kinds:
            raise TokenError("unknown token")
        kind, expires_ts, used_ts, token = row[0], row[1], row[2], Token(*row[3:])
        if token.revoked_ts is not None:
            raise TokenError(f"token {token.id} was revoked")
        if now >= token.expires_ts:
            raise TokenError(f"token {token.id} expired")
        if now >= expires_ts:
            raise TokenError(f"this {kind} of token {token.id} expired")
        if used_ts is not None:
            raise TokenError(f"this one-time link of token {token.id} was already used"
                             if kind == "once" else f"this session of token {token.id} ended")
        return token

    def end_session(self, secret: str, now: float | None = None) -> None:
        """Log a session out (its secret is refused from now on)."""
        conn = self._connect()
        try:
            conn.execute("UPDATE secrets SET used_ts = ? WHERE hash = ? AND kind = 'session'",
                         (time.time() if now is None else now, secret_hash(secret)))
        finally:
            conn.close()

    def consume_once(self, code: str, now: float | None = None) -> Token:
        """Use a one-time login code: its token, and the code is spent (TokenError if not)."""
        now = time.time() if now is None else now
        token = self.resolve(code, ("once",), now)
        conn = self._connect()
        try:
            # Conditional update: of two requests racing with one code, only one wins.
            spent = conn.execute("UPDATE secrets SET used_ts = ? WHERE hash = ? AND "
                                 "used_ts IS NULL", (now, secret_hash(code))).rowcount
        finally:
            conn.close()
        if not spent:
            raise TokenError(f"this one-time link of token {token.id} was already used")
        return token
