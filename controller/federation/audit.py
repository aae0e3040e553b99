"""Federation events in the coop's audit log (see :mod:`controller.governance.events`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.governance import events as audit_hook


def record(ledger: Path, action: str, detail: dict[str, Any]) -> bool:
    """Append a federation event to the audit log beside ``ledger``; ``False`` if none here."""
    return audit_hook.record(ledger, "federation", action, detail)
