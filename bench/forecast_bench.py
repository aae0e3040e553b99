"""The rolling plan's forecasts scored on a simulated year (part of ``bench dispatch``).

The year is the simulators' physics (:mod:`simulators.profiles`): PV from the typical
year's measured irradiance (Greensboro NC TMY3) on the simulated array, load from the
H25 shape with each member's habits and noise, on 15-minute slots. Each day is forecast
a day ahead from the seven days before it only, with the controller's own code
(:func:`controller.planning.learner.skill`): PV by the history mean and by pvlib's clear
sky on the same array × the cloudiness learned from those days; load by the history
mean. Everything is set against persistence ("same as yesterday"), coop MAE per slot.
Vectorized over the year: one clear-sky run, one sliding window.
"""

from __future__ import annotations

import time

import numpy as np

from bench.plan_bench import _profiles

PER_DAY = 96
#: The typical year's days begin at local standard time midnight, UTC-5 in Greensboro.
TMY_UTC_OFFSET_H = -5
YEAR_START_UTC = 1_735_689_600.0  # 2025-01-01 00:00 UTC (solar geometry repeats yearly)


def year_clear_sky(days: int) -> tuple[np.ndarray, np.ndarray]:
    """pvlib clear-sky W per kWp of the simulated array over ``days`` (T,), and each
    slot's UTC hour, on the typical year's timeline."""
    from controller.island.site_config import SiteConfig
    from controller.planning.providers import clear_sky_w
    from simulators.profiles import AZIMUTH_DEG, TILT_DEG, _tmy

    _, meta = _tmy()
    site = SiteConfig.model_validate({
        "latitude": meta["latitude"], "longitude": meta["longitude"], "tz": "UTC",
        "altitude_m": meta["altitude"],
        "arrays": [{"member": "m", "kwp": 1.0, "tilt": TILT_DEG, "azimuth": AZIMUTH_DEG}]})
    start = YEAR_START_UTC - TMY_UTC_OFFSET_H * 3600
    clear = clear_sky_w(site, ["m"], start, days * PER_DAY, 900)[:, 0]
    hours = ((np.arange(PER_DAY) // 4 - TMY_UTC_OFFSET_H) % 24).astype(np.int64)
    return clear, hours


def bench_sky_skill(n: int = 20, days: int = 365, persist_h: float | None = None) -> dict:
    """Day-ahead coop MAE of each forecast over the year, and skill against persistence."""
    from controller.planning import cloudiness
    from controller.planning.learner import skill

    began = time.perf_counter()
    rng = np.random.default_rng(9)
    pv_kwp, load = _profiles(list(range(days)), rng, n)
    kwp = rng.choice([3.0, 5.0, 8.0], n)
    pv = pv_kwp * kwp[None, :]
    load = load * rng.uniform(3.0, 6.0, n)[None, :]
    clear_kwp, hours = year_clear_sky(days)
    clear = clear_kwp[:, None] * kwp[None, :]
    covered = np.ones(n, dtype=bool)
    saved = cloudiness.PERSIST_H
    if persist_h is not None:
        cloudiness.PERSIST_H = persist_h
    try:
        sky = skill(pv, load, clear, covered, slot_hour=hours)
    finally:
        cloudiness.PERSIST_H = saved
    history = skill(pv, load, None, covered)
    out = {"households": n, "days": days, "resolution": "15 min, day ahead, coop MAE",
           "persist_h": persist_h or saved,
           "pv_history": history["pv"], "pv_clear_sky_cloudiness": sky["pv"],
           "load_history": history["load"]}
    # Clear sky alone (no learning) as a yardstick: what the cloudiness adds.
    bare = skill(pv, load, clear * np.nan, covered)  # NaN sky: history everywhere
    out["pv_sky_beats_history_mae"] = (sky["pv"]["mae_w"] < bare["pv"]["mae_w"])
    out["seconds"] = round(time.perf_counter() - began, 2)
    return out


if __name__ == "__main__":
    import json
    import sys

    hours = [float(h) for h in sys.argv[1:]] or [None]
    print(json.dumps([bench_sky_skill(persist_h=h) for h in hours], indent=1))
