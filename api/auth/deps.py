"""The API's side of authentication: from a request to a :class:`Viewer`, or a refusal.

:meth:`Authority.authorize` is a dependency of the whole app: it reads the
token (``Authorization: Bearer`` or the login cookie), looks up the route in
:data:`~api.auth.policy.ROUTE_POLICY` and answers

* 401 when a token is sent but unknown, expired or revoked (the detail says
  which), or when a route needs a token and none is sent;
* 403 when the token's role is not enough, or when a state-changing request on
  the session cookie does not come from this API's own origin
  (:func:`~api.auth.client.check_origin`);
* 404 for another member's figures or commands (as for an unknown member);
* 429 when this client or this token prefix has failed to log in too often
  (:mod:`api.auth.throttle`); each failure is written to the audit log.

Where the request comes from (:func:`~api.auth.client.client_of`) allows nothing
by itself: the island command without a token needs the local secret, or
``[api] local_commands`` and a loopback peer with no proxy in between.

The token store is read on every request that carries a token, so a token
created or revoked from the CLI counts at once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.client import Client, Network, check_origin, client_of
from api.auth.policy import (
    ISLAND_COMMAND,
    MEMBER_COMMAND,
    MEMBER_DATA,
    PUBLIC,
    ROUTE_POLICY,
    Principal,
    Viewer,
    id_pattern,
)
from api.auth.throttle import LoginThrottle, keys_of
from controller.accounts.export import pseudonym_salt
from controller.config import ApiConfig, CoopConfig, GovernanceConfig
from controller.governance.audit import AuditLog
from controller.governance.local import is_local_secret, local_secret_path, read_local_secret
from controller.governance.tokens import TokenError, TokenStore
from controller.ledger import LedgerReader

#: The login cookie (a session secret, never the token itself).
COOKIE = "commonwatt_session"
_BEARER = HTTPBearer(auto_error=False, description="a token from 'commonwatt token create'")


def hidden_member(member_id: str) -> HTTPException:
    """The 404 for a member this caller may not see: word for word the unknown member's."""
    return HTTPException(404, f"member_id {member_id!r} is not a member of this coop")


class Authority:
    """Tokens, audit log and the coop's public members for one API."""

    def __init__(self, store: TokenStore, audit: AuditLog, reader: LedgerReader | None,
                 public_members: frozenset[str] = frozenset(),
                 governance: GovernanceConfig | None = None,
                 api: ApiConfig | None = None, local_secret: Path | None = None) -> None:
        self.store = store
        self.audit = audit
        self.reader = reader
        self.public_members = public_members
        self.governance = governance or GovernanceConfig()
        api = api or ApiConfig()
        self.trusted: tuple[Network, ...] = api.proxy_networks()
        #: ``[api] local_commands``: loopback alone may command the island without a token.
        self.local_commands = api.local_commands
        #: The running controller's local secret file (:mod:`controller.governance.local`).
        self.local_secret_file = local_secret
        self.throttle = LoginThrottle()
        self._salt: str | None = None
        self._ids: tuple[frozenset[str], re.Pattern[str] | None] | None = None
        self._ids_checked = 0.0

    @classmethod
    def beside(cls, ledger: Path, reader: LedgerReader | None = None,
               config: CoopConfig | None = None) -> Authority:
        """The tokens and the audit log beside the ledger, as the CLI writes them."""
        public = frozenset(m.id for m in config.members if m.public) if config else frozenset()
        return cls(TokenStore.beside(ledger), AuditLog.beside(ledger), reader, public,
                   config.governance if config else None, config.api if config else None,
                   local_secret_path(ledger))

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
        """Who sends the request; 401 for a bad token, 429 for a client locked out."""
        client = client_of(request, self.trusted)
        request.state.client = client
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise HTTPException(401, "Authorization: expected 'Bearer <token>'",
                                    {"WWW-Authenticate": "Bearer"})
            return self._from_secret(secret.strip(), client, "bearer")
        cookie = request.cookies.get(COOKIE)
        if cookie:
            try:
                return self._from_secret(cookie, client, None)
            except HTTPException as exc:
                if exc.status_code == 429:
                    raise
                # A stale cookie still shows the public pages (and the login form).
                return Principal(loopback=client.loopback, refused=str(exc.detail))
        # Being on this host is not enough by itself: a proxy or tunnel on the host looks
        # the same. Only [api] local_commands says that none can reach the API.
        return Principal(loopback=client.loopback,
                         local=self.local_commands and client.loopback,
                         label="this host (loopback)" if client.loopback else "public")

    def check_attempt(self, client: Client, secret: str | None) -> None:
        """429 when this client or this secret's prefix is locked out of logging in."""
        wait = self.throttle.locked_for(keys_of(client.address, secret))
        if wait > 0:
            raise HTTPException(429, f"too many failed logins from this client: try again "
                                     f"in {wait:.0f} s", {"Retry-After": str(int(wait) + 1)})

    def login_failed(self, client: Client, secret: str | None, via: str, why: str) -> None:
        """Count a failed login and write it to the audit log (never the secret)."""
        lock = self.throttle.failed(keys_of(client.address, secret))
        detail = {"client": client.address, "via": via, "proxied": client.proxied}
        self.audit.append(client.address, "public", "login.failed", detail, f"refused: {why}")
        if lock:
            self.audit.append(client.address, "public", "login.locked",
                              detail | {"lock_s": lock}, f"locked out for {lock:.0f} s")

    def _from_secret(self, secret: str, client: Client, via: str | None) -> Principal:
        """``via`` None: the session cookie (a stale one is not a failed login)."""
        self.check_attempt(client, secret if via else None)
        if (via == "bearer" and secret.startswith("local-") and self.local_secret_file is not None
                and is_local_secret(secret, read_local_secret(self.local_secret_file))):
            return Principal(label="this host (local secret)", loopback=client.loopback,
                             local=True)
        try:
            token = self.store.resolve(secret)
        except TokenError as exc:
            if via is not None:
                self.login_failed(client, secret, via, str(exc))
            raise HTTPException(401, f"token refused: {exc}",
                                {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        return Principal(token.role, token.member, token.label, token.id, client.loopback)

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
        check_origin(request, request.state.client, self.trusted,
                     cookie=COOKIE in request.cookies and "authorization" not in request.headers)
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
        elif policy == MEMBER_COMMAND:
            member_id = str(request.path_params.get("member_id", ""))
            if principal.role == "member" and principal.member != member_id:
                raise hidden_member(member_id)  # another household: as if there were none
            if principal.role not in ("member", "coordinator"):
                self._refuse(principal, frozenset({"member", "coordinator"}))
        elif policy == ISLAND_COMMAND:
            if principal.role != "coordinator" and not principal.local:
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
