"""Survival odds of an island day: per tier, how likely it is to be fully served.

The plan (:mod:`.plan`) answers for one forecast with every battery up. A coop
staking its name on a public island day asks how likely the critical loads
are to stay on, given the weather and given that a battery may fail. Here:

* **Weather.** ``W`` days of PV, each a clear-sky index per step applied to
  the coop's PV profile (:class:`Weather`; :mod:`.weather` builds them from
  the season's days, or takes a provider's P10/P50/P90). Each day is equally
  likely.
* **Components.** Each battery (with its inverter) is up with probability
  ``battery_availability`` (0.97 by default, REopt's), each member's PV with
  ``pv_availability`` (0.98), independently. Every state with at most one
  component down is enumerated exactly: all up, and the loss of each single
  battery (a grid-former among them) and of each member's PV. The rest of the
  probability (two or more down) is sampled: batches of :data:`MULTI_DRAWS`
  independent draws of every component (at most :data:`MULTI_BATCHES`), of
  which the first :data:`MULTI_KEEP` with two or more down share that mass
  equally (sampling noise: at most mass / (2 √kept)). If no draw had two
  down, the mass is counted as *not* served (never optimistic; it is then
  below 1/10⁵ or so).
* **Dispatch.** Each state × day is played out by :mod:`.survival_sim` in one
  numpy batch (the LP is kept for the plan itself). States that merge to the
  same batteries and the same lost PV are solved once.

``P(tier held)`` is the probability-weighted share of scenarios in which the
tier is never shed. A day is **robust** only when ``P(critical held)`` ≥
:data:`ROBUST_P` and, with every component up, the critical tier holds on the
P10 PV day. The plan names the single losses that cost the critical tier the
most (:attr:`Odds.weak_points`).

**Curves.** As REopt reports them: for an island starting at each hour of the
day (0-23, the site's clock) with the plan's starting energy, the probability
that the critical tier lasts at least ``D`` hours (1-48), weighted the same way.
As in REopt's outage simulator, only the critical load is served in them (the
day's odds above serve every tier the reserve for the tiers above allows).
Load and the weather days are taken as repeating by the hour of day (a 48 h
island on day ``w`` continues on day ``w + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from controller.island.plan import TIERS, Problem
from controller.island_day.survival_sim import Storage, merge, simulate

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

ROBUST_P = 0.99
BATTERY_AVAILABILITY = 0.97
PV_AVAILABILITY = 0.98
MULTI_DRAWS = 4000
MULTI_KEEP = 200
MULTI_BATCHES = 25
CURVE_HOURS = 48


@dataclass(frozen=True, slots=True)
class Weather:
    """PV weather days: a clear-sky index per day and step over the plan's PV (W × T).

    Attributes:
        index: W × T factor applied to the plan's PV profile (``Problem.pv_w``
            must then be the clear-sky PV, or the profile the factors refer to).
        source: how the days were made, for the report.
        quantiles: ``p10``/``p50``/``p90`` index rows (T,); by default the days
            ranking there by daily energy.
    """

    index: FloatArray
    source: str
    quantiles: dict[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index = np.asarray(self.index, dtype=float)
        if index.ndim != 2 or index.shape[0] < 1:
            raise ValueError(f"Weather.index: expected days × steps, got shape {index.shape}")
        if not np.isfinite(index).all() or (index < 0).any():
            raise ValueError("Weather.index: expected finite factors ≥ 0")
        object.__setattr__(self, "index", index)
        if not self.quantiles:
            energy = index.sum(axis=1)
            order = np.argsort(energy, kind="stable")
            ranks = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
            object.__setattr__(self, "quantiles", {
                k: index[order[min(int(q * len(order)), len(order) - 1)]]
                for k, q in ranks.items()})


@dataclass(frozen=True, slots=True)
class Components:
    """Which batteries form the grid, and how available each component is."""

    grid_forming: BoolArray
    battery_availability: float = BATTERY_AVAILABILITY
    pv_availability: float = PV_AVAILABILITY


@dataclass(slots=True)
class Odds:
    """What :func:`survival_odds` found.

    Attributes:
        p_held: per tier, the probability that it is fully served.
        held_on: per quantile (``p10``…), per tier, whether it holds with
            every component up.
        robust: ``P(critical)`` ≥ :data:`ROBUST_P` and critical holds on P10.
        weak_points: single losses that cost the critical tier, worst first:
            component, kind, probability, share of days it fails, what it costs.
        multi_mass: probability of two or more components down; ``multi_sampled``
            draws stood for it (0: counted as not served).
        by_start_hour: 24 × 48: P(critical lasts ≥ D h) for an island from hour h.
        scenarios: distinct state × day scenarios solved (after merging).
    """

    p_held: dict[str, float]
    held_on: dict[str, dict[str, bool]]
    robust: bool
    weak_points: list[dict]
    multi_mass: float
    multi_sampled: int
    weather_days: int
    weather_source: str
    by_start_hour: FloatArray
    scenarios: int
    solve_s: float = 0.0

    @property
    def by_duration(self) -> FloatArray:
        """P(critical lasts ≥ D h), D = 1…48, averaged over the start hours."""
        return self.by_start_hour.mean(axis=0)

    @property
    def medical_warning(self) -> str | None:
        """A warning when medical loads are less likely than :data:`ROBUST_P` to be held."""
        p = self.p_held.get("medical")
        if p is None or p >= ROBUST_P:
            return None
        return (f"WARNING: medical loads held with P = {p:.3f} < {ROBUST_P}: tell the members "
                "concerned before the day")

    def reasons(self) -> list[str]:
        """Why the day is not robust (empty when it is)."""
        out = []
        if self.p_held["critical"] < ROBUST_P:
            out.append(f"P(critical held) = {self.p_held['critical']:.3f} < {ROBUST_P}")
        if not self.held_on.get("p10", {}).get("critical", True):
            out.append("the critical tier does not hold on the P10 PV day")
        return out


def _states(problem: Problem, comp: Components, rng: np.random.Generator,
            ) -> tuple[BoolArray, BoolArray, FloatArray, list[tuple[str, str]], float, int]:
    """Component states: batteries up (C × B), members' PV lost (C × N), probability,
    the name of each single loss (C-1 of them, after the all-up row), the multi mass."""
    b = problem.fleet.size
    has_pv = problem.pv_w.sum(axis=0) > 0
    n = has_pv.size
    ab = np.full(b, comp.battery_availability)
    ap = np.where(has_pv, comp.pv_availability, 1.0)
    p0 = float(np.exp(np.log(ab).sum() + np.log(ap).sum())) if (ab > 0).all() and (
        ap > 0).all() else 0.0
    ups, lost, prob, names = [np.ones(b, bool)], [np.zeros(n, bool)], [p0], []
    ids = problem.member_ids or [f"m{i}" for i in range(n)]
    for j in range(b):
        if ab[j] < 1:
            up = np.ones(b, bool)
            up[j] = False
            ups.append(up)
            lost.append(np.zeros(n, bool))
            prob.append(p0 * (1 - ab[j]) / ab[j] if ab[j] > 0 else 0.0)
            kind = "grid-former" if comp.grid_forming[j] else "battery"
            names.append((f"{kind} {_battery_name(problem, j)}", kind))
    for j in np.flatnonzero(ap < 1):
        ups.append(np.ones(b, bool))
        pv = np.zeros(n, bool)
        pv[j] = True
        lost.append(pv)
        prob.append(p0 * (1 - ap[j]) / ap[j] if ap[j] > 0 else 0.0)
        names.append((f"PV of {ids[j]}", "pv"))
    multi = max(0.0, 1.0 - float(np.sum(prob)))
    kept = 0
    if multi > 1e-12:
        picked_b, picked_p = [], []
        for _ in range(MULTI_BATCHES):  # rare when components are few: draw on until enough
            down_b = rng.random((MULTI_DRAWS, b)) > ab
            down_p = rng.random((MULTI_DRAWS, n)) > ap
            many = np.flatnonzero(down_b.sum(axis=1) + down_p.sum(axis=1) >= 2)
            picked_b += list(down_b[many])
            picked_p += list(down_p[many])
            if len(picked_b) >= MULTI_KEEP:
                break
        kept = min(len(picked_b), MULTI_KEEP)
        for i in range(kept):
            ups.append(~picked_b[i])
            lost.append(picked_p[i])
            prob.append(multi / kept)
    return (np.array(ups), np.array(lost), np.array(prob), names, multi, kept)


def _battery_name(problem: Problem, j: int) -> str:
    ids = problem.member_ids
    member = int(problem.battery_member[j])
    name = ids[member] if ids else f"m{member}"
    nth = int((problem.battery_member[:j] == member).sum())
    return name if nth == 0 else f"{name}#{nth + 1}"


def _storage(problem: Problem, comp: Components, ups: BoolArray) -> Storage:
    fleet, h = problem.fleet, problem.hours
    lower = problem.lower_wh
    return merge(fleet.capacity_wh - lower, problem.start_wh - lower, fleet.max_charge_w * h,
                 fleet.max_discharge_w * h, fleet.leg_efficiency, comp.grid_forming, ups)


def _unique(ups: BoolArray, lost: BoolArray, storage: Storage, lost_pv: FloatArray,
            ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Representative state of each distinct (merged storage, lost PV), each state's group."""
    key = np.column_stack([storage.usable_wh, storage.start_wh, storage.charge_wh,
                           storage.discharge_wh, storage.eta, storage.alive, lost_pv])
    _, first, inverse = np.unique(np.round(key, 6), axis=0, return_index=True,
                                  return_inverse=True)
    return first, inverse.reshape(-1)


def survival_odds(problem: Problem, weather: Weather, comp: Components,
                  start_hour: float = 0.0, seed: int = 0,
                  medical_w: FloatArray | None = None) -> Odds:
    """Survival odds of ``problem`` (its PV the profile ``weather`` scales).

    Args:
        start_hour: the site's local hour at the problem's first step, for the curves.
        seed: for the draws of two or more components down (reproducible).
        medical_w: per member, medical load (W) within its critical tier, served first
            (``p_held["medical"]``; a warning when below :data:`ROBUST_P`).
    """
    import time

    began = time.perf_counter()
    if weather.index.shape[1] != problem.pv_w.shape[0]:
        raise ValueError(f"weather.index: expected {problem.pv_w.shape[0]} steps per day, got "
                         f"{weather.index.shape[1]}")
    if np.shape(comp.grid_forming) != (problem.fleet.size,):
        raise ValueError(f"grid_forming: expected one flag per battery ({problem.fleet.size})")
    n = problem.pv_w.shape[1]
    if medical_w is not None and (np.shape(medical_w) != (n,) or not np.all(
            np.isfinite(medical_w)) or np.any(np.asarray(medical_w) < 0)):
        raise ValueError(f"medical_w: expected {n} finite powers ≥ 0 (W per member)")
    rng = np.random.default_rng(seed)
    ups, lost, prob, names, multi, kept = _states(problem, comp, rng)
    h = problem.hours
    base = problem.pv_w * h  # T × N, Wh
    lost_pv = lost.astype(float) @ base.T  # C × T
    storage = _storage(problem, comp, ups)
    first, group = _unique(ups, lost, storage, lost_pv)
    pv_total = base.sum(axis=1)
    tier_wh, names_held = _tier_rows(problem, medical_w)
    u, w = first.size, weather.index.shape[0]
    pv = (weather.index[None, :, :] * (pv_total[None, None, :] - lost_pv[first][:, None, :]))
    st = _pick(storage, first, w)
    outcome = simulate(pv.reshape(u * w, -1), tier_wh, st)
    held = _held(outcome.first_shed, pv.shape[2]).reshape(u, w, -1).mean(axis=1)  # U × tiers
    per_state = held[group]  # C × tiers (critical first, medical last if any)
    p_held = {t: float(prob @ per_state[:, k]) for k, t in enumerate(names_held)}
    held_on = {}
    all_up = _pick(storage, first[group[:1]], 1)
    for q, idx in weather.quantiles.items():
        out = simulate((idx * pv_total)[None, :], tier_wh, all_up)
        ok = _held(out.first_shed, idx.size)[0]
        held_on[q] = {t: bool(ok[k]) for k, t in enumerate(names_held)}
    weak = []
    fail = 1.0 - per_state[:, 0]
    base_fail = fail[0]
    for c in range(1, len(names) + 1):
        if fail[c] > base_fail + 1e-12:
            name, kind = names[c - 1]
            weak.append({"component": name, "kind": kind, "p_loss": _p_loss(comp, kind),
                         "critical_fails_share": float(fail[c]),
                         "costs_p": float(prob[c] * (fail[c] - base_fail))})
    weak.sort(key=lambda x: (-x["costs_p"], x["component"]))
    curves = _curves(problem, weather, storage, first, group, prob, lost_pv, start_hour)
    robust = p_held["critical"] >= ROBUST_P and held_on.get("p10", {}).get("critical", True)
    return Odds(p_held, held_on, bool(robust), weak, multi, kept, w, weather.source, curves,
                u * w, time.perf_counter() - began)


def _tier_rows(problem: Problem, medical_w: FloatArray | None,
               ) -> tuple[FloatArray, tuple[str, ...]]:
    """Load per row and step (Wh) for the batch dispatch, and the names :func:`_held` gives.

    With medical load the critical tier splits in two rows, medical first (served first);
    the critical tier is held when both are.
    """
    h = problem.hours
    tiers = problem.tier_load_w * h  # 3 × T × N
    if medical_w is None or not np.any(np.asarray(medical_w) > 0):
        return tiers.sum(axis=2), TIERS
    medical = np.minimum(np.asarray(medical_w, dtype=float)[None, :] * h, tiers[0])  # T × N
    rows = np.stack([medical.sum(axis=1), (tiers[0] - medical).sum(axis=1),
                     tiers[1].sum(axis=1), tiers[2].sum(axis=1)])
    return rows, (*TIERS, "medical")


def _held(first_shed: NDArray[np.int64], steps: int) -> BoolArray:
    """Per scenario, whether each tier held (critical, essential, flexible[, medical])."""
    ok = first_shed == steps
    if ok.shape[1] == 3:
        return ok
    # rows were medical, critical rest, essential, flexible
    return np.column_stack([ok[:, 0] & ok[:, 1], ok[:, 2], ok[:, 3], ok[:, 0]])


def _p_loss(comp: Components, kind: str) -> float:
    return 1.0 - (comp.pv_availability if kind == "pv" else comp.battery_availability)


def _pick(storage: Storage, rows: NDArray[np.int64], repeat: int) -> Storage:
    """The storage of ``rows``, each repeated ``repeat`` times (state-major)."""
    return Storage(*(np.repeat(getattr(storage, f)[rows], repeat)
                     for f in ("usable_wh", "start_wh", "charge_wh", "discharge_wh", "eta",
                               "alive")))


def _curves(problem: Problem, weather: Weather, storage: Storage, first: NDArray[np.int64],
            group: NDArray[np.int64], prob: FloatArray, lost_pv: FloatArray,
            start_hour: float) -> FloatArray:
    """24 × 48: P(critical lasts ≥ D h) for an island starting at each local hour."""
    steps_h = round(3600.0 / problem.step_s)
    t = problem.pv_w.shape[0]
    h = problem.hours
    span = CURVE_HOURS * steps_h
    u, w = first.size, weather.index.shape[0]
    weight = np.bincount(group, weights=prob, minlength=u)  # probability of each merged state
    pv_total = problem.pv_w.sum(axis=1) * h
    tier_wh = problem.tier_load_w.sum(axis=2) * h
    # Days repeat: day w then day w + 1, as one long series to cut windows from.
    chain = np.concatenate([weather.index, np.roll(weather.index, -1, axis=0),
                            np.roll(weather.index, -2, axis=0)], axis=1)  # W × 3T
    st = _pick(storage, first, w)
    out = np.zeros((24, CURVE_HOURS))
    for hour in range(24):
        shift = int(round(((hour - start_hour) % 24) * steps_h)) % t
        sel = (shift + np.arange(span)) % t  # step of the problem's day
        day = (shift + np.arange(span)) % chain.shape[1]  # position in the chain
        idx = chain[:, day]  # W × span
        pv = idx[None, :, :] * (pv_total[sel][None, None, :] - lost_pv[first][:, None, sel])
        outcome = simulate(pv.reshape(u * w, span), tier_wh[:1, sel], st)
        lasts = outcome.first_shed[:, 0].reshape(u, w)  # steps until critical is shed
        durations = np.arange(1, CURVE_HOURS + 1) * steps_h
        ok = (lasts[:, :, None] >= durations[None, None, :]).mean(axis=1)  # U × 48
        out[hour] = weight @ ok
    return out
