"""What shedding did, with reason codes: kept for the API, written to the ledger.

Each cycle the controller hands :meth:`ShedLog.cycle` the shedder's plan (loads
switched off, loads held back with why), the guard's decision and each member's
shed cause (:func:`controller.island.reasons.shed_causes`). The log:

* keeps the last :data:`KEEP` events (``shed``, ``refused``, ``alert``) for
  ``GET /api/v1/island`` (``shedding``), with the guard's passes and its alert;
* writes each to the ledger's ``grid_transitions`` table (the state does not
  change: ``from`` = ``to``; ``reason`` the code), so the island's record keeps
  why every load went off. A refusal is written when it starts (a load held
  back for the same code every cycle is one row, not one per cycle); renewals
  of an off mandate are not sheds and are not written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from controller.island.reasons import Reason, refusal_reason

if TYPE_CHECKING:
    from controller.island.guard import GuardDecision
    from controller.island.shedding_model import ShedPlan

#: Events kept for the API.
KEEP = 50
BY = "controller (shedding)"


class ShedLog:
    """The shedding's recent events and the guard's state (see the module docstring)."""

    def __init__(self, member_ids: Sequence[str], record: Callable[[tuple], None]) -> None:
        self.member_ids = list(member_ids)
        self._record = record
        self.events: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self._refused: dict[str, str] = {}  # load → code of the refusal in force
        self.passes = 0  # guard passes that opened a tier, this island
        self.max_passes = 0  # … the most in one episode
        self.alerts = 0

    def _add(self, ts: float, state: str, kind: str, load: str | None, member: str | None,
             code: str, detail: str) -> None:
        event = {"ts": ts, "kind": kind, "load": load, "member": member, "reason": code,
                 "detail": detail}
        self.events.append(event)
        what = f"{kind} {load}: {detail}" if load else f"{kind}: {detail}"
        # ``refused`` stays for refused island commands: a load kept on is no refusal of
        # anyone's command (its cause says ``refused LOAD``, its code says why).
        self._record((ts, state, state, what, BY, 0, code))

    def cycle(self, now: float, state: str, plan: ShedPlan, causes: Sequence[str],
              decision: GuardDecision | None, passes: int = 0) -> None:
        """Record one cycle's sheds, new refusals and the guard's alert (``passes``: the
        guard's passes that opened a tier in this episode)."""
        for action in plan.off:
            if action.event.name != "SHED":
                continue  # a renewed mandate is the same shed
            member = self.member_ids[action.member]
            self._add(now, state, "shed", action.load_id, member,
                      str(causes[action.member]) if causes else Reason.OTHER.value,
                      action.reason)
        refused: dict[str, str] = {}
        for load_id, why in plan.skipped:
            code = refusal_reason(why).value
            refused[load_id] = code
            if self._refused.get(load_id) != code:
                self._add(now, state, "refused", load_id, load_id.partition("/")[0], code, why)
        self._refused = refused
        if decision is not None:
            self.passes = passes
            self.max_passes = max(self.max_passes, passes)
            if decision.alert:
                self.alerts += 1
                self._add(now, state, "alert", None, None, Reason.GUARD_NO_EFFECT.value,
                          decision.alert)

    def status(self) -> dict[str, Any]:
        """For ``GET /api/v1/island``: the guard's passes and alerts, the recent events."""
        return {"passes": self.passes, "max_passes": self.max_passes, "alerts": self.alerts,
                "events": list(self.events)}
