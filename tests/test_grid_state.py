"""The grid state machine: every transition as one table, refusals, lapse, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.island import (
    MAX_ISLAND_S,
    TABLE,
    GridInputs,
    GridMachine,
    GridState,
    IslandCommand,
    Refusal,
    ReturnCommand,
    TransitionLog,
    islanded,
    request_island,
    request_return,
    step,
)

S = GridState
T0 = 1_782_000_000.0  # 2026-06-21T00:00:00Z
DAY = 24 * 3600.0
CMD = IslandCommand("coordinator", T0, T0 + DAY, 80.0)
LATER = IslandCommand("coordinator", T0 + 600, T0 + DAY, 80.0)
RET = ReturnCommand("member-h03", T0 + 3600)
STALE_RET = ReturnCommand("member-h03", T0 - 3600)  # asked before this island began


def machine(state: GridState, since: float = T0, *, command: IslandCommand | None = None,
            in_force: bool = False, unknown_since: float | None = None,
            noted: bool = False) -> GridMachine:
    return GridMachine(state, since, unknown_since, command, in_force, noted)


def inputs(device: str = "on", *, former: bool = True, soc: float | None = 90.0,
           stale: tuple[str, ...] = (), command: IslandCommand | ReturnCommand | None = None,
           ) -> GridInputs:
    return GridInputs(device, former, soc, stale, command)  # type: ignore[arg-type]


PLANNED = machine(S.OFF_GRID, command=CMD, in_force=True)  # off-grid by command
UNPLANNED = machine(S.OFF_GRID)  # off-grid by grid loss
GOING = machine(S.GOING_OFF_GRID, command=CMD, in_force=True)
RETURNING = machine(S.RETURNING, command=CMD)
NOW = T0 + 10

# name, machine, inputs, now, expected state, expected cause (None: no record), requested_by
CASES = [
    # UNDEFINED: left only on a device's word, never for a command.
    ("boot, grid on", machine(S.UNDEFINED), inputs("on"), NOW,
     S.ON_GRID, "grid confirmed (device report)", None),
    ("boot, grid off", machine(S.UNDEFINED), inputs("off"), NOW,
     S.OFF_GRID, "off-grid (device report)", None),
    ("boot, nobody says", machine(S.UNDEFINED), inputs("unknown"), NOW,
     S.UNDEFINED, None, None),
    ("boot, nobody says for a day", machine(S.UNDEFINED, T0 - DAY, unknown_since=T0 - DAY),
     inputs("unknown"), NOW, S.UNDEFINED, None, None),
    ("undefined ignores a command", machine(S.UNDEFINED), inputs("unknown", command=CMD), NOW,
     S.UNDEFINED, None, None),
    # ON_GRID
    ("on, grid on", machine(S.ON_GRID), inputs("on"), NOW, S.ON_GRID, None, None),
    ("on, grid lost", machine(S.ON_GRID), inputs("off"), NOW,
     S.OFF_GRID, "grid lost (device report)", None),
    ("on, grid lost beats a due command", machine(S.ON_GRID), inputs("off", command=CMD), NOW,
     S.OFF_GRID, "grid lost (device report)", None),
    ("on, unknown starts the timer", machine(S.ON_GRID), inputs("unknown"), NOW,
     S.ON_GRID, None, None),
    ("on, unknown under the timeout", machine(S.ON_GRID, unknown_since=NOW - 29),
     inputs("unknown"), NOW, S.ON_GRID, None, None),
    ("on, unknown at the timeout", machine(S.ON_GRID, unknown_since=NOW - 30),
     inputs("unknown"), NOW, S.UNDEFINED, "grid status unknown for 30 s", None),
    ("on, grid back resets the timer", machine(S.ON_GRID, unknown_since=NOW - 300),
     inputs("on"), NOW, S.ON_GRID, None, None),
    ("on, command due", machine(S.ON_GRID), inputs(command=CMD), NOW,
     S.GOING_OFF_GRID, "island command started", "coordinator"),
    ("on, command due, SoC low at start", machine(S.ON_GRID), inputs(soc=42, command=CMD), NOW,
     S.ON_GRID, "coop SoC 42 % below the plan's required 80 %", "coordinator"),
    ("on, command due, grid-former failed", machine(S.ON_GRID),
     inputs(former=False, command=CMD), NOW,
     S.ON_GRID, "no healthy grid-forming inverter", "coordinator"),
    ("on, command due, meter stale", machine(S.ON_GRID),
     inputs(stale=("h03/meter",), command=CMD), NOW,
     S.ON_GRID, "meters not fresh: h03/meter", "coordinator"),
    ("on, command due while unknown waits", machine(S.ON_GRID), inputs("unknown", command=CMD),
     NOW, S.ON_GRID, None, None),
    ("on, command before its start", machine(S.ON_GRID), inputs(command=LATER), NOW,
     S.ON_GRID, None, None),
    ("on, command taken up once", machine(S.ON_GRID, command=CMD), inputs(command=CMD), NOW,
     S.ON_GRID, None, None),
    ("on, command past its end", machine(S.ON_GRID), inputs(command=CMD), T0 + DAY,
     S.ON_GRID, None, None),
    ("on, return command ignored", machine(S.ON_GRID), inputs(command=RET), NOW,
     S.ON_GRID, None, None),
    # GOING_OFF_GRID
    ("going, confirmed", GOING, inputs("off"), NOW,
     S.OFF_GRID, "islanded (device report)", "coordinator"),
    ("going, confirmed with the former failing", GOING, inputs("off", former=False), NOW,
     S.OFF_GRID, "islanded (device report)", "coordinator"),
    ("going, waiting", GOING, inputs("on"), T0 + 59, S.GOING_OFF_GRID, None, None),
    ("going, waiting in silence", GOING, inputs("unknown"), T0 + 59,
     S.GOING_OFF_GRID, None, None),
    ("going, not confirmed in time", GOING, inputs("on"), T0 + 60,
     S.RETURNING, "island not confirmed within 60 s", None),
    ("going, silence until the timeout", GOING, inputs("unknown"), T0 + 60,
     S.RETURNING, "island not confirmed within 60 s", None),
    ("going, grid-former fails", GOING, inputs("on", former=False), NOW,
     S.RETURNING, "grid-forming inverter failed before confirming the island", None),
    ("going, return requested", GOING, inputs("on", command=RET), NOW,
     S.RETURNING, "return requested", "member-h03"),
    ("going, stale return ignored", GOING, inputs("on", command=STALE_RET), NOW,
     S.GOING_OFF_GRID, None, None),
    ("going, command lapsed", GOING, inputs("on"), T0 + DAY,
     S.RETURNING, "island command lapsed", "coordinator"),
    # OFF_GRID
    ("off, islanded", PLANNED, inputs("off"), NOW, S.OFF_GRID, None, None),
    ("off, silence stays off", PLANNED, inputs("unknown"), T0 + 3600, S.OFF_GRID, None, None),
    ("off, command lapsed", PLANNED, inputs("off"), T0 + DAY,
     S.RETURNING, "island command lapsed", "coordinator"),
    ("off, lapse needs no command input", PLANNED, inputs("off", command=None), T0 + DAY,
     S.RETURNING, "island command lapsed", "coordinator"),
    ("off, return requested", PLANNED, inputs("off", command=RET), NOW,
     S.RETURNING, "return requested", "member-h03"),
    ("off, inverter reconnected early", PLANNED, inputs("on"), NOW,
     S.ON_GRID, "reconnected before the island command ended (device report)", None),
    ("off, grid back after a loss", UNPLANNED, inputs("on"), NOW,
     S.ON_GRID, "grid back (device report)", None),
    ("off, grid loss has no lapse", machine(S.OFF_GRID, command=CMD), inputs("off"), T0 + DAY,
     S.OFF_GRID, None, None),
    ("off, grid loss ignores a return", UNPLANNED, inputs("off", command=RET), NOW,
     S.OFF_GRID, None, None),
    ("off, grid-former fails", PLANNED, inputs("off", former=False), NOW,
     S.OFF_GRID, "grid-forming inverter failed while off-grid", None),
    ("off, grid-former failure noted once", machine(S.OFF_GRID, noted=True),
     inputs("off", former=False), NOW, S.OFF_GRID, None, None),
    ("off, lapse with a failed former", PLANNED, inputs("off", former=False), T0 + DAY,
     S.RETURNING, "island command lapsed", "coordinator"),
    # RETURNING
    ("returning, reconnected", RETURNING, inputs("on"), NOW,
     S.ON_GRID, "reconnected (device report)", None),
    ("returning, waiting", RETURNING, inputs("off"), T0 + 299, S.RETURNING, None, None),
    ("returning, waiting in silence", RETURNING, inputs("unknown"), T0 + 299,
     S.RETURNING, None, None),
    ("returning, grid not back", RETURNING, inputs("off"), T0 + 300,
     S.OFF_GRID, "grid not back within 300 s of the return (device report)", None),
    ("returning, silence", RETURNING, inputs("unknown"), T0 + 300,
     S.UNDEFINED, "grid status unknown 300 s into the return", None),
    ("returning ignores a new command", machine(S.RETURNING, T0 + 600, command=CMD),
     inputs("off", command=LATER), T0 + 700,
     S.RETURNING, None, None),
]


@pytest.mark.parametrize(("name", "start", "given_inputs", "now", "to", "cause", "by"), CASES,
                         ids=[c[0] for c in CASES])
def test_transition_table(name, start, given_inputs, now, to, cause, by) -> None:
    t = step(start, given_inputs, now)
    assert t.state is to
    if cause is None:
        assert t.record is None
        return
    assert t.record is not None
    assert (t.record.ts, t.record.from_state, t.record.to_state) == (now, start.state, to)
    assert (t.record.cause, t.record.requested_by) == (cause, by)
    assert t.record.refused == (start.state is to is S.ON_GRID)


def test_every_row_of_the_table_is_exercised() -> None:
    rows = {(state, rule.to) for state, rules in TABLE.items() for rule in rules}
    covered = {(c[1].state, c[4]) for c in CASES}
    assert rows <= covered
    assert set(TABLE) == set(GridState)


def test_memory_after_start_and_refusal() -> None:
    started = step(machine(S.ON_GRID), inputs(command=CMD), NOW).machine
    assert (started.command, started.in_force, started.since) == (CMD, True, NOW)
    refused = step(machine(S.ON_GRID), inputs(soc=10, command=CMD), NOW).machine
    assert (refused.command, refused.in_force, refused.state) == (CMD, False, S.ON_GRID)
    # Refused at its start, a standing command is not tried again every cycle.
    assert step(refused, inputs(command=CMD), NOW + 1).record is None


# ------------------------------------------------------------------ refusals


def ask(state: GridState = S.ON_GRID, *, start: float = NOW, end: float = NOW + DAY,
        soc_req: float = 80.0, now: float = NOW, **kw) -> IslandCommand | Refusal:
    return request_island(machine(state), inputs(**kw), requested_by="coordinator",
                          start_ts=start, end_ts=end, required_soc_pct=soc_req, now=now)


@pytest.mark.parametrize(("kwargs", "reason"), [
    (dict(former=False), "no healthy grid-forming inverter"),
    (dict(soc=42.0), "coop SoC 42 % below the plan's required 80 %"),
    (dict(soc=79.96), "coop SoC 79.9 % below the plan's required 80 %"),
    (dict(soc=None), "coop SoC unknown (the plan requires 80 %)"),
    (dict(soc=float("nan")), "coop SoC unknown (the plan requires 80 %)"),
    (dict(stale=("h03/meter", "h07/meter")), "meters not fresh: h03/meter, h07/meter"),
    (dict(state=S.UNDEFINED), "grid state is UNDEFINED, an island starts only from ON_GRID"),
    (dict(state=S.OFF_GRID), "grid state is OFF_GRID, an island starts only from ON_GRID"),
    (dict(end=NOW), "end time not after start time"),
    (dict(end=NOW + MAX_ISLAND_S + 1), "island of 48.1 h longer than the 48 h allowed"),
    (dict(start=NOW - 2 * DAY, end=NOW - DAY), "end time already past"),
    (dict(soc_req=120.0), "required SoC 120.0 % outside 0-100 %"),
])
def test_each_refusal_reason(kwargs, reason) -> None:
    result = ask(**kwargs)
    assert isinstance(result, Refusal)
    assert result.reasons == (reason,)
    assert (result.requested_by, result.ts) == ("coordinator", NOW)


def test_refusal_names_every_failing_precondition() -> None:
    result = ask(S.UNDEFINED, former=False, soc=42.0, stale=("h03/meter",))
    assert isinstance(result, Refusal)
    assert result.reason == ("grid state is UNDEFINED, an island starts only from ON_GRID; "
                             "no healthy grid-forming inverter; "
                             "coop SoC 42 % below the plan's required 80 %; "
                             "meters not fresh: h03/meter")


def test_accepted_island_and_deferred_soc() -> None:
    assert ask() == IslandCommand("coordinator", NOW, NOW + DAY, 80.0)
    assert ask(end=NOW + MAX_ISLAND_S) == IslandCommand("coordinator", NOW, NOW + MAX_ISLAND_S,
                                                        80.0)
    # The starting SoC is the SoC at the start: a later island is checked then.
    later = ask(start=NOW + 3600, end=NOW + DAY, soc=42.0)
    assert isinstance(later, IslandCommand)
    t = step(machine(S.ON_GRID), inputs(soc=42.0, command=later), NOW + 3600)
    assert t.state is S.ON_GRID and t.record is not None and t.record.refused


@pytest.mark.parametrize(("start", "reason"), [
    (machine(S.ON_GRID), "no island in force (grid state is ON_GRID)"),
    (machine(S.UNDEFINED), "no island in force (grid state is UNDEFINED)"),
    (RETURNING, "already returning"),
    (UNPLANNED, "off-grid by grid loss, not by command: the coop reconnects when the grid "
                "is back"),
])
def test_return_refusals(start, reason) -> None:
    result = request_return(start, requested_by="member-h03", now=NOW)
    assert result == Refusal("member-h03", NOW, (reason,))


@pytest.mark.parametrize("start", [GOING, PLANNED])
def test_return_accepted(start) -> None:
    assert request_return(start, requested_by="member-h03", now=NOW) == ReturnCommand(
        "member-h03", NOW)


# ------------------------------------------------- a whole island, and its log


def test_island_lapses_by_itself_and_the_log_says_so() -> None:
    log, m = TransitionLog(), GridMachine()
    m = step(m, inputs("on"), T0 - 60).machine
    refusal = request_island(m, inputs(stale=("h03/meter",)), requested_by="member-h07",
                             start_ts=T0, end_ts=T0 + DAY, required_soc_pct=80, now=T0 - 30)
    assert isinstance(refusal, Refusal)
    log.append(refusal.record(m.state))
    command = request_island(m, inputs(), requested_by="coordinator", start_ts=T0,
                             end_ts=T0 + DAY, required_soc_pct=80, now=T0 - 30)
    assert isinstance(command, IslandCommand)
    sequence = [  # (time, device report) with the command standing all along
        (T0 - 10, "on"), (T0, "on"), (T0 + 5, "off"), (T0 + 3600, "unknown"),
        (T0 + DAY - 1, "off"), (T0 + DAY, "off"), (T0 + DAY + 30, "off"), (T0 + DAY + 40, "on"),
        (T0 + DAY + 50, "on"),
    ]
    for now, device in sequence:
        t = step(m, inputs(device, command=command), now)
        log.append(t.record)
        m = t.machine
    assert m.state is S.ON_GRID and not m.in_force
    rows = log.as_rows()
    assert [(r["from"], r["to"], r["cause"], r["requested_by"], r["refused"]) for r in rows] == [
        ("ON_GRID", "ON_GRID", "meters not fresh: h03/meter", "member-h07", True),
        ("ON_GRID", "GOING_OFF_GRID", "island command started", "coordinator", False),
        ("GOING_OFF_GRID", "OFF_GRID", "islanded (device report)", "coordinator", False),
        ("OFF_GRID", "RETURNING", "island command lapsed", "coordinator", False),
        ("RETURNING", "ON_GRID", "reconnected (device report)", None, False),
    ]
    assert rows[1]["time"] == "2026-06-21T00:00:00Z"
    assert rows[3]["time"] == "2026-06-22T00:00:00Z"
    assert len(log) == 5 and list(log) == list(log.records)


def test_log_is_append_only() -> None:
    log = TransitionLog()
    log.append(None)
    assert len(log) == 0 and log.as_rows() == []
    log.append(step(GridMachine(), inputs("on"), T0).record)
    assert isinstance(log.records, tuple) and len(log) == 1


def test_bad_device_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="device_grid"):
        inputs("ON")


# ------------------------------------------------------------ never islanded by silence


@pytest.mark.parametrize("state", list(GridState))
def test_only_off_grid_is_islanded(state) -> None:
    assert islanded(state) is (state is S.OFF_GRID)


def test_undefined_is_never_islanded() -> None:
    assert not islanded(GridMachine().state)
    m = GridMachine()
    for now in range(0, 7 * 24 * 3600, 600):  # a week of silence, with a command standing
        m = step(m, inputs("unknown", command=CMD), T0 + now).machine
        assert m.state is S.UNDEFINED and not islanded(m.state)


SHORT = IslandCommand("member-h07", T0 + 900, T0 + 1800, 50.0)
# "same" keeps the previous command or device status: both stand for a while;
# "follow" is an inverter that does what it is asked (opens when going off-grid,
# recloses when returning), so whole islands happen between the faults.
FOLLOW = {S.GOING_OFF_GRID: "off", S.RETURNING: "on"}
commands = st.sampled_from([None, CMD, LATER, SHORT, SHORT, RET, STALE_RET, *["same"] * 8])
cycles = st.tuples(  # biased so that islands start, confirm, lapse and time out
    st.one_of(st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]),
              st.floats(0.0, 400.0)),
    st.sampled_from(["on", "off", "unknown", *["same"] * 2, *["follow"] * 2]),
    st.sampled_from([True, True, True, False]),
    st.one_of(st.sampled_from([None, 42.0, 90.0, 95.0, 100.0]), st.floats(0.0, 100.0)),
    st.sampled_from([(), (), ("h03/meter",)]), commands,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(cycles, min_size=1, max_size=60))
def test_islanded_only_in_off_grid_and_only_on_a_device_report(sequence) -> None:
    m, now, standing, status = GridMachine(), T0 - 60, None, "on"
    for dt, device, former, soc, stale, command in sequence:
        now += dt
        command = standing = standing if command == "same" else command
        if device == "follow":
            device = FOLLOW.get(m.state, status)
        device = status = status if device == "same" else device
        given_inputs = inputs(device, former=former, soc=soc, stale=stale, command=command)
        t = step(m, given_inputs, now)
        assert islanded(t.state) is (t.state is S.OFF_GRID)
        if t.state is S.OFF_GRID and m.state is not S.OFF_GRID:
            assert device == "off"  # never from "unknown" (nor anything else) alone
        if t.state is S.ON_GRID and m.state is not S.ON_GRID:
            assert device == "on"
        if t.state is not m.state:
            assert t.record is not None and t.record.from_state is m.state
            assert t.record.to_state is t.state
        if t.record is not None and t.record.refused:
            assert t.state is m.state is S.ON_GRID
        if m.in_force and m.command is not None and now >= m.command.end_ts:
            assert t.state is not S.GOING_OFF_GRID  # an island ends when its command does
        m = t.machine
