"""``/api/v1/audit``: the audit log for everyone, and its verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.governance.audit import AuditLog, merged
from controller.ledger import LedgerReader


def audit_router(log: AuditLog, reader: LedgerReader | None) -> APIRouter:
    """The audit routes over ``log``, with the ledger's grid transitions joined in."""
    router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

    @router.get("")
    def audit(
        limit: Annotated[int, Query(ge=1, le=10_000, description="most rows")] = 500,
        after: Annotated[int, Query(ge=0, description="only audit rows after this seq")] = 0,
    ) -> dict[str, Any]:
        """Who did what, when, and the outcome: tokens, commands, rotations (``source:
        audit``, chained by hash), with the grid-state transitions from the ledger
        (``source: ledger``). ``head`` is the chain's last seq and hash: note it to check
        later that no row was cut off the end."""
        rows = log.rows(after, limit)
        transitions = reader.grid_transitions(limit) if reader is not None else []
        if rows and after:
            transitions = [t for t in transitions if float(t["ts"]) >= rows[0]["ts"]]
        seq, head = log.head()
        return {"head": {"seq": seq, "hash": head}, "rows": merged(rows, transitions)[-limit:]}

    @router.get("/verify")
    def verify(
        head: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$",
                                          description="a head hash noted earlier")] = None,
    ) -> dict[str, Any]:
        """Recompute the hash chain: ``ok`` false names every deleted or edited row."""
        return log.verify(head).as_dict()

    return router
