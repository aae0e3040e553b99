"""The API's side of authentication: from a request to a :class:`Viewer`, or a refusal.

:meth:`Authority.authorize` is a dependency of the whole app: it reads the
token (``Authorization: Bearer`` or the login cookie), looks up the route in
:data:`~api.auth.policy.ROUTE_POLICY` and answers

* 401 when a token is sent but unknown, expired or revoked (the detail says
  which), or when a route needs a token and none is sent;
* 403 when the token's role is not enough;
* 404 for another member's figures (as for an unknown member).

The token store is read on every request that carries a token, so a token
created or revoked from the CLI counts at once.
"""

from __future__ import annotations

import ipaddress
import re
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.policy import (
    ISLAND_COMMAND,
    MEMBER_DATA,
    PUBLIC,
    ROUTE_POLICY,
    Principal,
    Viewer,
    id_pattern,
)
from controller.accounts.export import pseudonym_salt
from controller.config import CoopConfig, GovernanceConfig
from controller.governance.audit import AuditLog
from controller.governance.tokens import TokenError, TokenStore
from controller.ledger import LedgerReader

#: The login cookie (a session secret, never the token itself).
COOKIE = "commonwatt_session"
_BEARER = HTTPBearer(auto_error=False, description="a token from 'commonwatt token create'")


def hidden_member(member_id: str) -> HTTPException:
    """The 404 for a member this caller may not see: word for word the unknown member's."""
    return HTTPException(404, f"member_id {member_id!r} is not a member of this coop")


def is_loopback(request: Request) -> bool:
    """From this host directly: a loopback peer and no proxy's forwarding header (behind a
    reverse proxy on the same host, every peer is loopback, so that alone proves nothing)."""
    if any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip")):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"  # Starlette's TestClient, in process


class Authority:
    """Tokens, audit log and the coop's public members for one API."""

    def __init__(self, store: TokenStore, audit: AuditLog, reader: LedgerReader | None,
                 public_members: frozenset[str] = frozenset(),
                 governance: GovernanceConfig | None = None) -> None:
        self.store = store
        self.audit = audit
        self.reader = reader
        self.public_members = public_members
        self.governance = governance or GovernanceConfig()
        self._salt: str | None = None
        self._ids: tuple[frozenset[str], re.Pattern[str] | None] | None = None
        self._ids_checked = 0.0

    @classmethod
    def beside(cls, ledger: Path, reader: LedgerReader | None = None,
               config: CoopConfig | None = None) -> Authority:
        """The tokens and the audit log beside the ledger, as the CLI writes them."""
        public = frozenset(m.id for m in config.members if m.public) if config else frozenset()
        return cls(TokenStore.beside(ledger), AuditLog.beside(ledger), reader, public,
                   config.governance if config else None)

    def salt(self) -> str:
        """The ledger's pseudonym salt (read once; a ledger without one hashes with '')."""
        if self._salt is None:
            try:
                self._salt = pseudonym_salt(self.reader) if self.reader else ""
            except LookupError:
                self._salt = ""
        return self._salt

    def member_pattern(self) -> re.Pattern[str] | None:
        """The member-id regex for :meth:`Viewer.scrub`; the ledger's members are read again
        at most every few seconds (a member added while the controller runs)."""
        now = time.monotonic()
        if self._ids is None or now - self._ids_checked > 5.0:
            self._ids_checked = now
            ids = frozenset(m for m, _ in self.reader.members()) if self.reader else frozenset()
            if self._ids is None or self._ids[0] != ids:
                self._ids = (ids, id_pattern(ids))
        return self._ids[1]

    def principal(self, request: Request) -> Principal:
        """Who sends the request; 401 for a bad token."""
        loopback = is_loopback(request)
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise HTTPException(401, "Authorization: expected 'Bearer <token>'",
                                    {"WWW-Authenticate": "Bearer"})
            return self._from_secret(secret.strip(), loopback)
        cookie = request.cookies.get(COOKIE)
        if cookie:
            try:
                return self._from_secret(cookie, loopback)
            except HTTPException as exc:
                # A stale cookie still shows the public pages (and the login form).
                return Principal(loopback=loopback, refused=str(exc.detail))
        return Principal(loopback=loopback)

    def _from_secret(self, secret: str, loopback: bool) -> Principal:
        try:
            token = self.store.resolve(secret)
        except TokenError as exc:
            raise HTTPException(401, f"token refused: {exc}",
                                {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        return Principal(token.role, token.member, token.label, token.id, loopback)

    def authorize(self, request: Request,
                  _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
                  ) -> Viewer:
        """The app-wide dependency: the caller's :class:`Viewer`, or the refusal.

        (``_`` only declares the bearer scheme in OpenAPI, for the docs' Authorize
        button; the header is read and judged here, with the cookie.)"""
        cached = getattr(request.state, "viewer", None)
        if cached is not None:
            return cached
        principal = self.principal(request)
        route = request.scope.get("route")
        method = "GET" if request.method == "HEAD" else request.method
        policy = ROUTE_POLICY.get((method, getattr(route, "path", "")))
        viewer = Viewer(principal, self.public_members, self.salt(), self.member_pattern())
        if policy is None:
            raise HTTPException(403, "this route has no access policy, so nobody may call it")
        if policy != PUBLIC and principal.refused:
            raise HTTPException(401, principal.refused, {"WWW-Authenticate": "Bearer"})
        if policy == MEMBER_DATA:
            member_id = str(request.path_params.get("member_id", ""))
            if not viewer.sees(member_id):
                raise hidden_member(member_id)
        elif policy == ISLAND_COMMAND:
            if principal.role != "coordinator" and not (principal.token_id is None
                                                        and principal.loopback):
                self._refuse(principal, frozenset({"coordinator"}))
        elif policy != PUBLIC and principal.role not in policy:
            self._refuse(principal, policy)  # type: ignore[arg-type]
        request.state.viewer = viewer
        return viewer

    @staticmethod
    def _refuse(principal: Principal, roles: frozenset[str]) -> None:
        needed = " or ".join(sorted(roles))
        if principal.token_id is None:
            raise HTTPException(401, f"this needs a {needed} token (Authorization: Bearer)",
                                {"WWW-Authenticate": "Bearer"})
        raise HTTPException(403, f"a {principal.role} token may not do this; it needs a "
                                 f"{needed} token")


def viewer_of(request: Request) -> Viewer:
    """The viewer :meth:`Authority.authorize` found for this request (public if none ran)."""
    return getattr(request.state, "viewer", None) or Viewer(Principal())
