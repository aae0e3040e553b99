"""Whether the coop is on the grid or islanded: a pure state machine, written as a table.

The dispatch needs one answer per cycle: may it import and export, or is the
coop an island that must live on its batteries and shed load? The devices (the
grid-forming inverter, the meter at the point of common coupling) know; the
coordinator may ask for a planned island ("the 24-hour energy island"). This
module turns both into a :class:`~controller.island.grid_model.GridState`, in the
manner of OpenEMS's emergency capacity reserve controller, with one of its
bugs fixed on purpose: at boot the state is ``UNDEFINED``, and ``UNDEFINED``
is never treated as off-grid (:func:`islanded` is True only for ``OFF_GRID``).

Safety, by construction of :data:`TABLE`:

* ``OFF_GRID`` is entered only when a device reports the grid off, never on
  "unknown"; ``ON_GRID`` only when a device reports it on.
* An island ends: an accepted command lapses at its end time by itself, and
  the end time is the one remembered when it started, whatever the
  coordinator sends afterwards.
* A standing command is acted on once, and is checked again when it starts.

Nothing here does I/O or reads a clock: time comes in as ``now`` (seconds), so
the controller, the simulator and the tests run the same code. Typical use::

    machine = GridMachine()
    t = step(machine, inputs, now)
    log.append(t.record)
    machine = t.machine
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

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


def _pct(value: float) -> str:
    """``42``, ``42.5``: one decimal at most, rounded down so 79.96 never reads as 80."""
    text = f"{math.floor(value * 10 + 1e-9) / 10:.1f}"
    return text.removesuffix(".0")


def island_refusals(state: GridState, inputs: GridInputs, command: IslandCommand, now: float,
                    *, check_soc: bool = True) -> tuple[str, ...]:
    """The preconditions of ``command`` that fail; empty when it may start.

    ``check_soc`` is off when a request is made ahead of its start: the SoC
    asked for is the *starting* SoC, checked again when the island starts.
    """
    reasons = []
    if state is not GridState.ON_GRID:
        reasons.append(f"grid state is {state.name}, an island starts only from ON_GRID")
    if not inputs.grid_former_ok:
        reasons.append("no healthy grid-forming inverter")
    required, soc = command.required_soc_pct, inputs.coop_soc_pct
    if not 0.0 <= required <= 100.0:
        reasons.append(f"required SoC {required} % outside 0-100 %")
    elif check_soc and (soc is None or math.isnan(soc)):  # NaN would pass a comparison
        reasons.append(f"coop SoC unknown (the plan requires {_pct(required)} %)")
    elif check_soc and soc is not None and soc < required:
        reasons.append(f"coop SoC {_pct(soc)} % below the plan's required {_pct(required)} %")
    if not inputs.meters_fresh:
        reasons.append("meters not fresh: " + ", ".join(inputs.stale_meters))
    if not command.end_ts > command.start_ts:
        reasons.append("end time not after start time")
    elif command.end_ts - command.start_ts > MAX_ISLAND_S:
        hours = math.ceil((command.end_ts - command.start_ts) / 360) / 10  # never "48.0 > 48"
        reasons.append(f"island of {hours:.1f} h longer than the {MAX_ISLAND_S / 3600:.0f} h "
                       "allowed")
    elif command.end_ts <= now:
        reasons.append("end time already past")
    return tuple(reasons)


def request_island(machine: GridMachine, inputs: GridInputs, *, requested_by: str,
                   start_ts: float, end_ts: float, required_soc_pct: float,
                   now: float) -> IslandCommand | Refusal:
    """Check an island request now; the command is checked again when it starts.

    The SoC is checked now only if the island starts now (``start_ts <= now``).
    """
    command = IslandCommand(requested_by, start_ts, end_ts, required_soc_pct)
    reasons = island_refusals(machine.state, inputs, command, now, check_soc=start_ts <= now)
    return Refusal(requested_by, now, reasons) if reasons else command


def request_return(machine: GridMachine, *, requested_by: str,
                   now: float) -> ReturnCommand | Refusal:
    """End the island in force early; refused when there is none to end."""
    state = machine.state
    if state in (GridState.GOING_OFF_GRID, GridState.OFF_GRID) and machine.in_force:
        return ReturnCommand(requested_by, now)
    if state is GridState.OFF_GRID:
        reason = "off-grid by grid loss, not by command: the coop reconnects when the grid is back"
    elif state is GridState.RETURNING:
        reason = "already returning"
    else:
        reason = f"no island in force (grid state is {state.name})"
    return Refusal(requested_by, now, (reason,))


# ----------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class _Context:
    """One step's view: the memory, the inputs, the time, the timeouts."""

    machine: GridMachine
    inputs: GridInputs
    now: float
    timeouts: GridTimeouts
    unknown_since: float | None

    def unknown_for(self) -> float:
        """How long the devices have reported "unknown" (0 when they do not)."""
        return 0.0 if self.unknown_since is None else self.now - self.unknown_since

    def waited(self, seconds: float) -> bool:
        """The current state has lasted ``seconds`` or more."""
        return self.now - self.machine.since >= seconds

    def due(self) -> IslandCommand | None:
        """A standing island command inside its window and not yet taken up."""
        command = self.inputs.command
        if (isinstance(command, IslandCommand) and command != self.machine.command
                and command.start_ts <= self.now < command.end_ts):
            return command
        return None

    def refusals(self) -> tuple[str, ...]:
        """Why the due command may not start now (empty: it may)."""
        command = self.due()
        return () if command is None else island_refusals(self.machine.state, self.inputs,
                                                         command, self.now)

    def return_asked(self) -> bool:
        """A return was requested for the island in force (not a stale one)."""
        command, own = self.inputs.command, self.machine.command
        return (self.machine.in_force and own is not None
                and isinstance(command, ReturnCommand) and command.ts >= own.start_ts)

    def lapsed(self) -> bool:
        """The island in force has reached its end time."""
        own = self.machine.command
        return self.machine.in_force and own is not None and self.now >= own.end_ts


Guard = Callable[[_Context], bool]
Text = Callable[[_Context], str]


@dataclass(frozen=True, slots=True)
class _Rule:
    """A row of the table: when ``when`` holds, go to ``to`` for ``cause``.

    ``by`` names who asked (None for device reports and timeouts); ``takes``
    marks the rows that take up the due command, ``refused`` the row that
    turns it down, ``fault`` the row that notes a failed grid-former.
    """

    when: Guard
    to: GridState
    cause: Text
    by: Callable[[_Context], str | None] = lambda c: None
    takes: bool = False
    refused: bool = False
    fault: bool = False


def _device(status: DeviceGrid) -> Guard:
    return lambda c: c.inputs.device_grid == status


def _text(cause: str) -> Text:
    return lambda c: cause


def _island_by(c: _Context) -> str | None:
    return None if c.machine.command is None else c.machine.command.requested_by


def _return_by(c: _Context) -> str | None:
    command = c.inputs.command
    return command.requested_by if isinstance(command, ReturnCommand) else None


def _due_by(c: _Context) -> str | None:
    command = c.due()
    return None if command is None else command.requested_by


_S = GridState
_ABORTS = (  # how a planned island ends, wherever it is
    _Rule(lambda c: c.return_asked(), _S.RETURNING, _text("return requested"), _return_by),
    _Rule(lambda c: c.lapsed(), _S.RETURNING, _text("island command lapsed"), _island_by),
)

#: First matching row wins; no row matching means no change. Device reports
#: come first in every state: what the coupling does outranks what we intend.
TABLE: dict[GridState, tuple[_Rule, ...]] = {
    _S.UNDEFINED: (
        _Rule(_device("on"), _S.ON_GRID, _text("grid confirmed (device report)")),
        _Rule(_device("off"), _S.OFF_GRID,
              lambda c: c.inputs.grid_cause or "off-grid (device report)"),
    ),
    _S.ON_GRID: (
        _Rule(_device("off"), _S.OFF_GRID,
              lambda c: c.inputs.grid_cause or "grid lost (device report)"),
        _Rule(lambda c: c.inputs.device_grid == "unknown"
              and c.unknown_for() >= c.timeouts.unknown_s, _S.UNDEFINED,
              lambda c: f"grid status unknown for {c.unknown_for():.0f} s"),
        # An island is taken up only while a device confirms the grid: after a
        # blip of "unknown" it waits rather than being refused for good.
        _Rule(lambda c: c.inputs.device_grid == "on" and bool(c.refusals()), _S.ON_GRID,
              lambda c: "; ".join(c.refusals()), _due_by, takes=True, refused=True),
        _Rule(lambda c: c.inputs.device_grid == "on" and c.due() is not None,
              _S.GOING_OFF_GRID, _text("island command started"), _due_by, takes=True),
    ),
    _S.GOING_OFF_GRID: (
        _Rule(_device("off"), _S.OFF_GRID, _text("islanded (device report)"), _island_by),
        *_ABORTS,
        _Rule(lambda c: not c.inputs.grid_former_ok, _S.RETURNING,
              _text("grid-forming inverter failed before confirming the island")),
        _Rule(lambda c: c.waited(c.timeouts.confirm_s), _S.RETURNING,
              lambda c: f"island not confirmed within {c.timeouts.confirm_s:g} s"),
    ),
    _S.OFF_GRID: (
        _Rule(_device("on"), _S.ON_GRID,
              lambda c: ("reconnected before the island command ended (device report)"
                         if c.machine.in_force else "grid back (device report)")),
        *_ABORTS,
        # Physically still an island: the state stays, the dispatch sheds.
        _Rule(lambda c: not c.inputs.grid_former_ok and not c.machine.former_fault_noted,
              _S.OFF_GRID, _text("grid-forming inverter failed while off-grid"), fault=True),
    ),
    _S.RETURNING: (
        _Rule(_device("on"), _S.ON_GRID, _text("reconnected (device report)")),
        _Rule(lambda c: c.inputs.device_grid == "off" and c.waited(c.timeouts.return_s),
              _S.OFF_GRID,
              lambda c: f"grid not back within {c.timeouts.return_s:g} s of the return "
                        "(device report)"),
        _Rule(lambda c: c.inputs.device_grid == "unknown" and c.waited(c.timeouts.return_s),
              _S.UNDEFINED,
              lambda c: f"grid status unknown {c.timeouts.return_s:g} s into the return"),
    ),
}


def step(machine: GridMachine, inputs: GridInputs, now: float,
         timeouts: GridTimeouts = DEFAULT_TIMEOUTS) -> Transition:
    """Advance the machine by one cycle: the first matching row of :data:`TABLE` applies."""
    unknown_since = ((now if machine.unknown_since is None else machine.unknown_since)
                     if inputs.device_grid == "unknown" else None)
    context = _Context(machine, inputs, now, timeouts, unknown_since)
    rule = next((r for r in TABLE[machine.state] if r.when(context)), None)
    if rule is None:
        noted = (machine.former_fault_noted and machine.state is _S.OFF_GRID
                 and not inputs.grid_former_ok)
        return Transition(replace(machine, unknown_since=unknown_since,
                                  former_fault_noted=noted))
    to = rule.to
    command = context.due() if rule.takes else machine.command
    in_force = to in (_S.GOING_OFF_GRID, _S.OFF_GRID) and (
        machine.in_force or (rule.takes and not rule.refused))
    noted = to is _S.OFF_GRID and not inputs.grid_former_ok and (
        machine.former_fault_noted or rule.fault)
    record = TransitionRecord(now, machine.state, to, rule.cause(context), rule.by(context),
                              rule.refused)
    since = machine.since if to is machine.state else now
    return Transition(GridMachine(to, since, unknown_since, command, in_force, noted), record)


__all__ = [
    "DEFAULT_TIMEOUTS", "MAX_ISLAND_S", "TABLE", "DeviceGrid", "GridInputs", "GridMachine",
    "GridState", "GridTimeouts", "IslandCommand", "Refusal", "ReturnCommand", "Transition",
    "TransitionRecord", "island_refusals", "islanded", "request_island", "request_return",
    "step",
]
