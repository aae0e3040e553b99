"""Rules that split an amount of energy among members who need it.

Every rule returns an allocation ``a`` with ``0 <= a <= need`` and
``sum(a) == min(amount, sum(need))``:

* ``prorata``: in proportion to need (the French collective self-consumption
  default key);
* ``equal``: the same amount each, capped at need, with what a member cannot
  use passed on to the others (water-filling);
* ``static``: in proportion to fixed keys, capped at need, the rest passed on
  (weighted water-filling);
* ``tiers``: tier 0 (critical) is served in full first, then tier 1, and so
  on; pro-rata within a tier.

When the coop is islanded any rule is applied tier by tier, so critical loads
are served first and flexible loads are shed first.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def capped_fraction(total: float, amount: float) -> float:
    """``min(amount, total) / total``: the part of ``total`` that ``amount`` takes; 0 if none."""
    return min(amount, total) / total if total > 0.0 and amount > 0.0 else 0.0


def prorata(amount: float, need: FloatArray) -> FloatArray:
    """In proportion to need."""
    total = float(need.sum())
    if total <= 0.0 or amount <= 0.0:
        return np.zeros_like(need)
    return need * (min(amount, total) / total)


def water_fill(amount: float, need: FloatArray, weight: FloatArray) -> FloatArray:
    """Weighted water-filling: ``min(need, level * weight)`` with the level that uses ``amount``.

    Members with zero weight receive nothing unless every member with weight
    is satisfied, in which case the rest is shared pro-rata among them.
    """
    total = float(need.sum())
    if total <= 0.0 or amount <= 0.0:
        return np.zeros_like(need)
    if amount >= total:
        return need.copy()
    weighted = weight > 0
    capacity = float(need[weighted].sum())
    if amount >= capacity:
        out = np.where(weighted, need, 0.0)
        return out + prorata(amount - capacity, np.where(weighted, 0.0, need))
    w = weight[weighted]
    ratio = need[weighted] / w
    order = np.argsort(ratio, kind="stable")
    r_sorted, n_sorted, w_sorted = ratio[order], need[weighted][order], w[order]
    filled_before = np.concatenate(([0.0], np.cumsum(n_sorted)[:-1]))
    weight_after = w_sorted[::-1].cumsum()[::-1]  # weight of members not yet full
    used_at_break = filled_before + r_sorted * weight_after
    j = int(np.searchsorted(used_at_break, amount, side="left"))
    level = (amount - filled_before[j]) / weight_after[j]
    out = np.zeros_like(need)
    out[weighted] = np.minimum(need[weighted], level * w)
    return out


def allocate(
    amount: float,
    need: FloatArray,
    policy: str,
    key: FloatArray,
    tier: IntArray,
    tiered: bool,
) -> FloatArray:
    """Split ``amount`` among ``need`` by ``policy``, tier by tier when ``tiered``."""
    if tiered or policy == "tiers":
        return _by_tier(amount, need, policy, key, tier)
    return _flat(amount, need, policy, key)


def _flat(amount: float, need: FloatArray, policy: str, key: FloatArray) -> FloatArray:
    if policy in ("prorata", "tiers"):
        return prorata(amount, need)
    if policy == "equal":
        return water_fill(amount, need, np.ones_like(need))
    if policy == "static":
        return water_fill(amount, need, key)
    raise ValueError(f"policy {policy!r}: expected one of prorata, equal, static, tiers")


def _by_tier(amount: float, need: FloatArray, policy: str, key: FloatArray,
             tier: IntArray) -> FloatArray:
    out = np.zeros_like(need)
    left = amount
    for level in np.unique(tier[need > 0]):
        if left <= 0.0:
            break
        members = tier == level
        part = _flat(left, np.where(members, need, 0.0), policy, key)
        out += part
        left -= float(part.sum())
    return out


def drop_by_tier(load: FloatArray, amount_w: float, rank: IntArray) -> FloatArray:
    """Load dropped to shed ``amount_w``: the highest ``rank`` (least critical) first,
    pro rata to load within a rank, never more than a household draws."""
    dropped = np.zeros_like(load)
    left = amount_w
    for level in sorted(set(rank.tolist()), reverse=True):
        if left <= 0:
            break
        mine = np.where(rank == level, load, 0.0)
        total = float(mine.sum())
        if total <= 0:
            continue
        take = min(left, total)
        dropped += mine * (take / total)
        left -= take
    return dropped
