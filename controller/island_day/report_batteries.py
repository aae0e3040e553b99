"""The island report's batteries: each member's battery rebuilt from its booked flows.

Content is rebuilt interval by interval (see :mod:`controller.island_day.report`); a battery
that stopped answering (its device in an interval's ``missing``, as the ledger records
it) is unknown from that interval on: nothing booked says what it did since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np

from controller.island_day.report_inputs import FloatArray, ReportConfig, plan_batteries

DEFAULT_SOC_PCT = 50.0
#: Battery flows in and out of a member's battery (losses are drawn out too).
BATTERY_IN = ("to_battery", "battery_from_coop", "grid_to_battery", "battery_from_batteries")
BATTERY_OUT = ("from_battery", "battery_to_coop", "battery_to_grid", "battery_to_batteries",
               "losses")


@dataclass(slots=True)
class Battery:
    """One member's battery over the window: content at each interval boundary."""

    member: str
    capacity_wh: float | None
    capacity_source: str
    floor_pct: float | None
    start_soc_pct: float
    start_soc_source: str
    stored_wh: FloatArray  # T + 1
    plan_soc: tuple[FloatArray, FloatArray] | None = None  # (times, %) at plan step boundaries
    #: The first interval in which the battery did not answer (the ledger's ``missing``):
    #: from its end on, its content is unknown. None: it answered throughout.
    unknown_from: int | None = None
    unknown_from_ts: float | None = None

    @property
    def soc_pct(self) -> FloatArray | None:
        """SoC at each boundary, %, NaN once it stopped answering; ``None`` without a
        capacity."""
        if not self.capacity_wh:
            return None
        soc = 100.0 * self.stored_wh / self.capacity_wh
        if self.unknown_from is not None:
            soc[self.unknown_from + 1:] = np.nan  # nothing booked says what it did since
        return soc


def lost_batteries(rows: list[dict[str, object]], times: FloatArray,
                   names: dict[str, str]) -> dict[str, tuple[int, float]]:
    """Per member, the first interval (index into ``times``, and its start) in which its
    battery device (``names``: member → device name) was missing, from the ledger's
    interval rows."""
    index = {int(t): k for k, t in enumerate(times)}
    out: dict[str, tuple[int, float]] = {}
    for row in rows:
        missing = set(json.loads(str(row["missing"]))) if row.get("missing") else set()
        k = index.get(int(row["start_ts"]))  # type: ignore[call-overload]
        for member, device in names.items():
            if k is not None and device in missing and member not in out:
                out[member] = (k, float(row["start_ts"]))  # type: ignore[arg-type]
    return out


def rebuild_batteries(cfg: ReportConfig, plan: dict | None, ids: list[str], delta: FloatArray,
               lost: dict[str, tuple[int, float]] | None = None) -> list[Battery]:
    """Each member's battery rebuilt from its net change per interval (``delta``, T × N),
    unknown from the interval it was ``lost`` in; see the module's docstring."""
    island = cfg.island.batteries if cfg.island else []
    devices = {m.id: m.device("battery") for m in cfg.coop.members}
    planned = plan_batteries(plan)
    listed = {b.member for b in island}
    moved = np.abs(delta).sum(axis=0) > 0
    column = {m: i for i, m in enumerate(ids)}
    members = [m for m in ids if devices.get(m) is not None or m in planned or m in listed
               or moved[column[m]]]
    out = []
    for m in members:
        mine = [b for b in island if b.member == m]
        device, p = devices.get(m), planned.get(m)
        if mine:
            cap, cap_source = sum(b.capacity_kwh for b in mine) * 1000.0, "[[island.batteries]]"
        elif p and p["capacity_kwh"] > 0:
            cap, cap_source = p["capacity_kwh"] * 1000.0, "plan"
        else:
            cap, cap_source = None, "unknown"
        floors = [b.floor_pct for b in mine if b.floor_pct is not None]
        floor = floors[0] if floors else (device.soc_floor_pct if device else None)
        if p is not None and p["soc_pct"] is not None:
            soc, source = float(p["soc_pct"][0]), "plan"
        elif mine:
            soc = sum(b.soc_pct * b.capacity_kwh for b in mine) / sum(b.capacity_kwh for b in mine)
            source = "[[island.batteries]] soc_pct"
        else:
            soc, source = DEFAULT_SOC_PCT, "default 50 %"
        start_wh = (cap or 0.0) * soc / 100.0
        stored = start_wh + np.concatenate([[0.0], np.cumsum(delta[:, column[m]])])
        plan_soc = None
        if p is not None and p["soc_pct"] is not None:
            steps = np.arange(len(p["soc_pct"]))
            plan_soc = (plan["start_ts"] + steps * plan["step_s"], p["soc_pct"])  # type: ignore[index]
        k, at = (lost or {}).get(m, (None, None))
        out.append(Battery(m, cap, cap_source, floor, soc, source, stored, plan_soc, k, at))
    return out


def battery_summary(b: Battery, tz: tzinfo) -> dict[str, object]:
    soc = b.soc_pct
    end = None if soc is None or np.isnan(soc[-1]) else round(float(soc[-1]), 2)
    return {
        # the lowest while it answered: after that nothing is known
        "min_soc_pct": None if soc is None else round(float(np.nanmin(soc)), 2),
        "unknown_from": None if b.unknown_from_ts is None else _iso(b.unknown_from_ts, tz),
        "floor_pct": b.floor_pct,
        "start_soc_pct": round(b.start_soc_pct, 2),
        "start_soc_source": b.start_soc_source,
        "end_soc_pct": end,
        "capacity_kwh": None if b.capacity_wh is None else round(b.capacity_wh / 1000.0, 3),
        "capacity_source": b.capacity_source,
        "above_floor": None if soc is None or b.floor_pct is None
        else bool(np.nanmin(soc) >= b.floor_pct - 0.5),
        "net_kwh": None if end is None and soc is not None
        else round(float(b.stored_wh[-1] - b.stored_wh[0]) / 1000.0, 3),
    }


def _iso(ts: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()
