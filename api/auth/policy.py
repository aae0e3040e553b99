"""Who may call what: the roles, the route table, and whose figures a caller may see.

Every route of the API is listed in :data:`ROUTE_POLICY`; a route missing
from it is refused to everyone (a test lists the routes, so a new one cannot
slip through unnoticed). A policy is one of:

* :data:`PUBLIC`: anyone, no token needed;
* :data:`MEMBER_DATA`: a route with ``{member_id}``: the member's own token,
  or anyone when the member chose ``public = true``; everyone else gets 404,
  the same answer as for an id that is no member, so membership does not leak;
* :data:`ISLAND_COMMAND`: a coordinator token, or a request without a token
  from the controller's own host (the local rehearsal);
* a set of roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.accounts.export import pseudonym
from controller.governance.tokens import Role

PUBLIC = "public"
MEMBER_DATA = "member-data"
ISLAND_COMMAND = "island-command"
#: A member's command on its own things (a member token of that member, or a coordinator).
MEMBER_COMMAND = "member-command"
DEVICE_ROLES: frozenset[Role] = frozenset({"installer", "coordinator"})
COORDINATOR: frozenset[Role] = frozenset({"coordinator"})
Policy = str | frozenset[Role]

#: (method, route path) → policy. ``HEAD`` follows ``GET``.
ROUTE_POLICY: dict[tuple[str, str], Policy] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/island"): PUBLIC,
    # The pages are public as pages; their data comes from the routes below, each under
    # its own policy (a member's page without the member's login shows a login prompt).
    ("GET", "/me"): PUBLIC,
    ("GET", "/coop"): PUBLIC,
    ("GET", "/installer"): PUBLIC,
    ("GET", "/assets/{name}"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/api/v1/whoami"): PUBLIC,
    ("GET", "/api/v1/clock"): PUBLIC,
    # Coop-wide figures: public; members who are not public appear under pseudonyms.
    ("GET", "/api/v1/members"): PUBLIC,
    ("GET", "/api/v1/coop/summary"): PUBLIC,
    ("GET", "/api/v1/coop/report"): PUBLIC,
    ("GET", "/api/v1/audit"): PUBLIC,
    ("GET", "/api/v1/audit/verify"): PUBLIC,
    ("GET", "/api/v1/island"): PUBLIC,
    ("GET", "/api/v1/island/transitions"): PUBLIC,
    ("GET", "/api/v1/island/plan/progress"): PUBLIC,
    # Live flows, coop-wide (a member token's stream adds that member's own figures),
    # and the controller's operational figures (no household in them).
    ("GET", "/api/v1/live"): PUBLIC,
    ("GET", "/api/v1/live/stream"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # One household's figures.
    ("GET", "/api/v1/members/{member_id}/energy"): MEMBER_DATA,
    ("GET", "/api/v1/members/{member_id}/statement"): MEMBER_DATA,
    ("GET", "/api/v1/members/{member_id}/series"): MEMBER_DATA,
    # The rolling plan's next hours: the coop's batteries together, or one member's own.
    ("GET", "/api/v1/plan/ahead"): PUBLIC,
    ("GET", "/api/v1/members/{member_id}/plan/ahead"): MEMBER_DATA,
    # Devices (addresses, health) and the whole plan (every household's forecast).
    ("GET", "/api/v1/devices"): DEVICE_ROLES,
    ("GET", "/api/v1/island/plan"): DEVICE_ROLES,
    # Commands.
    ("POST", "/api/v1/island/command"): ISLAND_COMMAND,
    ("POST", "/api/v1/island/return"): ISLAND_COMMAND,
    ("POST", "/api/v1/island/eve/cancel"): ISLAND_COMMAND,
    # A coordinator's overrides (each with an end time), and their list.
    ("GET", "/api/v1/overrides"): COORDINATOR,
    ("POST", "/api/v1/overrides"): COORDINATOR,
    ("DELETE", "/api/v1/overrides/{override_id}"): COORDINATOR,
    # A member keeps its own flexible plugs out of shedding (expiring, audited).
    ("GET", "/api/v1/members/{member_id}/optouts"): MEMBER_COMMAND,
    ("POST", "/api/v1/members/{member_id}/optouts"): MEMBER_COMMAND,
    ("DELETE", "/api/v1/members/{member_id}/optouts/{override_id}"): MEMBER_COMMAND,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a token's role, member and label, or the public."""

    role: Role = "public"
    member: str | None = None
    label: str = "public"
    token_id: str | None = None
    #: A loopback peer, not through a proxy (that alone allows nothing).
    loopback: bool = False
    #: May command the island without a token: the local secret, or loopback with
    #: ``[api] local_commands = true``.
    local: bool = False
    #: Why the login cookie was not taken (the request then counts as public).
    refused: str | None = None


@dataclass(frozen=True, slots=True)
class Viewer:
    """A principal with what it may see: its own member and the coop's public members.

    ``salt`` keys the pseudonyms (the ledger's ``pseudonym_salt``), so they are
    the ones of the open-data export, stable for the ledger's life.
    """

    principal: Principal
    public_members: frozenset[str] = frozenset()
    salt: str = ""
    #: Matches any member id as a whole word, for :meth:`scrub`.
    member_ids: re.Pattern[str] | None = None
    _cache: dict[str, str] = field(default_factory=dict, compare=False)

    def sees(self, member_id: str) -> bool:
        """Whether this viewer may read ``member_id``'s own figures."""
        p = self.principal
        return member_id in self.public_members or (p.role == "member"
                                                    and p.member == member_id)

    def name(self, member_id: str) -> str:
        """The member's id when visible, else its pseudonym."""
        if self.sees(member_id):
            return member_id
        if member_id not in self._cache:
            self._cache[member_id] = pseudonym(self.salt, member_id)
        return self._cache[member_id]

    def members(self, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``(id, name)`` pairs with the hidden ones renamed, sorted by what is shown."""
        return sorted(((m, n) if self.sees(m) else (self.name(m), self.name(m))
                       for m, n in rows), key=lambda r: r[0])

    def keyed(self, by_member: dict[str, Any]) -> dict[str, Any]:
        """A dict keyed by member id, re-keyed by what this viewer may see."""
        return {self.name(m): v for m, v in sorted(by_member.items(),
                                                   key=lambda kv: self.name(kv[0]))}

    def device(self, name: str) -> str:
        """A device name ``member/kind`` with the member renamed."""
        member, sep, rest = name.partition("/")
        return self.name(member) + sep + rest

    def scrub(self, value: Any) -> Any:
        """``value`` (JSON-like) with every hidden member id in its strings replaced by the
        pseudonym: free text such as "meters not fresh: h02/meter" names members too."""
        if self.member_ids is None:
            return value
        if isinstance(value, str):
            return self.member_ids.sub(lambda m: self.name(m.group(0)), value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value

    def report(self, report: dict[str, Any]) -> dict[str, Any]:
        """The coop report (:func:`controller.accounts.report_dict`) as this viewer sees it."""
        out = dict(report)
        out["by_member"] = sorted(
            ({**r, "member_id": self.name(r["member_id"]),
              "name": r["name"] if self.sees(r["member_id"]) else self.name(r["member_id"])}
             for r in report.get("by_member") or []), key=lambda r: r["member_id"])
        out["drift_flagged"] = sorted(self.name(m) for m in report.get("drift_flagged") or [])
        out["devices_unknown"] = {self.device(d): n
                                  for d, n in (report.get("devices_unknown") or {}).items()}
        if out.get("budget"):
            out["budget"] = {**out["budget"], "members": self.keyed(out["budget"]["members"])}
        return out


def id_pattern(member_ids: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``member_ids`` not inside a longer id (longest first)."""
    ids = sorted(set(member_ids), key=len, reverse=True)
    if not ids:
        return None
    return re.compile(r"(?<![A-Za-z0-9_-])(?:" + "|".join(map(re.escape, ids))
                      + r")(?![A-Za-z0-9_-])")
