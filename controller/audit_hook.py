"""Recording an event in the coop's hash-chained audit log from ``controller/``.

The audit log is moving from ``api/governance/audit.py`` to
``controller/governance/audit.py``; ``controller/`` must not import from
``api/``, so this records there once the module is in ``controller/`` and
does nothing until then (callers keep their own record too: the federation's
``federation_event`` rows, the inbox's ``agent_epochs``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def record(beside: Path, who: str, action: str, detail: dict[str, Any]) -> bool:
    """Append ``action`` to the audit log beside the file ``beside``; ``False`` if none here."""
    try:
        from controller.governance.audit import AuditLog  # type: ignore[import-not-found]
    except ImportError:
        return False
    try:
        AuditLog.beside(beside).append(who, "controller", action, detail, "recorded")
    except Exception:  # what is recorded elsewhere stands; a failed audit row must not undo it
        log.exception("audit: could not write %s", action)
        return False
    return True
