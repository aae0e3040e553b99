"""``commonwatt forecast calibrate CONFIG``: how well the history forecast does on the
coop's own ledger, walking forward through it.

For every interval after the first week, the forecast made a day ahead (each member's
mean at that time of day over the seven days before the forecast day) and persistence
("same as yesterday") against what the ledger booked. Reported per member and for the
coop (the sum of members): MAE and RMSE in W, and skill = 1 - MAE / MAE of persistence
(above 0: better than persistence). Intervals a member has no row for are left out.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from controller.island.site_config import SiteConfig
from controller.ledger.reader import LedgerReader

FloatArray = NDArray[np.float64]
PV_PARTS = ("own_pv_used", "to_battery", "to_peers", "to_coop_battery", "to_grid", "curtailed")
LOAD_PARTS = ("own_pv_used", "from_battery", "from_peers", "from_coop_battery", "from_grid",
              "shed")
DAYS = 7


def ledger_power(path: Path | str, start: float | None = None, end: float | None = None,
                 ) -> tuple[list[str], FloatArray, FloatArray, int]:
    """Members, PV and load as mean W per interval (T × N, NaN where a row is missing),
    and the interval in seconds, from the ledger's committed rows.

    Without ``start``/``end``: from the first to the last row booked. With them: exactly
    the intervals from ``start`` (rounded down to an interval) up to ``end``."""
    reader = LedgerReader(path)
    members = [m for m, _ in reader.members()]
    step = reader.step
    rows = list(reader.raw_rows(start, end))
    if start is not None and end is not None:
        first = int(start) // step * step
        t_count = max(0, (int(end) - first) // step)
    elif rows:
        starts = sorted({r[0] for r in rows})
        first, t_count = starts[0], (starts[-1] - starts[0]) // step + 1
    else:
        return members, np.zeros((0, len(members))), np.zeros((0, len(members))), step
    from controller.ledger.schema import MEMBER_COLUMNS

    pv = np.full((t_count, len(members)), np.nan)
    load = np.full_like(pv, np.nan)
    if not rows:
        return members, pv, load, step
    # Whole columns at once: the worker reads two weeks of every member daily.
    index = {m: i for i, m in enumerate(members)}
    t = (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)) - first) // step
    m = np.fromiter((index[r[1]] for r in rows), dtype=np.int64, count=len(rows))
    values = np.nan_to_num(np.array([r[2:] for r in rows], dtype=float))  # NULL → 0
    pick = {c: i for i, c in enumerate(MEMBER_COLUMNS)}
    inside = (t >= 0) & (t < t_count)
    to_w = 3600.0 / step
    for out, parts in ((pv, PV_PARTS), (load, LOAD_PARTS)):
        total = values[:, [pick[c] for c in parts]].sum(axis=1) * to_w
        out[t[inside], m[inside]] = total[inside]
    return members, pv, load, step


def walk_forward(series: FloatArray, per_day: int, days: int = DAYS,
                 forecast: FloatArray | None = None) -> dict[str, FloatArray]:
    """Errors of the history forecast and of persistence, per member and for the coop.

    ``forecast``: another day-ahead forecast of every interval after the first ``days``
    days, scored (as ``history_*``) instead of the history mean wherever it is finite."""
    t_count = len(series)
    if t_count <= days * per_day:
        raise ValueError(f"the ledger holds {t_count / per_day:.1f} days: walking forward "
                         f"needs more than {days}")
    truth = series[days * per_day:]
    past = np.stack([series[(days - k) * per_day:t_count - k * per_day]
                     for k in range(1, days + 1)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a slot with no history at all
        history = np.nanmean(past, axis=0)
    persistence = past[0]
    if forecast is not None:
        history = np.where(np.isfinite(forecast), forecast, history)
    out: dict[str, FloatArray] = {}
    for name, guess in (("history", history), ("persistence", persistence)):
        err = guess - truth
        ok = np.isfinite(err)
        out[f"{name}_mae_w"] = np.where(ok, np.abs(err), 0).sum(0) / np.maximum(ok.sum(0), 1)
        out[f"{name}_rmse_w"] = np.sqrt(np.where(ok, err ** 2, 0).sum(0) / np.maximum(ok.sum(0),
                                                                                    1))
        both = np.isfinite(guess).all(axis=1) & np.isfinite(truth).all(axis=1)
        coop = guess[both].sum(axis=1) - truth[both].sum(axis=1)
        out[f"coop_{name}_mae_w"] = np.array(np.abs(coop).mean() if both.any() else np.nan)
        out[f"coop_{name}_rmse_w"] = np.array(np.sqrt((coop ** 2).mean()) if both.any()
                                              else np.nan)
    return out


def _skill(mae: float, persistence: float) -> float | None:
    return round(1.0 - mae / persistence, 4) if persistence > 0 else None


def sky_forecast(path: Path | str, site: SiteConfig, members: list[str], pv: FloatArray,
                 step: int) -> FloatArray:
    """Clear sky × cloudiness, day ahead, for every interval after the first week (as
    :func:`walk_forward` scores it; NaN for members without an array)."""
    from controller.planning.cloudiness import walk_forward_factor
    from controller.planning.providers import clear_sky_w, with_arrays

    first = LedgerReader(path).span()[0] or 0
    per_day = 86400 // step
    d_count = len(pv) // per_day
    clear = clear_sky_w(site, members, first, d_count * per_day, step)
    shape = (d_count, per_day, len(members))
    hours = ((first + (np.arange(per_day) + 0.5) * step) // 3600 % 24).astype(np.int64)
    factor = walk_forward_factor(pv[:d_count * per_day].reshape(shape), clear.reshape(shape),
                                 hours, step)
    guess = np.full((len(pv) - DAYS * per_day, len(members)), np.nan)
    sky = (clear.reshape(shape)[DAYS:] * factor).reshape(-1, len(members))
    guess[:len(sky)] = np.where(with_arrays(site, members)[None, :], sky, np.nan)
    return guess


def calibrate(path: Path | str, site: SiteConfig | None = None) -> dict:
    """The walk-forward report for PV and load: ``{"pv": {...}, "load": {...}}``; with
    ``site`` arrays also ``pv_sky``: clear sky × learned cloudiness (the rolling plan's
    default PV forecast; history for members without an array)."""
    members, pv, load, step = ledger_power(path)
    per_day = 86400 // step
    report: dict = {"interval_s": step, "days": round(len(pv) / per_day, 2),
                    "forecast": f"history: mean of the last {DAYS} days at that time of day",
                    "baseline": "persistence: same as yesterday"}
    series = [("pv", pv, None), ("load", load, None)]
    if site is not None and site.arrays:
        series.append(("pv_sky", pv, sky_forecast(path, site, members, pv, step)))
        report["forecast_pv_sky"] = ("pvlib clear sky on the [site] arrays × cloudiness "
                                     f"learned from the {DAYS} days before")
    for name, values, guess in series:
        e = walk_forward(values, per_day, forecast=guess)
        rows = {m: {"mae_w": round(float(e["history_mae_w"][i]), 2),
                    "rmse_w": round(float(e["history_rmse_w"][i]), 2),
                    "persistence_mae_w": round(float(e["persistence_mae_w"][i]), 2),
                    "skill": _skill(float(e["history_mae_w"][i]),
                                    float(e["persistence_mae_w"][i]))}
                for i, m in enumerate(members)}
        coop = {"mae_w": round(float(e["coop_history_mae_w"]), 2),
                "rmse_w": round(float(e["coop_history_rmse_w"]), 2),
                "persistence_mae_w": round(float(e["coop_persistence_mae_w"]), 2),
                "skill": _skill(float(e["coop_history_mae_w"]),
                                float(e["coop_persistence_mae_w"]))}
        report[name] = {"members": rows, "coop": coop}
    return report
