"""Governance: the audit log, mandates that expire and term limits, rotation by lot.

* :mod:`~api.governance.audit`: the append-only, hash-chained audit log;
* :mod:`~api.governance.terms`: token lifetimes and consecutive coordinator terms;
* :mod:`~api.governance.rotation`: the draw from a seed anyone can recompute;
* :mod:`~api.governance.router`: ``/api/v1/audit``.
"""

from api.governance.audit import AuditLog, Verdict
from api.governance.rotation import Draw, draw, draw_from_ledger, interval_digest, seed_of
from api.governance.terms import MandateError, issue

__all__ = ["AuditLog", "Draw", "MandateError", "Verdict", "draw", "draw_from_ledger",
           "interval_digest", "issue", "seed_of"]
