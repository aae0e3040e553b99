"""The 24-hour energy island, as the running controller lives it every cycle.

The day's tools (the plan in words and its odds, the rehearsal, the public report) are in
:mod:`controller.island_day`; nothing here imports them.

Whether the coop is on the grid, islanded, or in between (pure: no I/O, time passed in):

* :mod:`~controller.island.grid_model`: states, inputs, commands, memory and records (data);
* :mod:`~controller.island.grid_state`: the transition table, ``step`` and the
  preconditions of island and return requests;
* :mod:`~controller.island.grid_log`: the append-only log of transitions and refusals;
* :mod:`~controller.island.reasons`: the reason codes of every shed, limit and refusal, and
  :mod:`~controller.island.shed_log`: the shedding's events with their codes (API, ledger).
"""

from controller.island.grid_log import TransitionLog
from controller.island.grid_model import (
    DEFAULT_TIMEOUTS,
    MAX_ISLAND_S,
    DeviceGrid,
    GridInputs,
    GridMachine,
    GridState,
    GridTimeouts,
    IslandCommand,
    Refusal,
    ReturnCommand,
    Transition,
    TransitionRecord,
    islanded,
)
from controller.island.grid_state import (
    TABLE,
    island_refusals,
    request_island,
    request_return,
    step,
)

__all__ = [
    "DEFAULT_TIMEOUTS",
    "MAX_ISLAND_S",
    "TABLE",
    "DeviceGrid",
    "GridInputs",
    "GridMachine",
    "GridState",
    "GridTimeouts",
    "IslandCommand",
    "Refusal",
    "ReturnCommand",
    "Transition",
    "TransitionLog",
    "TransitionRecord",
    "island_refusals",
    "islanded",
    "request_island",
    "request_return",
    "step",
]
