"""Governance: the coop's rules about who may do what, used by the CLI, the API and the cycle.

* :mod:`~controller.governance.tokens`: the token store (hashes only) beside the ledger;
* :mod:`~controller.governance.audit`: the append-only, hash-chained audit log;
* :mod:`~controller.governance.terms`: token lifetimes and consecutive coordinator terms;
* :mod:`~controller.governance.rotation`: the draw from a seed anyone can recompute;
* :mod:`~controller.governance.overrides`: a coordinator's setpoints and switches, each
  with an end.

Nothing here imports :mod:`api`: the API's routes (``api/auth``, ``api/governance``)
are one user of these rules, the CLI and the running controller are others.
"""

from controller.governance.audit import AuditLog, Verdict
from controller.governance.rotation import (
    Draw,
    draw,
    draw_from_ledger,
    interval_digest,
    seed_of,
)
from controller.governance.terms import MandateError, issue
from controller.governance.tokens import Role, Token, TokenError, TokenStore, parse_duration

__all__ = ["AuditLog", "Draw", "MandateError", "Role", "Token", "TokenError", "TokenStore",
           "Verdict", "draw", "draw_from_ledger", "interval_digest", "issue", "parse_duration",
           "seed_of"]
