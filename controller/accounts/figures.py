"""Figures of a period from ledger sums, metered drift, and the month and time arguments.

Everything here is a pure function of integer Wh sums as
:class:`~controller.ledger.LedgerReader` returns them (one member's or the
coop's). Energy is published in kWh rounded to the Wh, so a figure is exactly
its ledger sum divided by 1000.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.ledger.periods import next_month
from controller.ledger.schema import CAUSE_FIELDS
from dispatch.rounding import LEDGER_FIELDS, LIBERATED_FIELDS

Sums = Mapping[str, int | None]

#: Sums of ledger fields: what a member was served and what its PV produced.
SERVED_FIELDS = ("own_pv_used", "from_battery", "from_peers", "from_coop_battery", "from_grid")
PV_FIELDS = ("own_pv_used", "to_battery", "to_peers", "to_coop_battery", "to_grid", "curtailed")
#: ``curtailed`` split by what held the PV back (:data:`controller.ledger.schema.CAUSE_FIELDS`).
CAUSES = CAUSE_FIELDS
UNALLOCATED = ("unallocated_import", "unallocated_export", "unallocated_pv")
#: Booked by the federation beside the interval rows (part of from_grid / to_grid).
FEDERATION = ("from_federation", "to_federation")
#: Unix timestamps are seconds; a number this large (2e10 s is the year 2603) is
#: milliseconds or finer, and pydantic would silently read it as milliseconds.
MAX_UNIX_SECONDS = 2e10


def seconds_problem(seconds: float) -> str | None:
    """Why ``seconds`` is not a Unix time in seconds, or None if it may be one."""
    if not math.isfinite(seconds):
        return "expected a finite time"
    if abs(seconds) >= MAX_UNIX_SECONDS:
        return ("looks like milliseconds (or finer); Unix timestamps are seconds here:"
                " divide by 1000, or give an ISO 8601 time")
    return None

#: Every energy figure of a period (kWh in published form), with what it means.
ENERGY_DOCS: dict[str, str] = {
    "load": "what the member's loads asked for: served + shed",
    "served": "load served: own PV, own battery, peers, coop batteries and the grid",
    "liberated": "load served from the coop's own generation (never from the grid)",
    "pv": "PV produced: used, stored, given, exported or curtailed",
    "own_pv_used": "own PV used directly by own loads",
    "from_battery": "drawn from the member's own battery",
    "from_battery_coop": "part of from_battery that was coop PV when stored",
    "from_peers": "received from neighbours' PV",
    "from_coop_battery": "received from neighbours' offered batteries",
    "from_coop_battery_coop": "part of from_coop_battery that was coop PV when stored",
    "from_grid": "imported from the grid for the loads",
    "shed": "load not served (unserved energy)",
    "to_battery": "own PV into own battery",
    "to_peers": "own PV given to neighbours",
    "to_coop_battery": "own PV stored in neighbours' offered batteries",
    "to_grid": "exported to the grid",
    "curtailed": "PV that could not be used, stored or exported",
    "curtailed_command": "part of curtailed held back by a cap Commonwatt set islanded",
    "curtailed_export_cap": "part of curtailed held back by the export cap (on the grid)",
    "curtailed_grid_former": "part of curtailed held back, islanded, by a full "
                             "grid-former's frequency shift",
    "battery_from_coop": "neighbours' PV stored in this member's battery",
    "battery_to_coop": "this member's battery's energy given to neighbours",
    "grid_to_battery": "imported from the grid into the battery",
    "battery_to_grid": "this member's battery's energy that left the coop (exported)",
    "battery_to_batteries": "this member's battery's energy that charged other batteries",
    "battery_from_batteries": "other batteries' energy stored in this member's battery",
    "losses": "battery and conversion losses",
    "unallocated_import": "grid import counted by the meter during gaps; never liberated",
    "unallocated_export": "grid export counted by the meter during gaps",
    "unallocated_pv": "PV counted during gaps",
    "from_federation": "part of from_grid that came from another coop of the federation "
                       "(liberated where the charter says)",
    "to_federation": "part of to_grid that went to another coop of the federation",
}
ENERGY = tuple(ENERGY_DOCS)
#: Figures besides the energies: ratio, seconds, meter counters and drift.
OTHER_DOCS: dict[str, str] = {
    "self_sufficiency": "liberated / load (shed load counts against it); null without load",
    "gap_s": "seconds not booked by the dispatch (controller down, or a device unknown)",
    "unknown_s": "part of gap_s with no meter counter: energy unknown, never taken as zero",
    "meter_import_kwh": "the meter's import counter over the period; null without counters",
    "meter_export_kwh": "the meter's export counter over the period; null without counters",
    "import_drift_kwh": "meter_import - the estimate from measured power (before settling)",
    "export_drift_kwh": "meter_export - the estimate from measured power (before settling)",
}
assert set(ENERGY) >= set(LEDGER_FIELDS)


class AccountsInputError(ValueError):
    """A month, time or member argument that cannot be used; the message names the field."""


class UnknownMemberError(AccountsInputError):
    """A member id that is not in the ledger."""

    def __init__(self, member_id: str, known: list[str]) -> None:
        super().__init__(f"member {member_id!r} is not in this coop "
                         f"(members: {', '.join(known) or 'none'})")
        self.member_id = member_id


def kwh(wh: int | None) -> float | None:
    """Wh as kWh (exact to the Wh); ``None`` stays ``None``."""
    return None if wh is None else round(wh / 1000.0, 3)


def _v(s: Sums, name: str) -> int:
    return int(s.get(name) or 0)


def _total(field: Callable[[str], Any], names: tuple[str, ...]) -> Any:
    out = field(names[0])
    for name in names[1:]:
        out = out + field(name)
    return out


def derived_wh(field: Callable[[str], Any]) -> dict[str, Any]:
    """Load, served, liberated and PV from the ledger fields ``field(name)`` returns.

    The one place these formulas are written. ``field`` gives integer Wh (one period:
    :func:`energy_wh`) or numpy columns (every member at once:
    :mod:`controller.accounts.running`), so both read the same sums.
    """
    served = _total(field, SERVED_FIELDS)
    return {"load": served + field("shed"), "served": served,
            # Energy from other coops counts where the charter says so (booked per row).
            "liberated": _total(field, LIBERATED_FIELDS) + field("from_federation_liberated"),
            "pv": _total(field, PV_FIELDS)}


def energy_wh(s: Sums) -> dict[str, int]:
    """Every energy figure in Wh (see :data:`ENERGY_DOCS`) from ledger sums."""
    out = derived_wh(lambda f: _v(s, f))
    out.update({f: _v(s, f) for f in (*LEDGER_FIELDS, *CAUSES, *UNALLOCATED, *FEDERATION)})
    return {k: out[k] for k in ENERGY}


def self_sufficiency(liberated: int, load: int) -> float | None:
    """``liberated / load`` to 4 decimals (shed load counts against it); ``None`` without load."""
    return round(liberated / load, 4) if load else None


#: Booked flows that physically pass the member's grid meter. Peer sharing is
#: bookkeeping over the shared grid: energy a member receives from a neighbour (or
#: from a neighbour's battery, or into its battery from neighbours) still comes in
#: through its own meter, and what it gives goes out through it.
METER_IN = ("from_grid", "grid_to_battery", "from_peers", "from_coop_battery",
            "battery_from_coop", "battery_from_batteries", "unallocated_import")
METER_OUT = ("to_grid", "to_peers", "to_coop_battery", "battery_to_coop", "battery_to_grid",
             "battery_to_batteries", "unallocated_export")


def import_booked(s: Sums) -> int:
    """Energy the books say came in through the member's meter: what its import counter
    should have counted."""
    return sum(_v(s, f) for f in METER_IN)


def export_booked(s: Sums) -> int:
    """Energy the books say went out through the member's meter: what its export counter
    should have counted."""
    return sum(_v(s, f) for f in METER_OUT)


def figures(s: Sums) -> dict[str, float | int | None]:
    """The published figures of a period: kWh, self-sufficiency, gap seconds, meter drift."""
    wh = energy_wh(s)
    out: dict[str, float | int | None] = {f"{k}_kwh": kwh(v) for k, v in wh.items()}
    out["self_sufficiency"] = self_sufficiency(wh["liberated"], wh["load"])
    out["gap_s"] = _v(s, "gap_s")
    out["unknown_s"] = _v(s, "unknown_s")
    meter_import, meter_export = s.get("meter_import"), s.get("meter_export")
    out["meter_import_kwh"] = kwh(meter_import)
    out["meter_export_kwh"] = kwh(meter_export)
    drifts = meter_drift(s, 0.0, 0)
    out["import_drift_kwh"] = kwh(drifts["import"].drift)
    out["export_drift_kwh"] = kwh(drifts["export"].drift)
    return out


FIGURES = (*(f"{k}_kwh" for k in ENERGY), *OTHER_DOCS)


@dataclass(frozen=True, slots=True)
class Drift:
    """A meter counter against the grid energy the ledger booked (Wh)."""

    metered: int | None
    booked: int
    limit: int
    flagged: bool

    @property
    def drift(self) -> int | None:
        """``metered - booked``; ``None`` where the meter has no counter."""
        return None if self.metered is None else self.metered - self.booked

    def as_dict(self) -> dict[str, float | bool | None]:
        """Published form, in kWh."""
        return {"metered_kwh": kwh(self.metered), "booked_kwh": kwh(self.booked),
                "drift_kwh": kwh(self.drift), "limit_kwh": kwh(self.limit),
                "flagged": self.flagged}


def drift(metered: int | None, booked: int, threshold_pct: float, min_wh: int) -> Drift:
    """Flag ``|metered - booked| > max(min_wh, threshold_pct % of metered)``."""
    limit = max(int(min_wh), math.floor(abs(metered or 0) * threshold_pct / 100.0))
    flagged = metered is not None and abs(metered - booked) > limit
    return Drift(metered, booked, limit, flagged)


def meter_drift(s: Sums, threshold_pct: float, min_wh: int) -> dict[str, Drift]:
    """Import and export drift of one member's sums. The books are settled on the counters
    (:mod:`controller.ledger.settle`): the drift is the counters against the estimate from
    measured power before that (``meter_*_drift`` columns), where the ledger has it."""
    out = {}
    for name, booked in (("import", import_booked(s)), ("export", export_booked(s))):
        metered, settled = s.get(f"meter_{name}"), s.get(f"meter_{name}_drift")
        if metered is not None and settled is not None:
            booked = metered - int(settled)
        out[name] = drift(metered, booked, threshold_pct, min_wh)
    return out


_MONTH = re.compile(r"(\d{4})-(\d{2})")


def parse_month(text: str, field: str = "--month") -> tuple[int, int]:
    """``YYYY-MM`` as the month's ``[start, end)`` in Unix seconds (UTC)."""
    m = _MONTH.fullmatch(text.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise AccountsInputError(f"{field} = {text!r}: expected YYYY-MM")
    start = int(datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC).timestamp())
    return start, next_month(start)


def month_label(start: float) -> str:
    """``YYYY-MM`` of the month containing ``start`` (UTC)."""
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m")


def iso(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC, ``2026-01-31T23:45:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, field: str) -> float:
    """ISO 8601 date or time (UTC when it has no offset) or Unix seconds (never
    milliseconds: see :data:`MAX_UNIX_SECONDS`)."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        problem = seconds_problem(seconds)
        if problem is None:
            return seconds
        raise AccountsInputError(f"{field} = {text!r}: {problem}")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AccountsInputError(f"{field} = {text!r}: expected an ISO 8601 date or time "
                                 "(UTC without an offset) or Unix seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
