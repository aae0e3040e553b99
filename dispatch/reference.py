"""Plain-Python, one-household-at-a-time reference of the dispatch rules.

Slow on purpose and written independently of the numpy path (water-filling
here redistributes iteratively instead of sorting), so the tests can hold the
vectorized engine against it to 1e-9 on random fleets.
"""

from __future__ import annotations

import math

from dispatch.fleet import CoopLimits, Fleet, FleetState

FIELDS = (
    "own_pv_used", "to_battery", "from_battery", "from_battery_coop", "to_peers", "from_peers",
    "to_coop_battery", "from_coop_battery", "from_coop_battery_coop", "battery_from_coop",
    "battery_to_coop", "grid_to_battery", "to_grid", "from_grid", "curtailed", "shed", "losses",
    "battery_w", "stored_wh", "pool_coop_wh",
)


def _share(total: float, amount: float) -> float:
    return min(amount, total) / total if total > 0.0 and amount > 0.0 else 0.0


def _prorata(amount: float, need: list[float]) -> list[float]:
    total = sum(need)
    f = _share(total, amount)
    return [x * f for x in need]


def _water_fill(amount: float, need: list[float], weight: list[float]) -> list[float]:
    out = [0.0] * len(need)
    total = sum(need)
    if total <= 0.0 or amount <= 0.0:
        return out
    if amount >= total:
        return list(need)
    left = amount
    open_ = [i for i in range(len(need)) if weight[i] > 0 and need[i] > 0]
    while left > 1e-15 * amount and open_:
        w = sum(weight[i] for i in open_)
        level = left / w
        full = [i for i in open_ if need[i] - out[i] <= level * weight[i]]
        if not full:
            for i in open_:
                out[i] += level * weight[i]
            left = 0.0
            break
        for i in full:
            left -= need[i] - out[i]
            out[i] = need[i]
        open_ = [i for i in open_ if i not in full]
    if left > 0.0:  # members with zero weight share what the others could not use
        rest = [need[i] - out[i] if weight[i] == 0 else 0.0 for i in range(len(need))]
        for i, x in enumerate(_prorata(left, rest)):
            out[i] += x
    return out


def _flat(amount: float, need: list[float], policy: str, key: list[float]) -> list[float]:
    if policy in ("prorata", "tiers"):
        return _prorata(amount, need)
    if policy == "equal":
        return _water_fill(amount, need, [1.0] * len(need))
    return _water_fill(amount, need, key)


def _allocate(amount: float, need: list[float], policy: str, key: list[float], tier: list[int],
              tiered: bool) -> list[float]:
    if not (tiered or policy == "tiers"):
        return _flat(amount, need, policy, key)
    out = [0.0] * len(need)
    left = amount
    for level in sorted({t for t, x in zip(tier, need, strict=True) if x > 0}):
        if left <= 0.0:
            break
        part = _flat(left, [x if t == level else 0.0 for x, t in zip(need, tier, strict=True)],
                     policy, key)
        out = [a + b for a, b in zip(out, part, strict=True)]
        left -= sum(part)
    return out


def reference_tick(fleet: Fleet, state: FleetState, pv_w: list[float], load_w: list[float],
                   valid: list[bool], dt_s: float, policy: str = "prorata",
                   limits: CoopLimits | None = None) -> dict[str, list[float]]:
    """The same tick as :func:`dispatch.tick.dispatch_tick`, one household at a time."""
    limits = limits or CoopLimits()
    n, h, island = fleet.size, dt_s / 3600.0, limits.islanded
    tiered = island or policy == "tiers"
    key, tier = [float(k) for k in fleet.key], [int(t) for t in fleet.tier]
    r: dict[str, list[float]] = {f: [0.0] * n for f in FIELDS}
    surplus, deficit = [0.0] * n, [0.0] * n
    room_c, room_d, spare, stored, eta, reserve = [0.0] * n, [0.0] * n, [0.0] * n, [], [], []
    coop_limit: list[tuple[float, float]] = []
    for i in range(n):
        cap = float(fleet.capacity_wh[i])
        e = min(max(float(state.stored_wh[i]), 0.0), cap)
        stored.append(e)
        eta.append(math.sqrt(float(fleet.efficiency[i])))
        reserve.append(max(float(fleet.soc_min_wh[i]), float(fleet.reserve_wh[i])))
        pv = max(float(pv_w[i]), 0.0) * h if valid[i] else 0.0
        load = max(float(load_w[i]), 0.0) * h if valid[i] else 0.0
        if island:
            floor_own = float(fleet.soc_min_wh[i])
        else:
            floor_own = reserve[i] + (float(fleet.hysteresis_wh[i]) if state.held[i] else 0.0)
        floor_coop = max(floor_own, reserve[i])
        p_in = float(fleet.max_charge_w[i]) * h if valid[i] else 0.0
        p_out = float(fleet.max_discharge_w[i]) * h if valid[i] else 0.0
        room_c[i] = min(p_in, max(cap - e, 0.0) / eta[i])
        u = min(pv, load)
        s, d = pv - u, load - u
        c = min(s, room_c[i])
        b = min(d, min(p_out, max(e - floor_own, 0.0) * eta[i]))
        r["own_pv_used"][i], r["to_battery"][i], r["from_battery"][i] = u, c, b
        surplus[i], deficit[i] = s - c, d - b
        coop_limit.append((p_out, (e - floor_coop) * eta[i]))

    total_s, total_d = sum(surplus), sum(deficit)
    f = _share(total_s, total_d)
    r["to_peers"] = [x * f for x in surplus]
    r["from_peers"] = _allocate(min(total_s, total_d), deficit, policy, key, tier, tiered)
    surplus = [a - b for a, b in zip(surplus, r["to_peers"], strict=True)]
    deficit = [a - b for a, b in zip(deficit, r["from_peers"], strict=True)]
    if total_s > total_d:  # exportable surplus stands in for own-battery discharge
        moved = min(sum(surplus), sum(r["from_battery"]))
        if moved > 0.0:
            fs, fb = _share(sum(surplus), moved), _share(sum(r["from_battery"]), moved)
            for i in range(n):
                give, take = surplus[i] * fs, r["from_battery"][i] * fb
                r["to_peers"][i] += give
                surplus[i] -= give
                r["from_peers"][i] += take
                r["from_battery"][i] -= take

    if fleet.any_offered and island:  # an offered battery's own surplus goes to those short
        charging = [r["to_battery"][i] if fleet.offered[i] else 0.0 for i in range(n)]
        moved = min(sum(charging), sum(deficit))
        if moved > 0.0:
            fc = _share(sum(charging), moved)
            take = _allocate(moved, deficit, policy, key, tier, tiered)
            for i in range(n):
                r["to_battery"][i] -= charging[i] * fc
                r["to_peers"][i] += charging[i] * fc
                r["from_peers"][i] += take[i]
                deficit[i] -= take[i]
    if fleet.any_offered:
        for i in range(n):
            if fleet.offered[i]:
                c, b = r["to_battery"][i], r["from_battery"][i]
                room_d[i] = room_c[i] - c if b == 0.0 else 0.0
                p_out, energy_out = coop_limit[i]
                spare[i] = max(min(p_out - b, energy_out - b), 0.0) if c == 0.0 else 0.0
        charged = min(sum(surplus), sum(room_d))
        fs, fr = _share(sum(surplus), charged), _share(sum(room_d), charged)
        r["to_coop_battery"] = [x * fs for x in surplus]
        r["battery_from_coop"] = [x * fr for x in room_d]
        surplus = [a - b for a, b in zip(surplus, r["to_coop_battery"], strict=True)]
        delivered = min(sum(deficit), sum(spare))
        r["from_coop_battery"] = _allocate(delivered, deficit, policy, key, tier, tiered)
        fd = _share(sum(spare), delivered)
        r["battery_to_coop"] = [x * fd for x in spare]
        deficit = [a - b for a, b in zip(deficit, r["from_coop_battery"], strict=True)]

    import_cap = 0.0 if island else limits.import_cap_w * h
    wanted = sum(deficit)
    grid = deficit if wanted <= import_cap else _allocate(import_cap, deficit, policy, key,
                                                          tier, True)
    r["from_grid"] = list(grid)
    r["shed"] = [a - b for a, b in zip(deficit, grid, strict=True)]
    import_left = import_cap - sum(grid)
    if fleet.any_grid_charge and not island and import_left > 0.0:
        want = []
        for i in range(n):
            after = (stored[i] + (r["to_battery"][i] + r["battery_from_coop"][i]) * eta[i]
                     - r["from_battery"][i] / eta[i])
            w = min(max(reserve[i] - after, 0.0) / eta[i],
                    room_c[i] - r["to_battery"][i] - r["battery_from_coop"][i])
            ok = fleet.grid_charge[i] and r["from_battery"][i] == 0 and r["battery_to_coop"][i] == 0
            want.append(max(w, 0.0) if ok else 0.0)
        fg = _share(sum(want), import_left)
        r["grid_to_battery"] = [x * fg for x in want]

    export_cap = 0.0 if island else limits.export_cap_w * h
    fx = _share(sum(surplus), export_cap) if sum(surplus) > export_cap else 1.0
    r["to_grid"] = [x * fx for x in surplus]
    r["curtailed"] = [a - b for a, b in zip(surplus, r["to_grid"], strict=True)]

    delivered_coop = delivered_total = 0.0
    fractions = []
    for i in range(n):
        pool = min(max(float(state.pool_coop_wh[i]), 0.0), stored[i])
        frac = pool / stored[i] if stored[i] > 0 else 0.0
        fractions.append(frac)
        delivered_coop += r["battery_to_coop"][i] * frac
        delivered_total += r["battery_to_coop"][i]
        charged_in = r["to_battery"][i] + r["battery_from_coop"][i] + r["grid_to_battery"][i]
        out = r["from_battery"][i] + r["battery_to_coop"][i]
        drawn = out / eta[i]
        after = stored[i] + charged_in * eta[i] - drawn
        r["losses"][i] = (charged_in - charged_in * eta[i]) + (drawn - out)
        r["battery_w"][i] = (out - charged_in) / h
        r["stored_wh"][i] = after
        pool_after = pool - drawn * frac + (r["to_battery"][i] + r["battery_from_coop"][i]) * eta[i]
        r["pool_coop_wh"][i] = min(max(pool_after, 0.0), after)
        r["from_battery_coop"][i] = r["from_battery"][i] * frac
    fc = _share(delivered_total, delivered_coop)
    r["from_coop_battery_coop"] = [x * fc for x in r["from_coop_battery"]]
    return r


#: What :func:`reference_measured_tick` gives: every field, and battery discharge exported.
MEASURED_FIELDS = (*FIELDS, "battery_to_grid", "battery_to_batteries", "battery_from_batteries")


def reference_measured_tick(fleet: Fleet, state: FleetState, pv_w: list[float],
                            load_w: list[float], battery_w: list[float], valid: list[bool],
                            dt_s: float, policy: str = "prorata",
                            limits: CoopLimits | None = None) -> dict[str, list[float]]:
    """The tick booked from measured battery power (:mod:`dispatch.measured`), one household
    at a time: the battery's measured energy split between own, coop and grid."""
    limits = limits or CoopLimits()
    n, h, island = fleet.size, dt_s / 3600.0, limits.islanded
    tiered = island or policy == "tiers"
    key, tier = [float(k) for k in fleet.key], [int(t) for t in fleet.tier]
    r: dict[str, list[float]] = {f: [0.0] * n for f in MEASURED_FIELDS}
    surplus, deficit, c_left, d_left = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    for i in range(n):
        if not valid[i]:
            continue
        pv, load = max(float(pv_w[i]), 0.0) * h, max(float(load_w[i]), 0.0) * h
        p = float(battery_w[i])
        if not math.isfinite(p) or fleet.capacity_wh[i] <= 0:
            p = 0.0
        charge, discharge = max(-p, 0.0) * h, max(p, 0.0) * h
        u = min(pv, load)
        r["own_pv_used"][i] = u
        r["to_battery"][i] = min(pv - u, charge)
        r["from_battery"][i] = min(load - u, discharge)
        surplus[i] = pv - u - r["to_battery"][i]
        deficit[i] = load - u - r["from_battery"][i]
        c_left[i], d_left[i] = charge - r["to_battery"][i], discharge - r["from_battery"][i]
    shared = min(sum(surplus), sum(deficit))
    fs = _share(sum(surplus), shared)
    r["to_peers"] = [x * fs for x in surplus]
    r["from_peers"] = _allocate(shared, deficit, policy, key, tier, tiered)
    surplus = [a - b for a, b in zip(surplus, r["to_peers"], strict=True)]
    deficit = [a - b for a, b in zip(deficit, r["from_peers"], strict=True)]
    moved = min(sum(surplus), sum(c_left))
    fs, fc = _share(sum(surplus), moved), _share(sum(c_left), moved)
    r["to_coop_battery"] = [x * fs for x in surplus]
    r["battery_from_coop"] = [x * fc for x in c_left]
    r["grid_to_battery"] = [x - x * fc for x in c_left]
    surplus = [a - b for a, b in zip(surplus, r["to_coop_battery"], strict=True)]
    moved = min(sum(deficit), sum(d_left))
    r["from_coop_battery"] = _allocate(moved, deficit, policy, key, tier, tiered)
    fd = _share(sum(d_left), moved)
    r["battery_to_coop"] = [x * fd for x in d_left]
    d_left = [x - x * fd for x in d_left]
    deficit = [a - b for a, b in zip(deficit, r["from_coop_battery"], strict=True)]
    c_left = r["grid_to_battery"]
    moved = min(sum(c_left), sum(d_left))
    fc, fd = _share(sum(c_left), moved), _share(sum(d_left), moved)
    r["battery_from_batteries"] = [x * fc for x in c_left]
    r["grid_to_battery"] = [x - x * fc for x in c_left]
    r["battery_to_batteries"] = [x * fd for x in d_left]
    r["battery_to_grid"] = [x - x * fd for x in d_left]
    # On-grid the meters counted what crossed them, caps or not; islanded nothing can.
    r["from_grid"] = [0.0] * n if island else list(deficit)
    r["shed"] = _allocate(sum(deficit), deficit, policy, key, tier, True) if island else [0.0] * n
    r["to_grid"] = [0.0] * n if island else list(surplus)
    r["curtailed"] = list(surplus) if island else [0.0] * n
    delivered_coop = delivered_total = 0.0
    for i in range(n):
        eta = math.sqrt(float(fleet.efficiency[i]))
        stored = min(max(float(state.stored_wh[i]), 0.0), float(fleet.capacity_wh[i]))
        pool = min(max(float(state.pool_coop_wh[i]), 0.0), stored)
        frac = pool / stored if stored > 0 else 0.0
        delivered_coop += r["battery_to_coop"][i] * frac
        delivered_total += r["battery_to_coop"][i]
        coop_in = r["to_battery"][i] + r["battery_from_coop"][i]
        charged_in = coop_in + r["grid_to_battery"][i] + r["battery_from_batteries"][i]
        out = (r["from_battery"][i] + r["battery_to_coop"][i] + r["battery_to_grid"][i]
               + r["battery_to_batteries"][i])
        drawn = out / eta
        r["losses"][i] = (charged_in - charged_in * eta) + (drawn - out)
        r["battery_w"][i] = (out - charged_in) / h
        r["stored_wh"][i] = stored + charged_in * eta - drawn
        r["pool_coop_wh"][i] = min(max(pool - drawn * frac + coop_in * eta, 0.0),
                                   max(r["stored_wh"][i], 0.0))
        r["from_battery_coop"][i] = r["from_battery"][i] * frac
    fc = _share(delivered_total, delivered_coop)
    r["from_coop_battery_coop"] = [x * fc for x in r["from_coop_battery"]]
    return r
