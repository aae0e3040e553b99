"""Pure numpy balancing and accounting for an energy cooperative.

This package does no I/O and imports nothing from the other Commonwatt
packages: it takes arrays in and gives arrays out, one element per household.

Sign and unit conventions used throughout:

* powers are in W, energies in Wh, per household;
* every flow in a :class:`~dispatch.result.TickResult` is a non-negative
  energy over the tick;
* a battery setpoint is positive when the battery discharges (delivers
  energy to the household) and negative when it charges.
"""

from dispatch.fleet import POLICIES, CoopLimits, Fleet, FleetState
from dispatch.result import TickResult
from dispatch.rounding import LEDGER_FIELDS, WhBook
from dispatch.tick import dispatch_tick

__all__ = [
    "LEDGER_FIELDS",
    "POLICIES",
    "CoopLimits",
    "Fleet",
    "FleetState",
    "TickResult",
    "WhBook",
    "dispatch_tick",
]
