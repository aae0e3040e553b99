"""Mandates: every token expires, coordinators sooner, and nobody coordinates for ever.

:func:`issue` is the one way tokens are made (``token create`` and ``rotate``
both call it), so the limits of ``[governance]`` hold for both, and every
token made or refused is in the audit log.
"""

from __future__ import annotations

import time

from controller.config import GovernanceConfig
from controller.governance.audit import AuditLog
from controller.governance.tokens import Role, Token, TokenStore

DAY_S = 86400.0


class MandateError(Exception):
    """A token that the coop's rules do not allow; ``str()`` names the rule."""


def max_lifetime_s(role: Role, gov: GovernanceConfig) -> float:
    """The longest a token of ``role`` may live, s."""
    days = gov.token_max_days
    if role == "coordinator":
        days = min(days, gov.coordinator_max_days)
    return days * DAY_S


def consecutive_terms(tokens: list[Token], label: str) -> int:
    """How many of the latest coordinator mandates in a row went to ``label``.

    Terms are counted by the coordinator tokens issued, oldest to newest; a
    mandate given to someone else ends the run. Revoked and expired tokens
    still count: a term cut short was still held.
    """
    run = 0
    for token in sorted((t for t in tokens if t.role == "coordinator"),
                        key=lambda t: (t.created_ts, t.id), reverse=True):
        if token.label != label:
            break
        run += 1
    return run


def term_refusal(tokens: list[Token], label: str, gov: GovernanceConfig) -> str | None:
    """Why ``label`` may not take the next coordinator mandate, or None when it may."""
    held = consecutive_terms(tokens, label)
    if held >= gov.max_consecutive_terms:
        return (f"{label!r} has held the coordinator role {held} terms in a row; "
                f"[governance] max_consecutive_terms = {gov.max_consecutive_terms}")
    return None


def issue(store: TokenStore, audit: AuditLog, gov: GovernanceConfig, *, role: Role,
          member: str | None, label: str, lifetime_s: float | None, by: str,
          now: float | None = None, detail: dict[str, object] | None = None,
          ) -> tuple[Token, str]:
    """Create a token within the rules and record it; MandateError (recorded too) if not.

    ``lifetime_s`` None means the longest allowed; ``by`` is who asks (the CLI
    user's name), written in the audit log with the new token's id, never its
    secret.
    """
    now = time.time() if now is None else now
    cap = max_lifetime_s(role, gov)
    lifetime = cap if lifetime_s is None else lifetime_s
    what = {"role": role, "member": member, "label": label, **(detail or {})}
    problem = None
    if lifetime > cap:
        setting = "coordinator_max_days" if role == "coordinator" else "token_max_days"
        problem = (f"a {role} token lives at most {cap / DAY_S:g} days "
                   f"([governance] {setting}); asked for {lifetime / DAY_S:g}")
    elif role == "coordinator":
        problem = term_refusal(store.all(), label, gov)
    if problem is not None:
        audit.append(by, "cli", "token.create", what, f"refused: {problem}", now)
        raise MandateError(problem)
    token, secret = store.create(role, member, label, now + lifetime, now)
    audit.append(by, "cli", "token.create", what | {"id": token.id,
                                                    "expires_ts": token.expires_ts},
                 "done", now)
    return token, secret
