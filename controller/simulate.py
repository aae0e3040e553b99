"""``commonwatt simulate``: what-if studies on recorded or synthetic data.

"If we add ten batteries, how many more kWh are liberated?" Reads a fleet
and a time series from CSV, runs the batched dispatch, and reports per-member
and coop totals in kWh. Every input error names the file, the row and the
column.

Accounting: a battery's starting charge has unknown origin, so it counts as not
liberated (as the controller does: its coop-origin pool starts empty). Self-
sufficiency is ``liberated / load``: shed load counts against it, so an island
that keeps a member in the dark does not report that member as self-sufficient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dispatch import CoopLimits, Fleet, FleetState
from dispatch.metrics import jain_index
from dispatch.series import SeriesResult, run_series

FLEET_COLUMNS = ("member", "battery_wh", "battery_max_charge_w", "battery_max_discharge_w",
                 "soc_start_pct", "soc_min_pct", "efficiency")
FLEET_OPTIONAL = {"tier": 0, "key": 1.0, "offered": 0}
#: Optional fleet columns a sharing policy cannot do without, and what they hold.
POLICY_COLUMNS = {"static": ("key", "each member's sharing key"),
                  "tiers": ("tier", "each member's load priority, 0 = critical")}
SERIES_COLUMNS = ("timestamp", "member", "pv_w", "load_w")
REPORTED = ("load", "served", "shed", "liberated", "own_pv_used", "from_peers", "to_peers",
            "from_battery", "to_battery", "from_grid", "to_grid", "curtailed", "losses",
            "battery_start", "battery_end")


class InputError(Exception):
    """A CSV file the simulation cannot use; the message names file, row and column."""


@dataclass(frozen=True, slots=True)
class Study:
    """A parsed fleet and series, ready to dispatch."""

    members: list[str]
    fleet: Fleet
    soc_start_wh: np.ndarray
    pv_w: np.ndarray
    load_w: np.ndarray
    step_s: float


def _read(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file: {exc}") from None
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {', '.join(missing)} "
                         f"(columns are: {', '.join(frame.columns)})")
    return frame


def _numbers(path: Path, frame: pd.DataFrame, column: str, low: float | None = None,
             high: float | None = None, what: str = "a number") -> np.ndarray:
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{path}: row {i + 2}, column {column}: {frame[column].iloc[i]!r} "
                         f"is not {what}")
    return values


def read_fleet(path: Path, policy: str = "prorata") -> tuple[list[str], Fleet, np.ndarray]:
    """Members, their fleet parameters and starting battery content (Wh).

    ``policy`` is the sharing policy the fleet will be run with: ``static`` needs
    a ``key`` column and ``tiers`` a ``tier`` column, instead of silently using
    the defaults (which would make them plain ``equal`` and ``prorata``).
    """
    frame = _read(path, FLEET_COLUMNS)
    if policy in POLICY_COLUMNS:
        column, meaning = POLICY_COLUMNS[policy]
        if column not in frame.columns:
            raise InputError(f"{path}: missing column {column}: --policy {policy} needs "
                             f"{meaning} (columns are: {', '.join(frame.columns)})")
    members = [m.strip() for m in frame["member"]]
    for i, m in enumerate(members):
        if not m:
            raise InputError(f"{path}: row {i + 2}, column member: empty member id")
        if members.index(m) != i:
            raise InputError(f"{path}: row {i + 2}, column member: {m!r} appears twice")
    cap = _numbers(path, frame, "battery_wh", 0, what="an energy >= 0 Wh")
    charge = _numbers(path, frame, "battery_max_charge_w", 0, what="a power >= 0 W")
    discharge = _numbers(path, frame, "battery_max_discharge_w", 0, what="a power >= 0 W")
    soc_start = _numbers(path, frame, "soc_start_pct", 0, 100, what="a percentage 0-100")
    soc_min = _numbers(path, frame, "soc_min_pct", 0, 100, what="a percentage 0-100")
    efficiency = _numbers(path, frame, "efficiency", 0, 1, what="a round trip in (0, 1]")
    if (efficiency == 0).any():
        i = int(np.argmax(efficiency == 0))
        raise InputError(f"{path}: row {i + 2}, column efficiency: 0 is not a round trip "
                         "in (0, 1]")
    extra = {}
    for column, default in FLEET_OPTIONAL.items():
        if column in frame.columns:
            extra[column] = _numbers(path, frame, column, 0, what="a number >= 0")
        else:
            extra[column] = np.full(len(frame), float(default))
    fleet = Fleet(cap, cap * soc_min / 100, charge, discharge, efficiency,
                  offered=extra["offered"] > 0, tier=extra["tier"].astype(np.int64),
                  key=extra["key"])
    return members, fleet, cap * soc_start / 100


def read_series(path: Path, members: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """PV and load as T × N arrays (W, in ``members`` order) and the step in seconds."""
    frame = _read(path, SERIES_COLUMNS)
    if frame.empty:
        raise InputError(f"{path}: no rows")
    stamps = pd.to_datetime(frame["timestamp"].str.strip(), utc=True, errors="coerce",
                            format="mixed")
    if stamps.isna().any():
        i = int(np.argmax(stamps.isna().to_numpy()))
        raise InputError(f"{path}: row {i + 2}, column timestamp: "
                         f"{frame['timestamp'].iloc[i]!r} is not a timestamp")
    who = frame["member"].str.strip()
    known = who.isin(members).to_numpy()
    if not known.all():
        i = int(np.argmax(~known))
        raise InputError(f"{path}: row {i + 2}, column member: unknown member {who.iloc[i]!r} "
                         "(not in the fleet file)")
    pv = _numbers(path, frame, "pv_w", 0, what="a power >= 0 W")
    load = _numbers(path, frame, "load_w", 0, what="a power >= 0 W")
    keys = pd.DataFrame({"t": stamps, "m": who})
    dup = keys.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise InputError(f"{path}: row {i + 2}, column timestamp: duplicated timestamp "
                         f"{frame['timestamp'].iloc[i]!r} for member {who.iloc[i]!r}")
    naive = stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    ns = naive.astype("datetime64[ns]").astype(np.int64)
    times = np.unique(ns)
    steps = np.diff(times) / 1e9
    if len(steps) and not np.allclose(steps, steps[0]):
        k = int(np.argmax(~np.isclose(steps, steps[0])))
        raise InputError(f"{path}: column timestamp: irregular step at "
                         f"{pd.Timestamp(times[k + 1], tz='UTC')} ({steps[k]:g} s after the "
                         f"previous, expected {steps[0]:g} s)")
    step = float(steps[0]) if len(steps) else 3600.0
    t_index = np.searchsorted(times, ns)
    m_index = pd.Index(members).get_indexer(who)
    pv_w = np.full((len(times), len(members)), np.nan)
    load_w = np.full_like(pv_w, np.nan)
    pv_w[t_index, m_index] = pv
    load_w[t_index, m_index] = load
    if np.isnan(pv_w).any():
        t, m = np.argwhere(np.isnan(pv_w))[0]
        stamp = pd.Timestamp(times[t], tz="UTC")
        raise InputError(f"{path}: member {members[m]!r} has no row for timestamp {stamp}")
    return pv_w, load_w, step


def load_study(fleet_csv: Path, series_csv: Path, policy: str = "prorata") -> Study:
    """Read and check both files; ``policy`` is checked against the fleet's columns."""
    members, fleet, soc_start = read_fleet(fleet_csv, policy)
    pv, load, step = read_series(series_csv, members)
    return Study(members, fleet, soc_start, pv, load, step)


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def run_study(study: Study, policy: str = "prorata", island: bool = False) -> dict:
    """Per-member and coop totals in kWh, as ``{"members": {...}, "coop": {...}}``.

    Every member and the coop also get ``self_sufficiency`` = liberated / load
    (``None`` without load); the coop's ``jain_fairness`` is Jain's index over the
    self-sufficiency of the members that have load. Starting battery charge is of
    unknown origin: it is never counted as liberated.
    """
    result = run_series(study.fleet, FleetState.start(study.soc_start_wh),
                        study.pv_w, study.load_w, study.step_s, policy,
                        CoopLimits(islanded=island))
    return report_totals(study, result)


def report_totals(study: Study, result: SeriesResult) -> dict:
    """:func:`run_study`'s report of a series already dispatched (greedy or planned)."""
    totals = result.totals
    totals["from_battery"] = totals["from_battery"] + totals["from_coop_battery"]
    totals["to_battery"] = totals["to_battery"] + totals["to_coop_battery"]
    liberated, load = totals["liberated"], totals["load"]
    members = {
        m: {k: round(float(totals[k][i]) / 1000, 6) for k in REPORTED}
        | {"self_sufficiency": _ratio(float(liberated[i]), float(load[i]))}
        for i, m in enumerate(study.members)
    }
    coop = {k: round(float(totals[k].sum()) / 1000, 6) for k in REPORTED}
    coop["self_sufficiency"] = _ratio(float(liberated.sum()), float(load.sum()))
    has_load = load > 0
    coop["jain_fairness"] = jain_index((liberated[has_load] / load[has_load]).tolist())
    coop["ticks"] = result.ticks
    coop["step_s"] = study.step_s
    return {"members": members, "coop": coop}
