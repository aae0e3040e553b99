"""An optional fused kernel for the common tick, compiled with numba when it is installed.

It runs the same element-wise operations in the same order as the numpy
stages of :class:`~dispatch.tick.DispatchEngine` (own PV and battery; then
peers, the spare-battery rule and the battery state), but in two loops that
touch each array once, so it runs near the memory-bandwidth limit. The
coop-wide sums are still taken by numpy, block by block, exactly as on the
numpy path, so both paths give bit-identical results; the tests check that.
Without numba, :data:`AVAILABLE` is false and the numpy path runs.
"""

from __future__ import annotations

from typing import Any

try:
    from numba import njit
except ImportError:  # numba is optional
    AVAILABLE = False
    own_pass: Any = None
    peer_state_pass: Any = None
else:
    AVAILABLE = True

    @njit(cache=True, fastmath=False)
    def own_pass(pv_w, load_w, stored_in, cap, eta, inv_eta, charge_power,  # noqa: ANN001, ANN201
                 discharge_power, floor, h, keep_inputs, pv, load, own, surplus, deficit,
                 to_battery, from_battery):
        """Own PV, then own battery, for every household (in place)."""
        for i in range(pv_w.shape[0]):
            p = max(pv_w[i], 0.0) * h
            q = max(load_w[i], 0.0) * h
            s = min(max(stored_in[i], 0.0), cap[i])
            o = min(p, q)
            su = p - o
            de = q - o
            room_in = min((cap[i] - s) * inv_eta[i], charge_power[i])
            tb = min(su, room_in)
            room_out = min(max(s - floor[i], 0.0) * eta[i], discharge_power[i])
            fb = min(de, room_out)
            if keep_inputs:
                pv[i] = p
                load[i] = q
            own[i] = o
            surplus[i] = su - tb
            deficit[i] = de - fb
            to_battery[i] = tb
            from_battery[i] = fb

    @njit(cache=True, fastmath=False)
    def peer_state_pass(give, take, give_spare, take_spare, stored_in, cap, pool_in, eta,  # noqa: ANN001, ANN201
                        inv_eta, tiny, surplus, deficit, to_battery, from_battery, to_peers,
                        from_peers, from_battery_coop, stored_after, pool_after):
        """Peers pro rata, the spare-battery rule, then battery content and origin pools."""
        for i in range(surplus.shape[0]):
            tp = surplus[i] * give
            su = surplus[i] - tp
            fp = deficit[i] * take
            de = deficit[i] - fp
            fb = from_battery[i]
            if give_spare > 0.0:
                extra = su * give_spare
                tp = tp + extra
                su = su - extra
                extra = fb * take_spare
                fp = fp + extra
                fb = fb - extra
            surplus[i] = su
            deficit[i] = de
            to_peers[i] = tp
            from_peers[i] = fp
            from_battery[i] = fb
            s = min(max(stored_in[i], 0.0), cap[i])
            charged = to_battery[i] * eta[i]
            drawn = fb * inv_eta[i]
            stored_after[i] = (s + charged) - drawn
            pool = max(min(pool_in[i], s), 0.0)
            fraction = pool / max(s, tiny)
            from_battery_coop[i] = fb * fraction
            pool_after[i] = (pool - drawn * fraction) + charged
