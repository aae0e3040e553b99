"""Yardsticks for the dispatch tick: what this machine can do at best, measured, not assumed.

* :func:`numpy_floor_s`: the fewest numpy ufunc passes a tick needs (own use,
  own battery, coop sums, pro-rata peers, battery content and origin pool),
  in cache-sized blocks with preallocated buffers, and nothing else: no input
  clipping, no spare-battery rule, no bookkeeping. No numpy tick can beat it.
* :func:`stream_floor_s`: one compiled loop that only reads the tick's 9
  input arrays and writes its 10 output arrays. It shows what a single pass
  over those arrays costs with ordinary stores, which fetch each line before
  writing it, unlike the streaming stores of the copy that measures bandwidth.

* :func:`loop_copy_gbs`: the bandwidth measurement itself, done by a compiled
  loop instead of numpy's copy, to show what ordinary stores cost here.

None computes a dispatch; the engine never calls them.
"""

from __future__ import annotations

import numpy as np

from bench.timing import median_s

_INPUTS = ("pv_w", "load_w", "stored", "pool", "cap", "eta", "charge", "discharge", "floor")
_OUTPUTS = ("own", "to_battery", "from_battery", "to_peers", "from_peers", "to_grid",
            "from_grid", "coop_part", "stored_after", "pool_after")


def _arrays(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {name: rng.random(n) for name in (*_INPUTS, *_OUTPUTS)}
    arrays["inv_eta"] = 1.0 / (arrays["eta"] + 0.5)
    return arrays


def numpy_floor_s(n: int, block: int, repeats: int) -> float:
    """Median seconds of the minimal blocked ufunc sequence of one tick over ``n`` households."""
    a = _arrays(n)
    scratch = {name: np.zeros(min(n, block)) for name in
               ("pv", "load", "room_in", "room_out", "charged", "drawn", "fraction", "tmp")}
    blocks = [slice(i, min(i + block, n)) for i in range(0, n, block)]
    h = 1 / 60

    def tick() -> None:
        sums = np.zeros(3)
        for sl in blocks:
            s = {k: v[: sl.stop - sl.start] for k, v in scratch.items()}
            own, surplus, deficit = a["own"][sl], a["to_grid"][sl], a["from_grid"][sl]
            to_battery, from_battery, stored = a["to_battery"][sl], a["from_battery"][sl], a[
                "stored"][sl]
            np.maximum(a["pv_w"][sl], 0.0, out=s["pv"])
            s["pv"] *= h
            np.maximum(a["load_w"][sl], 0.0, out=s["load"])
            s["load"] *= h
            np.minimum(s["pv"], s["load"], out=own)
            np.subtract(s["pv"], own, out=surplus)
            np.subtract(s["load"], own, out=deficit)
            np.subtract(a["cap"][sl], stored, out=s["room_in"])
            s["room_in"] *= a["inv_eta"][sl]
            np.minimum(s["room_in"], a["charge"][sl], out=s["room_in"])
            np.minimum(surplus, s["room_in"], out=to_battery)
            surplus -= to_battery
            np.subtract(stored, a["floor"][sl], out=s["room_out"])
            np.maximum(s["room_out"], 0.0, out=s["room_out"])
            s["room_out"] *= a["eta"][sl]
            np.minimum(s["room_out"], a["discharge"][sl], out=s["room_out"])
            np.minimum(deficit, s["room_out"], out=from_battery)
            deficit -= from_battery
            sums += (surplus.sum(), deficit.sum(), from_battery.sum())
        for sl in blocks:
            s = {k: v[: sl.stop - sl.start] for k, v in scratch.items()}
            surplus, deficit, stored, pool = (a["to_grid"][sl], a["from_grid"][sl],
                                              a["stored"][sl], a["pool"][sl])
            np.multiply(surplus, 0.3, out=a["to_peers"][sl])
            surplus -= a["to_peers"][sl]
            np.multiply(deficit, 0.4, out=a["from_peers"][sl])
            deficit -= a["from_peers"][sl]
            np.multiply(a["to_battery"][sl], a["eta"][sl], out=s["charged"])
            np.multiply(a["from_battery"][sl], a["inv_eta"][sl], out=s["drawn"])
            np.add(stored, s["charged"], out=a["stored_after"][sl])
            a["stored_after"][sl] -= s["drawn"]
            np.maximum(stored, 1e-300, out=s["tmp"])
            np.divide(pool, s["tmp"], out=s["fraction"])
            np.multiply(a["from_battery"][sl], s["fraction"], out=a["coop_part"][sl])
            np.multiply(s["drawn"], s["fraction"], out=s["tmp"])
            np.subtract(pool, s["tmp"], out=a["pool_after"][sl])
            a["pool_after"][sl] += s["charged"]

    return median_s(tick, repeats, 2)


def stream_floor_s(n: int, repeats: int) -> float | None:
    """Median seconds of one compiled pass reading 9 arrays and writing 10 (None without numba)."""
    try:
        from numba import njit
    except ImportError:
        return None
    import dispatch.kernel  # noqa: F401 - compile under the kernel's LLVM vectorizer settings

    @njit(cache=False, error_model="numpy")
    def one_pass(i0, i1, i2, i3, i4, i5, i6, i7, i8,  # noqa: ANN001, ANN202
                 o0, o1, o2, o3, o4, o5, o6, o7, o8, o9):
        for i in range(i0.shape[0]):
            x = i0[i] + i1[i] + i2[i] + i3[i] + i4[i] + i5[i] + i6[i] + i7[i] + i8[i]
            o0[i] = x
            o1[i] = x
            o2[i] = x
            o3[i] = x
            o4[i] = x
            o5[i] = x
            o6[i] = x
            o7[i] = x
            o8[i] = x
            o9[i] = x

    a = _arrays(n)
    args = [a[name] for name in (*_INPUTS, *_OUTPUTS)]
    return median_s(lambda: one_pass(*args), repeats, 2)


def loop_copy_gbs(repeats: int = 3) -> float | None:
    """Bytes moved per second by a compiled loop copying 10^8 float64 (None without numba).

    Set beside numpy's copy (``memory_bandwidth_gbs``): the gap is what writing
    with ordinary stores costs on this machine, which no compiled kernel escapes.
    """
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(cache=False)
    def copy(src, dst):  # noqa: ANN001, ANN202
        for i in range(src.shape[0]):
            dst[i] = src[i]

    src = np.ones(100_000_000)
    dst = np.empty_like(src)
    copy(src[:8], dst[:8])
    return 2 * src.nbytes / median_s(lambda: copy(src, dst), repeats) / 1e9
