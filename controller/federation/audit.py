"""Where federation events go besides the ledger's own ``federation_event`` table.

The coop's hash-chained audit log is moving from ``api/governance/audit.py``
to ``controller/governance/audit.py``; ``controller/`` must not import from
``api/``, so this records there once the module is in ``controller/`` and is
a no-op until then. The ledger's ``federation_event`` rows (with the proof)
are written either way, in the same transaction as the booking.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def record(ledger: Path, action: str, detail: dict[str, Any]) -> bool:
    """Append a federation event to the audit log beside ``ledger``; ``False`` if none here."""
    try:
        from controller.governance.audit import AuditLog  # type: ignore[import-not-found]
    except ImportError:
        return False
    try:
        AuditLog.beside(ledger).append("federation", "controller", action, detail, "recorded")
    except Exception:  # the booking is done; a failed audit row must not undo it
        log.exception("federation: could not write %s to the audit log", action)
        return False
    return True
