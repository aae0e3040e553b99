"""Events the controller itself records in the coop's hash-chained audit log.

The federation (an equivocation proof, a coop counted zero) and the agents'
inbox (a reinstalled agent's new epoch) keep their own records too
(``federation_event`` rows, ``agent_epochs``); the audit row is what a member
reads. A failed audit write never undoes what was booked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from controller.governance.audit import AuditLog

log = logging.getLogger(__name__)


def record(beside: Path, who: str, action: str, detail: dict[str, Any]) -> bool:
    """Append ``action`` to the audit log beside the file ``beside``; ``False`` if it failed."""
    try:
        AuditLog.beside(beside).append(who, "controller", action, detail, "recorded")
    except Exception:  # what is recorded elsewhere stands; a failed audit row must not undo it
        log.exception("audit: could not write %s", action)
        return False
    return True
