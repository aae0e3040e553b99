"""``/api/v1/audit``: the audit log for everyone, and its verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.auth import Viewer, viewer_of
from api.contract import answers
from api.route_models import AuditLogPage, AuditVerdict
from controller.governance.audit import AuditLog, merged
from controller.ledger import LedgerReader


def shown(row: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """A row as ``viewer`` may see it: hidden members under their pseudonyms, and a member
    token's label (often a person's name) replaced too; such rows say ``redacted``, and
    their hash can only be checked on the raw log (``/verify`` or ``audit verify``)."""
    out = viewer.scrub(row)
    detail, raw = out.get("detail"), row.get("detail")
    if (isinstance(detail, dict) and isinstance(raw, dict) and raw.get("member")
            and not viewer.sees(str(raw["member"]))):
        detail["label"] = viewer.name(str(raw["member"]))
    if out != row:
        out["redacted"] = True
    return out


def audit_router(log: AuditLog, reader: LedgerReader | None) -> APIRouter:
    """The audit routes over ``log``, with the ledger's grid transitions joined in."""
    router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

    @router.get("", responses=answers(AuditLogPage))
    def audit(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=10_000, description="most rows")] = 500,
        # SQLite integers are 64-bit: a larger seq is a bad query (422), not a crash (500).
        after: Annotated[int, Query(ge=0, le=2**63 - 1,
                                    description="only audit rows after this seq")] = 0,
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
        viewer = viewer_of(request)
        return {"head": {"seq": seq, "hash": head},
                "rows": [shown(r, viewer) for r in merged(rows, transitions)[-limit:]]}

    @router.get("/verify", responses=answers(AuditVerdict))
    def verify(
        head: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$",
                                          description="a head hash noted earlier")] = None,
    ) -> dict[str, Any]:
        """Recompute the hash chain: ``ok`` false names every deleted or edited row."""
        return log.verify(head).as_dict()

    return router
