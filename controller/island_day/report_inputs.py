"""What the island report reads besides the ledger's sums: config, plan file, times, window.

* :func:`load_report_config`: the coop's config with its optional ``[site]``
  (time zone) and ``[island]`` (tier shares, battery capacities) tables;
* :func:`read_plan`: a plan saved from ``commonwatt island plan --json``,
  checked where the report reads it, and what it says per battery
  (:func:`plan_batteries`) and about shedding per step (:func:`plan_shed_kw`);
* :func:`island_window`: the whole settlement intervals to report on (the
  last island episode by default; see :mod:`controller.island_day.report`).

Bad input raises :class:`ReportInputError` (or :class:`~controller.config.ConfigError`
for the config) with a message naming the option or key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.accounts.figures import parse_time
from controller.config import CoopConfig, load_config
from controller.island.plan import TIERS
from controller.island.site_config import IslandConfig
from controller.ledger import LedgerReader

FloatArray = NDArray[np.float64]

#: Islanded intervals closer than this belong to one island episode.
JOIN_S = 3600
DAY_S = 86400


class ReportInputError(ValueError):
    """A config, plan, time or ledger that cannot be reported on; the message names it."""


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """What the report needs from the coop's config file."""

    coop: CoopConfig
    island: IslandConfig | None
    tz: tzinfo
    tz_name: str
    site_tz: bool = False  # the time zone is the [site]'s (else UTC)


def load_report_config(path: str | Path) -> ReportConfig:
    """The coop config with its optional ``[site]``/``[island]``; :class:`ConfigError` if bad."""
    coop = load_config(path)
    island = coop.island if "island" in coop.model_fields_set else None
    if coop.site is not None:
        return ReportConfig(coop, island, coop.site.tzinfo, coop.site.tz, True)
    return ReportConfig(coop, island, UTC, "UTC")


def parse_when(text: str, tz: tzinfo, field_name: str) -> float:
    """ISO 8601 (on the site's clock without an offset) or Unix seconds."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return parse_time(text, field_name)  # Unix seconds, or the error naming the field
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def read_plan(path: Path) -> dict:
    """A plan written by ``commonwatt island plan --json``, checked where the report reads it."""
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"--plan {path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"--plan {path}: not JSON ({exc}); expected the output of "
                               "'commonwatt island plan --json'") from None

    def bad(key: str, expected: str) -> ReportInputError:
        return ReportInputError(f"--plan {path}: {key}: expected {expected} (the output of "
                                "'commonwatt island plan --json')")

    if not isinstance(plan, dict):
        raise bad("top level", "an object")
    feasible = plan.get("feasible")
    if not isinstance(feasible, dict) or any(not isinstance(feasible.get(t), bool)
                                             for t in TIERS):
        raise bad("feasible", "true or false for each of " + ", ".join(TIERS))
    try:
        plan["start_ts"] = datetime.fromisoformat(str(plan["start"])).timestamp()
        plan["step_s"] = float(plan["step_s"])
    except (KeyError, ValueError):
        raise bad("start, step_s", "an ISO time and a step in seconds") from None
    for key, kind in (("batteries", list), ("shed_schedule", list), ("shed_kwh", dict)):
        if not isinstance(plan.setdefault(key, kind()), kind):
            raise bad(key, f"a{'n object' if kind is dict else ' list'}")
    for b in plan["batteries"]:
        if not isinstance(b, dict) or not isinstance(b.get("soc_pct"), list) or "member" not in b:
            raise bad("batteries[]", "objects with member, capacity_kwh and soc_pct")
    return plan


# ------------------------------------------------------------------ window
@dataclass(frozen=True, slots=True)
class Window:
    """Whole settlement intervals ``[start, end)`` and how they were chosen."""

    start: int
    end: int
    step: int
    source: str

    @property
    def times(self) -> NDArray[np.int64]:
        """Start of every interval in the window."""
        return np.arange(self.start, self.end, self.step, dtype=np.int64)


def last_episode(rows: list[dict[str, object]]) -> tuple[int, int]:
    """``[start, end)`` of the last run of islanded intervals, joined across short breaks."""
    start, end = int(rows[-1]["start_ts"]), int(rows[-1]["end_ts"])  # type: ignore[call-overload]
    for row in reversed(rows[:-1]):
        if int(row["end_ts"]) + JOIN_S < start:  # type: ignore[call-overload]
            break
        start = int(row["start_ts"])  # type: ignore[call-overload]
    return start, end


def island_window(reader: LedgerReader, start: float | None = None,
                  end: float | None = None) -> Window:
    """The window to report: given, else the last island episode, else the last 24 h."""
    first, last, count = reader.span()
    if not count or first is None or last is None:
        raise ReportInputError(f"{reader.path}: the ledger has no committed interval yet")
    step = reader.step
    if start is not None or end is not None:
        lo = start if start is not None else end - DAY_S  # type: ignore[operator]
        hi = end if end is not None else lo + DAY_S
        source = "--from/--to"
    else:
        islanded = [r for r in reader.intervals() if r["islanded_s"]]
        if islanded:
            lo, hi = last_episode(islanded)
            source = "islanded intervals"
        else:
            lo, hi = max(first, last - DAY_S), last
            source = "last 24 h of the ledger (no islanded interval in it)"
    lo_i, hi_i = math.ceil(lo / step) * step, math.floor(hi / step) * step
    if hi_i <= lo_i:
        raise ReportInputError(f"--from/--to: [{lo:.0f}, {hi:.0f}) holds no whole settlement "
                               f"interval of {step} s")
    return Window(int(lo_i), int(hi_i), step, source)


def plan_batteries(plan: dict | None) -> dict[str, dict]:
    """The plan's batteries per member: capacity (kWh) and the capacity-weighted SoC series."""
    out: dict[str, dict] = {}
    for b in (plan or {}).get("batteries", []):
        cap = float(b.get("capacity_kwh") or 0.0)
        soc = np.asarray(b["soc_pct"], dtype=float)
        entry = out.setdefault(str(b["member"]), {"capacity_kwh": 0.0, "kwh": np.zeros_like(soc)})
        if entry["kwh"].shape == soc.shape:
            entry["capacity_kwh"] += cap
            entry["kwh"] = entry["kwh"] + soc * cap / 100.0
    for entry in out.values():
        cap = entry["capacity_kwh"]
        entry["soc_pct"] = 100.0 * entry["kwh"] / cap if cap > 0 else None
    return out


def plan_shed_kw(plan: dict) -> tuple[FloatArray, FloatArray]:
    """The plan's shed as mean kW per step (step boundaries, values): each run of the
    shed schedule spread evenly over its steps (the plan file gives kWh per run)."""
    steps = int(plan.get("steps") or 0)
    for run in plan["shed_schedule"]:
        end = (datetime.fromisoformat(run["end"]).timestamp() - plan["start_ts"])
        steps = max(steps, round(end / plan["step_s"]))
    kw = np.zeros(steps)
    for run in plan["shed_schedule"]:
        a = round((datetime.fromisoformat(run["start"]).timestamp() - plan["start_ts"])
                  / plan["step_s"])
        b = round((datetime.fromisoformat(run["end"]).timestamp() - plan["start_ts"])
                  / plan["step_s"])
        if b > a:
            kw[a:b] += float(run["kwh"]) / ((b - a) * plan["step_s"] / 3600.0)
    return plan["start_ts"] + np.arange(steps + 1) * plan["step_s"], kw
