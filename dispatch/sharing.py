"""Rules that split the coop's surplus among members in deficit.

Each rule takes the surplus and deficit left after every household has used
its own PV and its own battery, and returns ``(to_peers, from_peers)``. Every
rule shares ``min(sum(surplus), sum(deficit))`` in total, so
``sum(to_peers) == sum(from_peers)`` up to float rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def share_prorata(surplus: FloatArray, deficit: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Pro-rata to need: each member in deficit gets surplus in proportion to its deficit.

    Givers give in proportion to their surplus. This is the default dynamic key
    of French collective self-consumption.
    """
    total_surplus = float(surplus.sum())
    total_deficit = float(deficit.sum())
    shared = min(total_surplus, total_deficit)
    give = shared / total_surplus if total_surplus > 0 else 0.0
    take = shared / total_deficit if total_deficit > 0 else 0.0
    return surplus * give, deficit * take
