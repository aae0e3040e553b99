"""The grid state in the running controller: where an island command meets the devices.

Each cycle the supervisor reads the grid-forming inverter's view of the utility
(SunSpec 701 ``ConnSt`` on a battery with ``grid_forming = true``), its health,
the meters' freshness and the batteries' SoC, and steps the pure state machine
(:mod:`~controller.island.grid_state`). The dispatch islands only in
``OFF_GRID``. A coordinator's island command is checked against its
preconditions at once and again when it starts; it has an end time and lapses
by itself. Every transition and refusal is kept, with time, cause and who asked.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from controller.island.grid_log import TransitionLog
from controller.island.grid_model import (
    DEFAULT_TIMEOUTS,
    GridInputs,
    GridMachine,
    GridTimeouts,
    IslandCommand,
    Refusal,
    ReturnCommand,
    TransitionRecord,
    islanded,
)
from controller.island.grid_state import request_island, request_return, step
from controller.process_image import ProcessImage


class GridSupervisor:
    """Owns the grid state machine of one running controller.

    Args:
        on_record: called with every record (transition, noted fault, refusal),
            e.g. to persist it in the ledger.
    """

    def __init__(self, on_record: Callable[[TransitionRecord], None] | None = None,
                 timeouts: GridTimeouts = DEFAULT_TIMEOUTS) -> None:
        self.machine = GridMachine()
        self.timeouts = timeouts
        self.log = TransitionLog()
        self.command: IslandCommand | ReturnCommand | None = None
        self.inputs: GridInputs | None = None
        self._on_record = on_record
        #: Reasons from the configuration that refuse every island (the factor-1.0 rule of
        #: :mod:`controller.island.ac_coupling`); set by the controller.
        self.standing_refusals: tuple[str, ...] = ()

    @property
    def islanded(self) -> bool:
        """Whether the dispatch must run islanded (only in ``OFF_GRID``)."""
        return islanded(self.machine.state)

    def _record(self, record: TransitionRecord | None) -> None:
        if record is None:
            return
        self.log.append(record)
        if self._on_record is not None:
            self._on_record(record)

    def inputs_from(self, image: ProcessImage, device_grid: str, grid_former_ok: bool,
                    stale_meters: tuple[str, ...]) -> GridInputs:
        """The machine's inputs from this cycle's process image and device health."""
        capacity = np.where(image.has_battery, np.nan_to_num(image.capacity_wh), 0.0)
        soc = np.nan_to_num(image.soc_pct)
        known = image.has_battery & np.isfinite(image.soc_pct)
        total = float(capacity[known].sum())
        coop_soc = float((soc * capacity)[known].sum() / total) if total > 0 else None
        return GridInputs(device_grid, grid_former_ok, coop_soc, stale_meters,  # type: ignore[arg-type]
                          self.command)

    def update(self, inputs: GridInputs, now: float) -> bool:
        """Step the machine once; return whether the coop is islanded now."""
        self.inputs = inputs
        transition = step(self.machine, inputs, now, self.timeouts)
        self.machine = transition.machine
        self._record(transition.record)
        if isinstance(self.command, ReturnCommand) and not self.machine.in_force:
            self.command = None  # the return has been taken up
        return self.islanded

    def request_island(self, requested_by: str, start_ts: float, end_ts: float,
                       required_soc_pct: float, now: float,
                       also: tuple[str, ...] = ()) -> IslandCommand | Refusal:
        """A coordinator asks for an island; accepted commands wait for their start.
        ``also``: reasons found beside the machine's own (each battery's share of the plan,
        :mod:`controller.island.feasibility`)."""
        if self.inputs is None:
            refusal = Refusal(requested_by, now, ("the controller has not read its devices yet",))
            self._record(refusal.record(self.machine.state))
            return refusal
        answer = request_island(self.machine, self.inputs, requested_by=requested_by,
                                start_ts=start_ts, end_ts=end_ts,
                                required_soc_pct=required_soc_pct, now=now)
        if also or self.standing_refusals:
            reasons = answer.reasons if isinstance(answer, Refusal) else ()
            answer = Refusal(requested_by, now, (*self.standing_refusals, *reasons, *also))
        if isinstance(answer, Refusal):
            self._record(answer.record(self.machine.state))
        else:
            self.command = answer
        return answer

    def request_return(self, requested_by: str, now: float) -> ReturnCommand | Refusal:
        """A coordinator ends the island early."""
        answer = request_return(self.machine, requested_by=requested_by, now=now)
        if isinstance(answer, Refusal):
            self._record(answer.record(self.machine.state))
        else:
            self.command = answer
        return answer

    def status(self) -> dict[str, object]:
        """For the API and the island page."""
        cmd = self.command
        return {
            "state": self.machine.state.name,
            "since": self.machine.since,
            "islanded": self.islanded,
            "command": None if cmd is None else {
                "kind": "island" if isinstance(cmd, IslandCommand) else "return",
                **{k: getattr(cmd, k) for k in cmd.__dataclass_fields__}},
            "device_grid": None if self.inputs is None else self.inputs.device_grid,
            "coop_soc_pct": None if self.inputs is None else self.inputs.coop_soc_pct,
            "recent": self.log.as_rows()[-20:],
        }
