"""The grid state machine's data: states, inputs, commands, memory and records.

Immutable values only; the behaviour is in :mod:`controller.island.grid_state`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

#: The longest island a command may ask for: a day and a night, and a margin.
MAX_ISLAND_S = 48 * 3600.0

DeviceGrid = Literal["on", "off", "unknown"]


class GridState(enum.Enum):
    """The coop's grid state. Each state, and why it exists:

    * ``UNDEFINED``: no device has told us yet (boot), or they stopped telling
      us while on-grid. Dispatch treats it as on-grid without certainty;
      islanding wrongly would shed members' load for nothing (OpenEMS's bug).
    * ``ON_GRID``: a device reports the grid on. The only state an island starts from.
    * ``GOING_OFF_GRID``: a planned island was taken up (preconditions checked)
      and the grid-forming inverter asked to open the coupling, but it has not
      confirmed. Until it does the grid is still there: not islanded.
    * ``OFF_GRID``: a device reports the grid off. The only islanded state, and
      entered only on such a report, never on silence.
    * ``RETURNING``: the island ends (command lapsed, return requested, or the
      island never confirmed); wait for a device to report the grid back and
      synchronised before counting ``ON_GRID``.
    """

    UNDEFINED = "undefined"
    ON_GRID = "on_grid"
    GOING_OFF_GRID = "going_off_grid"
    OFF_GRID = "off_grid"
    RETURNING = "returning"


def islanded(state: GridState) -> bool:
    """Whether dispatch must run as an island: only ``OFF_GRID``, never ``UNDEFINED``.

    Not ``GOING_OFF_GRID`` (the coupling is still closed) nor ``RETURNING``
    (resynchronising; if the grid is not back within the return timeout the
    machine goes back to ``OFF_GRID`` on the devices' word).
    """
    return state is GridState.OFF_GRID


@dataclass(frozen=True, slots=True)
class IslandCommand:
    """A planned island accepted by :func:`request_island`: off-grid from start to end."""

    requested_by: str
    start_ts: float
    end_ts: float
    required_soc_pct: float


@dataclass(frozen=True, slots=True)
class ReturnCommand:
    """A request to end the island in force early, accepted by :func:`request_return`."""

    requested_by: str
    ts: float


@dataclass(frozen=True, slots=True)
class GridInputs:
    """What the devices and the coordinator say this cycle.

    Attributes:
        device_grid: the grid status from the grid-forming inverter or the PCC
            meter; ``"unknown"`` when none says or their readings are stale.
        grid_former_ok: a grid-forming inverter is present and healthy.
        coop_soc_pct: energy-weighted SoC of the coop's batteries, None if unknown.
        stale_meters: names of meters whose readings are not fresh; empty when
            every meter is fresh. Names, not a flag, so a refusal can say which.
        command: the coordinator's standing command, if any.
        grid_cause: why ``device_grid`` says what it says (which device, which measure),
            for the transition's record; None: the device's plain report.
    """

    device_grid: DeviceGrid
    grid_former_ok: bool
    coop_soc_pct: float | None
    stale_meters: tuple[str, ...] = ()
    command: IslandCommand | ReturnCommand | None = None
    grid_cause: str | None = None

    def __post_init__(self) -> None:
        # A typo here would silently match no row of the table, forever.
        if self.device_grid not in ("on", "off", "unknown"):
            raise ValueError(f"GridInputs.device_grid = {self.device_grid!r}: "
                             "expected 'on', 'off' or 'unknown'")

    @property
    def meters_fresh(self) -> bool:
        """Every meter is fresh."""
        return not self.stale_meters


@dataclass(frozen=True, slots=True)
class GridTimeouts:
    """How long the machine waits for a device before it stops believing or hoping.

    Attributes:
        unknown_s: grid status unknown this long while ``ON_GRID`` → ``UNDEFINED``.
        confirm_s: the grid-former must confirm an island within this.
        return_s: the grid must be reported back within this of a return,
            else the state follows what the devices say (off, or unknown).
    """

    unknown_s: float = 30.0
    confirm_s: float = 60.0
    return_s: float = 300.0


DEFAULT_TIMEOUTS = GridTimeouts()


@dataclass(frozen=True, slots=True)
class GridMachine:
    """The machine's whole memory: the state and what its timeouts and commands need.

    Attributes:
        state: the current state.
        since: when ``state`` was entered (timeouts of the in-between steps).
        unknown_since: when the devices started reporting ``"unknown"``, None if they do not.
        command: the last island command taken up (started or refused at its
            start), so a standing command is acted on once.
        in_force: ``command`` is why we are going or are off-grid; cleared when
            the return starts or the grid comes back, so it lapses once.
        former_fault_noted: a grid-former failure while off-grid is on record.
    """

    state: GridState = GridState.UNDEFINED
    since: float = 0.0
    unknown_since: float | None = None
    command: IslandCommand | None = None
    in_force: bool = False
    former_fault_noted: bool = False


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One line of the grid log: a change of state, a noted fault, or a refused command."""

    ts: float
    from_state: GridState
    to_state: GridState
    cause: str
    requested_by: str | None = None
    refused: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of :func:`step`: the next memory and, if anything happened, its record."""

    machine: GridMachine
    record: TransitionRecord | None = None

    @property
    def state(self) -> GridState:
        """The state after the step."""
        return self.machine.state


@dataclass(frozen=True, slots=True)
class Refusal:
    """A command turned down, with every failing precondition named."""

    requested_by: str
    ts: float
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons)

    def record(self, state: GridState) -> TransitionRecord:
        """The refusal as a log record (the state does not change)."""
        return TransitionRecord(self.ts, state, state, self.reason, self.requested_by, True)
