"""The accounts over HTTP: a member's monthly statement and series, the coop's report.

Mount with ``app.include_router(accounts_router(reader, config))``. The
figures are those of :mod:`controller.accounts`, so the API, the CLI and the
statements agree to the Wh and to the cent.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.auth import viewer_of
from api.query_time import QueryTime
from controller.accounts import (
    AccountsInputError,
    UnknownMemberError,
    coop_report,
    figures,
    member_statement,
    parse_month,
    report_dict,
    statement_dict,
)
from controller.accounts.budget import TRANSFERS
from controller.accounts.figures import ENERGY_DOCS, OTHER_DOCS
from controller.config import CoopConfig
from controller.config_tariff import wear_prices
from controller.ledger import LedgerReader
from controller.ledger.periods import period_start
from controller.ledger.reader import LEVEL_BY_STEP
from controller.planning.savings import savings_path

#: The most points one series request returns.
MAX_POINTS = 10_000
#: Shortest length of each series step, s (a month is at least 28 days).
STEP_MIN_S = {"hour": 3600, "day": 86400, "month": 28 * 86400}
#: The ``month`` query parameter.
Month = Annotated[str, Query(description="calendar month, YYYY-MM (UTC)", examples=["2026-01"])]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _figure_type(name: str) -> tuple[Any, Any]:
    if name in ("gap_s", "unknown_s"):
        return int, Field(description=OTHER_DOCS[name])
    if name in OTHER_DOCS:
        return float | None, Field(description=OTHER_DOCS[name])
    return float, Field(description=f"kWh: {ENERGY_DOCS[name.removesuffix('_kwh')]}")


Figures: type[_Model] = create_model(  # type: ignore[call-overload]
    "Figures", __base__=_Model,
    __doc__="Energy of a period in kWh (booked to the Wh), self-sufficiency, gaps, drift.",
    **{n: _figure_type(n) for n in (*(f"{k}_kwh" for k in ENERGY_DOCS), *OTHER_DOCS)})


class DayFigures(Figures):  # type: ignore[misc, valid-type]
    """One UTC day of a statement."""

    day: date = Field(description="the UTC day")


class Drift(_Model):
    """A meter counter against the grid energy booked for the member."""

    metered_kwh: float | None = Field(description="the meter's counter; null without one")
    booked_kwh: float = Field(description="grid energy the ledger booked, gaps included")
    drift_kwh: float | None = Field(description="metered - booked")
    limit_kwh: float = Field(description="max(drift_min_wh, drift_threshold_pct of metered)")
    flagged: bool = Field(description="|drift| above the limit")


MoneyLines: type[_Model] = create_model(  # type: ignore[call-overload]
    "MoneyLines", __base__=_Model,
    __doc__="A member's money for the month, in integer cents.",
    **{f"paid_{k}_cents": (int, Field(description=f"paid to members for {r}"))
       for k, (r, _) in TRANSFERS.items()},
    **{f"earned_{k}_cents": (int, Field(description=f"earned from members for {g}"))
       for k, (_, g) in TRANSFERS.items()},
    coop_fee_cents=(int, Field(description="fee to the coop's fund")),
    earned_wear_cents=(int, Field(description="paid by the coop's fund for neighbours' use "
                                  "of the member's battery (battery_to_coop at its wear price)")),
    grid_import_cents=(int, Field(description="(from_grid + grid_to_battery) at the import "
                                  "price")),
    grid_export_cents=(int, Field(description="to_grid at the export price")),
    net_between_members_cents=(int, Field(description="earned - paid - coop fee + wear")),
    net_cents=(int, Field(description="between members + export - import")))


class MemberMoney(MoneyLines):  # type: ignore[misc, valid-type]
    """The money lines with their currency."""

    currency: str


class Balance(_Model):
    """One section of a statement's balances: its lines add up to its total."""

    lines: dict[str, int] = Field(description="ledger field -> Wh")
    total: int = Field(description="Wh, the sum of the lines")
    counted: int | None = Field(None, description="Wh the meter's counter recorded (across "
                                "the meter only; null without a counter)")


class PlanSaved(_Model):
    """The rolling plan's expected saving against greedy over the month (null: none booked).

    Each re-plan, greedy and the plan-following dispatch run over the same forecast from
    the same start; the difference of their grid import until the next re-plan is booked.
    """

    import_kwh: float = Field(description="grid import greedy would have drawn, less the "
                              "plan's (expected)")
    money: float | None = Field(description="the same in money at the tariff's prices, "
                                "less export revenue given up; null without a [tariff]")
    currency: str | None
    counterfactual: str = Field(description="how the saving is computed, in words")


class Statement(_Model):
    """One member's calendar month (UTC)."""

    member_id: str
    name: str
    month: str = Field(description="YYYY-MM")
    from_: datetime = Field(alias="from", description="month start, UTC")
    to: datetime = Field(description="month end (exclusive), UTC")
    settlement_s: int = Field(description="length of a settlement interval, s")
    intervals: int = Field(description="settlement intervals committed in the month")
    totals: Figures  # type: ignore[valid-type]
    drift: dict[str, Drift] = Field(description="import and export")
    drift_flagged: bool
    balances: dict[str, Balance] = Field(
        description="every booked flow across the member's meter and battery, by section")
    money: MemberMoney | None = Field(description="null without a [tariff]")
    plan_saved: PlanSaved | None = Field(description="the member's; null: no plan booked")
    days: list[DayFigures]


class ReportIntervals(_Model):
    """Settlement intervals of the month."""

    committed: int
    expected: int = Field(description="intervals of the month while the ledger existed")
    missing: int = Field(description="with_gaps + absent")
    with_gaps: int = Field(description="committed with seconds not covered by the controller")
    absent: int = Field(description="expected but never committed")


class ReportMember(_Model):
    """A member's line in the coop report."""

    member_id: str
    name: str
    load_kwh: float
    served_kwh: float
    liberated_kwh: float
    shed_kwh: float
    self_sufficiency: float | None = Field(description=OTHER_DOCS["self_sufficiency"])
    net_cents: int | None = Field(description="the member's net; null without a [tariff]")


class CoopBudget(_Model):
    """The coop's money for the month, in integer cents; balanced to the cent."""

    currency: str
    flowed_between_members_cents: int = Field(description="paid by members = earned by members")
    flowed_by_kind_cents: dict[str, int] = Field(description="peers, coop_battery, storage")
    paid_to_utility_cents: int
    received_from_utility_cents: int
    coop_fund_cents: int = Field(description="coop fees paid less wear paid to owners")
    wear_paid_to_owners_cents: int = Field(description="the fund's pay for battery wear")
    balanced: bool
    members: dict[str, MoneyLines]  # type: ignore[valid-type]


class Report(_Model):
    """The coop's calendar month (UTC)."""

    month: str
    from_: datetime = Field(alias="from")
    to: datetime
    settlement_s: int
    members: int
    members_served: int = Field(description="members with load > 0")
    liberated_kwh: float
    shared_peer_to_peer_kwh: float
    shared_via_coop_batteries_kwh: float
    self_sufficiency: float | None = Field(description="coop liberated / load")
    hours_islanded: float = Field(description="hours the coop ran as an island")
    unserved_kwh: float = Field(description="load shed")
    curtailed_kwh: float
    jain_fairness: float | None = Field(description="Jain's index over members' "
                                        "self-sufficiency")
    intervals: ReportIntervals
    gap_hours: float = Field(description="seconds not covered in committed intervals plus "
                             "absent intervals")
    devices_unknown: dict[str, int] = Field(description="device → intervals it was unknown in")
    drift_flagged: list[str] = Field(description="members whose meter drift is flagged")
    totals: Figures  # type: ignore[valid-type]
    by_member: list[ReportMember]
    budget: CoopBudget | None = Field(description="null without a [tariff]")
    plan_saved: PlanSaved | None = Field(description="the coop's; null: no plan booked")


class SeriesPoint(Figures):  # type: ignore[misc, valid-type]
    """One period of a series."""

    start: datetime = Field(description="period start, UTC")


class Series(_Model):
    """A member's figures per interval, hour, day or month."""

    member_id: str
    step: str
    points: list[SeriesPoint]


def _bad_query(name: str, message: str, value: object) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name),
                                    "msg": message, "input": value}])


def _month(text: str) -> int:
    try:
        return parse_month(text, "month")[0]
    except AccountsInputError as exc:
        raise _bad_query("month", str(exc), text) from None


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def accounts_router(reader: LedgerReader, config: CoopConfig | None) -> APIRouter:
    """Statements, series and the coop report over ``reader``; money with ``config.tariff``."""
    router = APIRouter(tags=["accounts"])
    tariff = None if config is None else config.tariff
    ledger = None if config is None else config.ledger
    wear = None if config is None else wear_prices(config.members)
    savings = None if config is None else savings_path(config.storage.ledger)

    def not_found(exc: UnknownMemberError) -> HTTPException:
        return HTTPException(404, f"member_id {exc.member_id!r} is not a member of this coop")

    @router.get("/api/v1/members/{member_id}/statement", response_model=Statement)
    def statement(member_id: str, month: Month) -> dict[str, object]:
        """A member's month: energy, gaps, metered drift, money lines, and a row per day."""
        start = _month(month)
        try:
            st = member_statement(reader, member_id, start, ledger, tariff, wear, savings)
        except UnknownMemberError as exc:
            raise not_found(exc) from None
        return statement_dict(st)

    @router.get("/api/v1/coop/report", response_model=Report)
    def report(month: Month, request: Request) -> dict[str, object]:
        """The coop's month: liberated kWh, fairness, missing intervals, the budget; members
        that are not public (nor the caller's own) under their pseudonyms."""
        return viewer_of(request).report(
            report_dict(coop_report(reader, _month(month), tariff, ledger, wear, savings)))

    @router.get("/api/v1/members/{member_id}/series", response_model=Series)
    def series(
        member_id: str,
        from_: Annotated[QueryTime | None, Query(
            alias="from", description="start, ISO 8601 or Unix seconds (UTC if naive); "
            "default: the ledger's first interval")] = None,
        to: Annotated[QueryTime | None, Query(
            description="end, same forms; default: the ledger's last interval end")] = None,
        step: Annotated[Literal["interval", "hour", "day", "month"], Query(
            description="period length; a period is in the series when it overlaps "
            "[from, to)")] = "day",
    ) -> dict[str, object]:
        """A member's figures per period, at most ``MAX_POINTS`` points.

        Intervals inside ``[from, to]``; hours, days or months overlapping it
        (whole periods, as the rollups hold them).
        """
        if reader.member_number(member_id) is None:
            raise not_found(UnknownMemberError(member_id, []))
        first, last, _ = reader.span()
        start, end = _epoch(from_), _epoch(to)
        start = start if start is not None else first
        end = end if end is not None else last
        if from_ is not None and to is not None and start > end:  # type: ignore[operator]
            raise _bad_query("from", "'from' must not be after 'to'", from_)
        if start is None or end is None or first is None or last is None:
            return {"member_id": member_id, "step": step, "points": []}
        # Only what is booked counts against the cap; a period is in when it starts in range.
        start, end = max(start, first), min(end, last)
        if step != "interval":
            start = period_start(LEVEL_BY_STEP[step], start)
        if start >= end:
            return {"member_id": member_id, "step": step, "points": []}
        points = math.ceil((end - start) / (reader.step if step == "interval"
                                              else STEP_MIN_S[step]))
        if points > MAX_POINTS:
            raise _bad_query("step", f"up to {points} points of step {step!r}: a series is "
                             f"capped at {MAX_POINTS} points; use a coarser step or a shorter "
                             "range", step)
        rows = reader.series(member_id, start, end, step)
        return {"member_id": member_id, "step": step,
                "points": [{"start": datetime.fromtimestamp(ts, UTC), **figures(sums)}
                           for ts, sums in rows]}

    return router
