"""The plan's money: the tariff's time-of-use prices per plan step and the batteries'
wear prices, as the storage LP's keywords (:func:`dispatch.plan_lp.plan_storage`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from controller.config_tariff import TariffConfig, wear_prices

FloatArray = NDArray[np.float64]
#: money(now, steps, step_s) -> the solver's keywords (import_price, export_price,
#: wear_price, each per Wh), or {} without a tariff or wear prices.
MoneyFn = Callable[[float, int, float], "dict[str, FloatArray]"]


def plan_money(tariff: TariffConfig | None, wear_per_kwh: FloatArray | None
               ) -> MoneyFn | None:
    """The plan's money keywords each re-plan: the tariff's prices at the middle of each
    plan step and each member's wear price, per Wh; None when there is neither."""
    wear = None
    if wear_per_kwh is not None and np.nansum(wear_per_kwh) > 0:
        wear = np.nan_to_num(np.asarray(wear_per_kwh, dtype=float)) / 1000.0
    if tariff is None and wear is None:
        return None

    def money(now: float, steps: int, step_s: float) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {} if wear is None else {"wear_price": wear}
        if tariff is not None:
            imp, exp = tariff.prices_at(now + (np.arange(steps) + 0.5) * step_s)
            out |= {"import_price": imp / 1000.0, "export_price": exp / 1000.0}
        return out

    return money


def member_wear(members: Sequence) -> FloatArray:
    """Each member's wear price per kWh out of its battery, in config order (NaN: none)."""
    prices = wear_prices(list(members))
    return np.array([prices.get(m.id, np.nan) for m in members], dtype=float)
