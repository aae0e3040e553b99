"""What the rolling plan learns from the ledger once a day, off the cycle's thread.

From the last :data:`WINDOW_DAYS` whole UTC days the ledger booked:

* the cloudiness of each member's arrays (:func:`controller.planning.cloudiness.learn`,
  from the last seven days), when ``[site]`` has arrays;
* the forecasts' recent skill: a walk-forward over the window's second week, each day
  forecast from the seven days before it only, against what was booked and against
  persistence ("same as yesterday"): the figures ``forecast calibrate`` reports over the
  whole ledger, here over one week so that the worker can afford them daily;
* the window's PV and load on 15-minute slots, which seed the history profile after a
  restart (:meth:`controller.planning.profile.SlotProfile.seed`): the ledger already
  holds what the profile would otherwise need a day of cycles to see again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from controller.island.site_config import SiteConfig
from controller.planning.calibrate import ledger_power
from controller.planning.cloudiness import DAYS, Cloudiness, learn, walk_forward_factor
from controller.planning.providers import clear_sky_w, with_arrays

FloatArray = NDArray[np.float64]
SLOT_S = 900
PER_DAY = 96
WINDOW_DAYS = 2 * DAYS


@dataclass(frozen=True, slots=True)
class Learned:
    """One day's learning: ``cloudiness`` (None without arrays or data), ``skill`` (see
    :func:`skill`), and the window's slots (``start_s``, PV and load, T × N W)."""

    cloudiness: Cloudiness | None
    skill: dict
    start_s: float
    pv_w: FloatArray
    load_w: FloatArray


def to_slots(series: FloatArray, step_s: int) -> FloatArray:
    """Ledger intervals (T × N mean W) as 15-minute slots (every settlement_s divides
    or is a multiple of 900 s)."""
    if step_s == SLOT_S:
        return series
    if step_s < SLOT_S:
        k = SLOT_S // step_s
        rows = len(series) // k * k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a slot with no row at all
            return np.nanmean(series[:rows].reshape(-1, k, series.shape[1]), axis=1)
    return np.repeat(series, step_s // SLOT_S, axis=0)


def window(path: Path | str, member_ids: list[str], now: float,
           days: int = WINDOW_DAYS) -> tuple[float, FloatArray, FloatArray]:
    """The last ``days`` whole UTC days before ``now``: their start, PV and load per
    15-minute slot (days·96 × N, in ``member_ids`` order; NaN where nothing was booked)."""
    end = float(now // 86400 * 86400)
    start = end - days * 86400
    members, pv, load, step = ledger_power(path, start, end)
    where = {m: i for i, m in enumerate(members)}
    cols = np.array([where.get(m, -1) for m in member_ids], dtype=np.int64)
    out = []
    for series in (pv, load):
        slots = to_slots(series, step)
        picked = np.where(cols[None, :] >= 0, slots[:, np.maximum(cols, 0)], np.nan)
        out.append(picked)
    return start, out[0], out[1]


def _score(guess: FloatArray, truth: FloatArray, persistence: FloatArray) -> dict:
    """Coop MAE and RMSE (W, the members' sum per slot), persistence's MAE and the skill."""
    both = (np.isfinite(guess) & np.isfinite(truth) & np.isfinite(persistence)).all(axis=-1)
    if not both.any():
        return {"mae_w": None, "rmse_w": None, "persistence_mae_w": None, "skill": None,
                "slots": 0}
    err = guess[both].sum(axis=-1) - truth[both].sum(axis=-1)
    base = persistence[both].sum(axis=-1) - truth[both].sum(axis=-1)
    mae, p_mae = float(np.abs(err).mean()), float(np.abs(base).mean())
    return {"mae_w": round(mae, 2), "rmse_w": round(float(np.sqrt((err ** 2).mean())), 2),
            "persistence_mae_w": round(p_mae, 2),
            "skill": round(1.0 - mae / p_mae, 4) if p_mae > 0 else None,
            "slots": int(both.sum())}


def history_guess(days: FloatArray, past: int = DAYS) -> FloatArray:
    """Each day after the first ``past`` (D × P × N): the mean of the ``past`` days before."""
    win = sliding_window_view(days, past, axis=0)[:-1]  # (D - past) × P × N × past
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(win, axis=-1)


def skill(pv: FloatArray, load: FloatArray, clear: FloatArray | None, covered: NDArray[np.bool_],
          per_day: int = PER_DAY, slot_hour: NDArray[np.int64] | None = None,
          step_s: float = SLOT_S) -> dict:
    """Day-ahead skill of the plan's forecasts over the days after the first seven.

    PV: clear sky × cloudiness for members with arrays (``covered``), the history mean
    for the others (as the plan fills them); load: the history mean. Both against
    persistence."""
    d_count = len(pv) // per_day
    if d_count <= DAYS:
        return {"days": 0}
    shape = (d_count, per_day, pv.shape[1])
    pv_d, load_d = pv[:d_count * per_day].reshape(shape), load[:d_count * per_day].reshape(shape)
    pv_guess = history_guess(pv_d)
    name = "history"
    if clear is not None and covered.any():
        hours = (np.arange(per_day) * step_s // 3600 % 24).astype(np.int64) \
            if slot_hour is None else slot_hour
        clear_d = clear[:d_count * per_day].reshape(shape)
        factor = walk_forward_factor(pv_d, clear_d, hours, step_s)
        by_sky = clear_d[DAYS:] * factor
        pv_guess = np.where(covered & np.isfinite(by_sky), by_sky, pv_guess)
        name = "clear sky × cloudiness"
    return {"days": d_count - DAYS,
            "pv": {"forecast": name} | _score(pv_guess, pv_d[DAYS:], pv_d[DAYS - 1:-1]),
            "load": {"forecast": "history"} | _score(history_guess(load_d), load_d[DAYS:],
                                                     load_d[DAYS - 1:-1])}


def learn_from_ledger(path: Path | str, member_ids: list[str], now: float,
                      site: SiteConfig | None = None) -> Learned:
    """Read the window, learn the cloudiness and score the forecasts (seconds at most:
    for the worker's background thread, once a day)."""
    start, pv, load = window(path, member_ids, now)
    covered = (with_arrays(site, member_ids) if site is not None
               else np.zeros(len(member_ids), dtype=bool))
    clear = cloud = None
    if site is not None and covered.any():
        clear = clear_sky_w(site, member_ids, start, len(pv), SLOT_S)
        hours = (np.arange(PER_DAY) // 4).astype(np.int64)  # the window starts at 00:00 UTC
        shape = (-1, PER_DAY, len(member_ids))
        cloud = learn(pv.reshape(shape), clear.reshape(shape), hours,
                      learned_at=start + len(pv) * SLOT_S)
    scores = skill(pv, load, clear, covered) | {"computed_at": now}
    return Learned(cloud, scores, start, pv, load)
