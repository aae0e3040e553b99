"""``/api/v1/plan/ahead`` and ``/api/v1/members/{id}/plan/ahead``: the rolling plan's next
hours for the pages (the coop's public; a member's only to that member, MEMBER_DATA)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanHour(_Model):
    """One hour of the plan."""

    at: datetime = Field(description="the hour's end, UTC")
    target_pct: float | None = Field(description="battery content the plan aims at by then, %"
                                     " of capacity (the coop's: every battery together); null"
                                     " without a battery")
    shared_kwh: float = Field(description="expected from neighbours and coop batteries in "
                              "the hour")


class PlanAhead(_Model):
    """The plan in force for the next hours (``plan`` null: no plan, greedy in charge)."""

    plan: bool = Field(description="whether a rolling plan is in force")
    solved_at: datetime | None = None
    has_battery: bool = False
    hours: list[PlanHour] = Field(default_factory=list)


def _answer(outlook: dict | None) -> PlanAhead:
    if outlook is None:
        return PlanAhead(plan=False)
    return PlanAhead(plan=True, solved_at=outlook["solved_at"],
                     has_battery=outlook["has_battery"],
                     hours=[PlanHour(**h) for h in outlook["hours"]])


def plan_ahead_router(live: object | None, known_member) -> APIRouter:  # noqa: ANN001
    """The two routes over a running controller (``live.plan_ahead``); without one, no plan."""
    router = APIRouter(tags=["plan"])

    def read(member_id: str | None) -> dict | None:
        ahead = getattr(live, "plan_ahead", None)
        return None if ahead is None else ahead(member_id)

    @router.get("/api/v1/plan/ahead", response_model=PlanAhead)
    def coop_plan() -> PlanAhead:
        """The coop's batteries together and its expected sharing, hour by hour."""
        return _answer(read(None))

    @router.get("/api/v1/members/{member_id}/plan/ahead", response_model=PlanAhead)
    def member_plan(member_id: str) -> PlanAhead:
        """The member's own battery target and expected sharing, hour by hour."""
        return _answer(read(known_member(member_id)))

    return router
