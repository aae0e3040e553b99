"""Load an overloaded grid-former drops, as the books see it (pure).

Islanded, a grid-forming inverter at its limit cannot hold the island's
frequency; load is dropped (by the households' under-frequency relays, by
tier: flexible first, critical last), and the grid-former says so (SunSpec 701
``Alrm`` UNDER_FREQUENCY). The meters only see what was served. What was
dropped is estimated from the demand measured just before the overload: the
coop's total is what the members' demand fell by, and it is attributed by tier
as the island drops it (least critical first, pro rata to demand within a
tier, never more than a member's demand). It is booked as unserved, never as
served, so an estimate errs only between members' shed and never creates energy.

An overload can last hours (batteries empty at night), while the demand it
cuts follows the evening. Where the island plan's forecast is at hand
(:func:`demand_before_w`), the demand "before" follows the forecast's profile,
anchored to each member's measured demand in the last cycle before the overload.

All of it is the *connected* demand, what the meters can see (:func:`connected_w`): a load
Commonwatt holds off is not on the island to be dropped (it is booked as held off, below).
Counted in, a 2 kW plug held off all evening read as 2 kW of demand that did not fall, and
the coop's drop came out 2 kW short in a blackout: the critical house, dropped last, was
booked 0.23 of what it lost (docs/island_truth.md).

Load Commonwatt holds off (a smart plug, a household contactor) is unserved too,
and no meter sees it either. Booked at the power it drew when switched off, a
2 kW appliance cut at 19:00 and held until midnight would be booked 10 kWh while
it would have finished at 21:00. :func:`held_demand_w` books what it would have
drawn instead, from the forecast demand the island plan follows: a held contactor
the member's whole forecast demand, held plugs their tiers' forecast demand,
never more than the plugs drew when switched off (several plugs may share a tier).
Without a forecast, the power drawn when switched off stands.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dispatch.sharing import drop_by_tier

FloatArray = NDArray[np.float64]


def dropped_load_w(before_w: FloatArray, demand_w: FloatArray, valid: NDArray[np.bool_],
                   tier: NDArray[np.int64]) -> FloatArray:
    """Per member, the load dropped now, W (``tier``: 0 critical, 1 essential, 2 flexible).

    Args:
        before_w: each member's demand just before the overload.
        demand_w: what the meters see now.
        valid: members whose readings are fresh (others are booked as gaps).
        tier: each member's load tier.
    """
    before = np.where(valid, before_w, 0.0)
    total = float(np.maximum(before - np.where(valid, demand_w, 0.0), 0.0).sum())
    return drop_by_tier(before, total, tier)


#: A member's measured/forecast demand ratio is kept within this range.
ANCHOR_RANGE = (0.2, 5.0)
#: The anchor ratio is a moving average over about this long (s): one reading catches
#: appliances mid-cycle, an hour says how this house compares with its forecast.
ANCHOR_TAU_S = 3600.0
#: Forecast demand below this (W) is too small to anchor a ratio to.
MIN_FORECAST_W = 10.0


def anchor(demand_w: FloatArray, forecast_w: FloatArray | None) -> FloatArray:
    """Per member, measured demand over forecast demand (NaN where it cannot be said)."""
    if forecast_w is None:
        return np.full_like(demand_w, np.nan)
    ok = np.isfinite(forecast_w) & (forecast_w >= MIN_FORECAST_W)
    ratio = np.divide(demand_w, forecast_w, out=np.full_like(demand_w, np.nan),
                      where=ok)
    return np.where(ok, np.clip(ratio, *ANCHOR_RANGE), np.nan)


def demand_before_w(measured_before_w: FloatArray, ratio: FloatArray,
                    forecast_w: FloatArray | None) -> FloatArray:
    """The demand an overload cuts into: the forecast now times each member's anchor
    ratio where both are known, else the demand measured before the overload."""
    if forecast_w is None:
        return measured_before_w
    follow = np.isfinite(ratio) & np.isfinite(forecast_w)
    return np.where(follow, np.nan_to_num(forecast_w) * np.nan_to_num(ratio),
                    measured_before_w)


def smooth_anchor(previous: FloatArray, ratio: FloatArray, valid: NDArray[np.bool_],
                  dt_s: float) -> FloatArray:
    """The moving average of :func:`anchor` over :data:`ANCHOR_TAU_S` (the first value
    where there was none; unchanged where the member or the ratio is unknown)."""
    alpha = min(dt_s / ANCHOR_TAU_S, 1.0)
    known = valid & np.isfinite(ratio)
    blended = np.where(np.isfinite(previous), previous + alpha * (ratio - previous), ratio)
    return np.where(known, blended, previous)


def connected_w(demand_w: FloatArray, held_w: FloatArray, forecast_w: FloatArray | None,
                held_forecast_w: FloatArray) -> tuple[FloatArray, FloatArray | None]:
    """Per member, the demand still on the island: measured and forecast, W.

    Args:
        demand_w: measured load plus what held loads drew when switched off.
        held_w: what held loads drew when switched off (0 where nothing is held).
        forecast_w: the forecast demand of the whole house (NaN: unknown), or None.
        held_forecast_w: what the held loads would draw now (:func:`held_demand_w`).

    Returns:
        The measured connected demand (``demand_w - held_w``, never below 0) and the
        forecast less what is held off (never below 0; None without a forecast).
    """
    measured = np.maximum(demand_w - held_w, 0.0)
    if forecast_w is None:
        return measured, None
    return measured, np.maximum(forecast_w - np.where(held_w > 0, held_forecast_w, 0.0), 0.0)


def held_demand_w(plugs_w: FloatArray, plug_tiers: NDArray[np.bool_],
                  contactor: NDArray[np.bool_], freed_w: FloatArray,
                  tier_forecast_w: FloatArray | None) -> FloatArray:
    """Per member, the demand Commonwatt holds off now, W (see the module docstring).

    Args:
        plugs_w: what each member's held plugs drew when switched off.
        plug_tiers: per tier (critical, essential, flexible) and member, whether a plug of
            that tier is held.
        contactor: whether each member's household contactor is held off.
        freed_w: all a member's held loads drew when switched off (plugs and contactor).
        tier_forecast_w: the forecast demand per tier and member now (NaN: unknown), None
            without a forecast.
    """
    if tier_forecast_w is None:
        return freed_w.copy()
    tiers = np.asarray(tier_forecast_w, dtype=np.float64)
    house = tiers.sum(axis=0)
    plugged = np.where(plug_tiers, tiers, 0.0).sum(axis=0)
    known_plugs = np.isfinite(np.where(plug_tiers, tiers, 0.0)).all(axis=0)
    plugs = np.where(known_plugs, np.minimum(np.maximum(plugged, 0.0), plugs_w), plugs_w)
    whole = np.where(np.isfinite(house), np.maximum(house, 0.0), freed_w)
    return np.where(contactor, whole, np.where(plugs_w > 0, plugs, freed_w))
