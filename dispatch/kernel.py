"""An optional fused kernel for the common tick, compiled with numba when it is installed.

It runs the same element-wise operations in the same order as the numpy
stages of :class:`~dispatch.tick.DispatchEngine`, so both paths give
bit-identical results (the tests check that), but it touches memory less:

* :func:`own_block` runs own PV and own battery for one cache-sized block and
  leaves only what the coop-wide sums need in block-sized scratch, which numpy
  then sums exactly as on the numpy path;
* :func:`tick_pass` recomputes that stage from the inputs (cheaper than
  writing and re-reading it) and goes on through peers, the spare-battery rule
  and the battery state, writing each output once;
* :func:`series_pass` does the same but adds the flows to running totals,
  for batched runs that need totals rather than every tick's flows.

The stage arithmetic lives once, in the inlined helpers below.
Without numba, :data:`AVAILABLE` is false and the numpy path runs.
"""

from __future__ import annotations

from typing import Any

try:
    from numba import njit
except ImportError:  # numba is optional
    AVAILABLE = False
    own_block: Any = None
    tick_pass: Any = None
    series_pass: Any = None
else:
    import llvmlite.binding as llvm

    AVAILABLE = True
    # A loop over a dozen arrays needs more runtime alias checks than LLVM's default
    # limit allows before it vectorizes; without vectorizing, the tick is compute-bound.
    llvm.set_option("", "-vectorize-memory-check-threshold=1024")
    llvm.set_option("", "-runtime-memory-check-threshold=1024")
    _jit = njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
    _inline = njit(inline="always", fastmath=False, error_model="numpy")

    @_inline
    def _own(pv_w, load_w, stored_in, cap, eta, charge_power, discharge_power, floor, h):  # noqa: ANN001, ANN202
        """Own PV, then own battery, for one household: the numpy path's order of operations."""
        p = max(pv_w, 0.0) * h
        q = max(load_w, 0.0) * h
        s = min(max(stored_in, 0.0), cap)
        o = min(p, q)
        su = p - o
        de = q - o
        room_in = min((cap - s) * (1.0 / eta), charge_power)
        tb = min(su, room_in)
        room_out = min(max(s - floor, 0.0) * eta, discharge_power)
        fb = min(de, room_out)
        return p, q, s, o, su - tb, de - fb, tb, fb

    @_inline
    def _peers_and_state(su, de, tb, fb, s, pool_in, eta, give, take, give_spare, take_spare,  # noqa: ANN001, ANN202
                         tiny):
        """Peers pro rata, the spare-battery rule, battery content and the coop-origin pool."""
        tp = su * give
        su = su - tp
        fp = de * take
        de = de - fp
        # Unconditional, so the loop vectorizes: with no spare both shares are 0.0 and
        # these change nothing (flows are >= 0, and x + 0.0 == x).
        extra = su * give_spare
        tp = tp + extra
        su = su - extra
        extra = fb * take_spare
        fp = fp + extra
        fb = fb - extra
        charged = tb * eta
        drawn = fb * (1.0 / eta)
        stored_after = (s + charged) - drawn
        pool = max(min(pool_in, s), 0.0)
        fraction = pool / max(s, tiny)
        return su, de, tp, fp, fb, fb * fraction, stored_after, (pool - drawn * fraction) + charged

    @_jit
    def own_block(pv_w, load_w, stored_in, cap, eta, charge_power, discharge_power, floor, h,  # noqa: ANN001, ANN201
                  surplus, deficit, from_battery):
        """Surplus, deficit and own-battery discharge after own use, into block scratch."""
        for i in range(pv_w.shape[0]):
            _, _, _, _, su, de, _, fb = _own(pv_w[i], load_w[i], stored_in[i], cap[i], eta[i],
                                             charge_power[i], discharge_power[i], floor[i], h)
            surplus[i] = su
            deficit[i] = de
            from_battery[i] = fb

    @_jit
    def tick_pass(pv_w, load_w, stored_in, pool_in, cap, eta, charge_power, discharge_power,  # noqa: ANN001, ANN201
                  floor, h, shares, tiny, own, to_battery, from_battery,
                  to_peers, from_peers, surplus, deficit, from_battery_coop, stored_after,
                  pool_after):
        """The whole common tick; ``shares`` = (give, take, give_spare, take_spare)."""
        give, take, give_spare, take_spare = shares[0], shares[1], shares[2], shares[3]
        for i in range(pv_w.shape[0]):
            _, _, s, o, su, de, tb, fb = _own(pv_w[i], load_w[i], stored_in[i], cap[i], eta[i],
                                              charge_power[i], discharge_power[i], floor[i], h)
            su, de, tp, fp, fb, fbc, sa, pa = _peers_and_state(su, de, tb, fb, s, pool_in[i],
                                                               eta[i], give, take, give_spare,
                                                               take_spare, tiny)
            own[i] = o
            to_battery[i] = tb
            from_battery[i] = fb
            to_peers[i] = tp
            from_peers[i] = fp
            surplus[i] = su
            deficit[i] = de
            from_battery_coop[i] = fbc
            stored_after[i] = sa
            pool_after[i] = pa

    @_jit
    def series_pass(pv_w, load_w, stored_in, pool_in, cap, eta, charge_power,  # noqa: ANN001, ANN201
                    discharge_power, floor, h, shares, tiny, totals, stored_after, pool_after):
        """:func:`tick_pass`, adding each flow to ``totals`` (rows as in ``SERIES_ROWS``)."""
        give, take, give_spare, take_spare = shares[0], shares[1], shares[2], shares[3]
        for i in range(pv_w.shape[0]):
            p, q, s, o, su, de, tb, fb = _own(pv_w[i], load_w[i], stored_in[i], cap[i], eta[i],
                                              charge_power[i], discharge_power[i], floor[i], h)
            su, de, tp, fp, fb, fbc, sa, pa = _peers_and_state(su, de, tb, fb, s, pool_in[i],
                                                               eta[i], give, take, give_spare,
                                                               take_spare, tiny)
            totals[0, i] += o
            totals[1, i] += tb
            totals[2, i] += fb
            totals[3, i] += fbc
            totals[4, i] += tp
            totals[5, i] += fp
            totals[6, i] += p
            totals[7, i] += q
            stored_after[i] = sa
            pool_after[i] = pa

#: The rows of :func:`series_pass`'s ``totals``, by the name of the flow they sum.
SERIES_ROWS = ("own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers",
               "from_peers", "pv", "load")
