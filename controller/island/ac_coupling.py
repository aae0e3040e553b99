"""AC-coupled PV against the grid-formers: the factor-1.0 rule.

A PV inverter on the AC bus (a ``kind = "pv"`` device: a string inverter or
micro-inverters beside the battery's inverter) keeps feeding while it sees a
grid. Islanded, the grid-forming battery inverters are that grid: when the
load drops (a kettle switches off, a house's contactor opens), every watt of
AC-coupled PV that no load takes flows into them. If the PV can feed more
than they can absorb, they trip on overvoltage before the PV inverters'
frequency-shift curtailment can act, and the island goes dark. Battery
makers (SMA's Sunny Island, Victron's MultiPlus) therefore require that the
AC-coupled PV rating not exceed the grid-formers' rating: the **factor-1.0
rule**. The coop refuses to island when it is broken.

Ratings: a PV inverter's ``params.rated_w`` (its AC rating, W = VA at unity
power factor); without one, the member's ``[site]`` arrays' kWp (a DC figure,
never below the AC rating of a sensibly sized inverter, so the rule errs
safe). A grid-former's rating is its battery device's ``max_power_w``; one
without is unknown and counts 0 (refused, naming it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.config import CoopConfig

#: AC-coupled PV may be at most this times the grid-formers' rating.
FACTOR = 1.0


@dataclass(frozen=True, slots=True)
class Coupling:
    """AC-coupled PV and grid-former ratings, VA, and the rule's verdict."""

    pv_va: float
    grid_former_va: float
    unrated: tuple[str, ...]  # grid-forming batteries without max_power_w

    @property
    def ok(self) -> bool:
        """The factor-1.0 rule holds (and there is a grid-former at all)."""
        return self.grid_former_va > 0 and self.pv_va <= FACTOR * self.grid_former_va

    def refusal(self) -> str | None:
        """Why the coop may not island, or None."""
        if self.ok:
            return None
        if self.grid_former_va <= 0:
            missing = f" ({', '.join(self.unrated)} without max_power_w)" if self.unrated else ""
            return f"no rated grid-forming battery inverter{missing}: cannot island"
        return (f"AC-coupled PV {self.pv_va / 1000:.1f} kVA exceeds the grid-formers' "
                f"{self.grid_former_va / 1000:.1f} kVA (factor-{FACTOR:.1f} rule: the "
                "grid-formers must be able to absorb all AC-coupled PV when the load drops)")


def coupling(config: CoopConfig) -> Coupling:
    """The coop's AC-coupled PV and grid-former ratings from its configuration."""
    kwp: dict[str, float] = {}
    if config.site is not None:
        for a in config.site.arrays:
            kwp[a.member] = kwp.get(a.member, 0.0) + a.kwp
    pv = former = 0.0
    unrated = []
    for m in config.members:
        inverters = [d for d in m.devices if d.kind == "pv"]
        rated = [d.params.get("rated_w") for d in inverters]
        if inverters and all(r is not None for r in rated):
            pv += float(sum(rated))  # type: ignore[arg-type]
        elif inverters:
            pv += kwp.get(m.id, 0.0) * 1000.0
        for d in m.devices:
            if d.kind == "battery" and d.grid_forming:
                if d.max_power_w is None:
                    unrated.append(m.id)
                else:
                    former += d.max_power_w
    return Coupling(pv, former, tuple(unrated))


def standing_refusals(config: CoopConfig) -> tuple[str, ...]:
    """What refuses every island command of this coop: the factor-1.0 rule when it has a
    rated grid-former (without one, the grid state's own "no healthy grid-forming
    inverter" refuses)."""
    c = coupling(config)
    return () if c.ok or c.grid_former_va <= 0 else (f"REFUSE_AC_COUPLING: {c.refusal()}",)
