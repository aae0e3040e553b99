"""The island report's charts: one PNG per chart, 1200 × 700 px, fonts large enough for a phone.

Matplotlib draws on its Agg canvas through :class:`~matplotlib.figure.Figure`
directly (no ``pyplot``, so no global figure state and no display needed).
Time runs on the site's clock; blue-grey bands mark islanded intervals. Power is
the mean kW over each settlement interval (its energy divided by its
length), so the plan's 15-minute steps and the ledger's intervals compare
even when their lengths differ. Whenever a plan is given, it is dashed and
what happened is solid.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controller.accounts.figures import PV_FIELDS, SERVED_FIELDS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from controller.island_day.report import FloatArray, IslandReport

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.0, 100
#: Sizes for a 1200 px chart shown ~360 px wide on a phone: 24 pt is ~11 px there.
STYLE = {
    "font.size": 26, "axes.titlesize": 30, "axes.titleweight": "bold", "axes.titlelocation": "left",
    "axes.labelsize": 26, "xtick.labelsize": 24, "ytick.labelsize": 24, "legend.fontsize": 24,
    "lines.linewidth": 4.0, "patch.linewidth": 4.0, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.35,
    "savefig.facecolor": "white",
}
#: Hours between clock ticks, the first that gives at most 7 ticks over the window.
TICK_HOURS = (1, 2, 3, 4, 6, 12)
COLORS = {"pv": "#e0a100", "load": "#1f4e9c", "served": "#2e8b57", "shed": "#c0392b",
          "curtailed": "#e67e22", "peers": "#8e44ad", "coop_battery": "#16a085",
          "into_coop_battery": "#7f8c8d", "islanded": "#c9d6e6", "bar": "#2e8b57",
          "delivered": "#b07800"}
#: Batteries drawn on the SoC chart at most (those that went lowest); the table has all.
MAX_BATTERIES = 8
#: Members drawn on the liberated chart at most (those that liberated most).
MAX_MEMBERS = 20


@dataclass(frozen=True, slots=True)
class Plot:
    """A chart written to ``path``, with the page's title, one-line caption and alt text."""

    name: str
    path: Path
    title: str
    caption: str


@contextmanager
def _figure(path: Path, height_in: float = HEIGHT_IN) -> Iterator[Figure]:
    """A fresh figure in the report's style, saved to ``path`` as PNG on exit."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rc_context(STYLE):
        fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        fig.savefig(path, format="png", dpi=DPI)


def _dates(ts: FloatArray) -> FloatArray:
    """Unix seconds as matplotlib date numbers."""
    from matplotlib.dates import date2num

    return np.asarray(date2num([datetime.fromtimestamp(float(t), UTC) for t in ts]))


def _time_axis(ax: Axes, report: IslandReport, ylabel: str) -> FloatArray:
    """Clock ticks on the site's time, islanded bands; the interval edges as date numbers.

    Up to 36 h the ticks are ``HH:MM`` (the page says which day); longer
    windows get dated ticks. The bands have a legend entry only when part of
    the window was on the grid.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateFormatter, HourLocator

    w = report.window
    edges = _dates(np.append(w.times, w.end).astype(float))
    hours = (w.end - w.start) / 3600.0
    if hours <= 36:
        every = next((h for h in TICK_HOURS if hours / h <= 7), TICK_HOURS[-1])
        ax.xaxis.set_major_locator(HourLocator(byhour=range(0, 24, every), tz=report.tz))
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=report.tz))
    else:
        locator = AutoDateLocator(tz=report.tz, minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=report.tz))
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel(ylabel)
    on = np.concatenate([[False], report.islanded > 0, [False]]).astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        ax.axvspan(edges[a], edges[b], color=COLORS["islanded"], zorder=0, lw=0,
                   label="islanded" if k == 0 else None)
    return edges


def plan_steps(report: IslandReport, key: str) -> tuple[FloatArray, FloatArray] | None:
    """The plan's per-step series ``key`` (kW) and its step boundaries, None without one."""
    plan = report.plan
    per = (plan or {}).get("per_step") or {}
    if plan is None or key not in per:
        return None
    kw = np.asarray(per[key], dtype=float)
    return plan["start_ts"] + np.arange(kw.size + 1) * plan["step_s"], kw


def _kw(report: IslandReport, *fields: str) -> FloatArray:
    """Mean kW per interval of the sum of coop ``fields`` (NaN where not committed)."""
    wh = sum(report.coop[f] for f in fields)
    return np.asarray(wh, dtype=float) * 3.6 / report.window.step


def _legend(ax: Axes, ncol: int = 3) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, frameon=False,
              handlelength=1.6, columnspacing=1.2)


def _pv_load(report: IslandReport, path: Path) -> Plot:
    delivered = tuple(f for f in PV_FIELDS if f != "curtailed")
    with _figure(path) as fig:
        ax = fig.add_subplot()
        edges = _time_axis(ax, report, "kW")
        # what the roofs could give (delivered + held back), then what they gave
        ax.stairs(_kw(report, *PV_FIELDS), edges, fill=True, alpha=0.3, color=COLORS["pv"],
                  lw=0, label="PV available")
        ax.stairs(_kw(report, *delivered), edges, fill=True, alpha=0.55,
                  color=COLORS["delivered"], lw=0, label="PV delivered")
        planned = plan_steps(report, "pv_kw")
        if planned is not None:
            ax.stairs(planned[1], _dates(planned[0]), color=COLORS["pv"], ls="--", lw=2.5,
                      label="plan: PV")
            ax.set_xlim(edges[0], edges[-1])
        ax.stairs(_kw(report, *SERVED_FIELDS, "shed"), edges, color=COLORS["load"], lw=5,
                  label="load")
        ax.stairs(_kw(report, *SERVED_FIELDS), edges, color=COLORS["served"], lw=3,
                  label="served")
        ax.set_ylim(bottom=0)
        ax.set_title("Coop PV and load")
        _legend(ax, 3)
    plan = "; dashed: the plan's PV forecast" if plan_steps(report, "pv_kw") else ""
    return Plot("pv_load", path, "PV and load",
                "PV available (light: what the panels could give, curtailed PV included) and "
                "delivered (dark), and load (served + shed), mean kW per settlement interval"
                f"{plan}; {_bands(report)}.")


def _soc(report: IslandReport, path: Path) -> Plot | None:
    known = [b for b in report.batteries if b.soc_pct is not None]
    if not known:
        return None
    known.sort(key=lambda b: float(np.nanmin(b.soc_pct)))  # type: ignore[arg-type]
    shown = known[:MAX_BATTERIES]
    with _figure(path) as fig:
        ax = fig.add_subplot()
        edges = _time_axis(ax, report, "SoC %")
        colors = [f"C{k}" for k in range(len(shown))]
        for b, color in zip(shown, colors, strict=True):
            soc = b.soc_pct
            name = _label(report.names.get(b.member, b.member))
            ax.plot(edges, soc, color=color,
                    label=name if b.unknown_from is None else f"{name} (lost ×)")
            if b.unknown_from is not None:  # stopped answering: the line ends, marked
                k = b.unknown_from
                ax.plot([edges[k]], [soc[k]], marker="X", ms=22, color=color, ls="none")
                ax.axvspan(edges[k], edges[-1], ymin=0.0, ymax=1.0, fill=False, hatch="//",
                           edgecolor=color, lw=0, alpha=0.35, zorder=0)
            if b.plan_soc is not None:
                ax.plot(_dates(b.plan_soc[0]), b.plan_soc[1], color=color, ls="--", lw=2.5)
            if b.floor_pct is not None:
                ax.axhline(b.floor_pct, color=color, ls=":", lw=2)
        ax.set_ylim(min(0.0, *(float(np.nanmin(b.soc_pct)) for b in shown)) - 2,  # type: ignore[arg-type]
                    max(100.0, *(float(np.nanmax(b.soc_pct)) for b in shown)) + 2)  # type: ignore[arg-type]
        ax.set_title("Battery state of charge")
        if report.plan is not None:
            ax.plot([], [], color="black", ls="--", lw=2.5, label="plan")
        ax.plot([], [], color="black", ls=":", lw=2, label="floor")
        _legend(ax, 2)  # pseudonyms are long: three columns squeeze the chart
    more = (f" (the {len(shown)} that went lowest of {len(known)})"
            if len(known) > len(shown) else "")
    plan = "; dashed: the plan" if report.plan is not None else ""
    lost = [b for b in shown if b.unknown_from is not None]
    unknown = ("; × and hatched: a battery stopped answering there, and its SoC is unknown "
               "from then on") if lost else ""
    return Plot("soc", path, "Battery state of charge",
                f"Each battery's SoC rebuilt from its booked flows{more}; dotted: its floor{plan}"
                f"{unknown}.")


def _shared(report: IslandReport, path: Path) -> Plot:
    with _figure(path) as fig:
        ax = fig.add_subplot()
        edges = _time_axis(ax, report, "kW")
        ax.stairs(_kw(report, "to_peers"), edges, color=COLORS["peers"],
                  label="PV to neighbours")
        ax.stairs(_kw(report, "from_coop_battery"), edges, color=COLORS["coop_battery"],
                  label="from coop batteries")
        ax.stairs(_kw(report, "to_coop_battery"), edges, color=COLORS["into_coop_battery"],
                  lw=2.5, label="PV into neighbours' batteries")
        ax.set_ylim(bottom=0)
        ax.set_title("Energy shared between members")
        _legend(ax, 2)
    return Plot("shared", path, "Sharing",
                "PV given to neighbours, energy drawn from neighbours' offered batteries, and PV "
                "stored in them; mean kW per interval.")


def _shed_curtailed(report: IslandReport, path: Path) -> Plot:
    with _figure(path) as fig:
        ax = fig.add_subplot()
        edges = _time_axis(ax, report, "kW")
        ax.stairs(_kw(report, "shed"), edges, color=COLORS["shed"], label="shed (unserved)")
        ax.stairs(_kw(report, "curtailed"), edges, color=COLORS["curtailed"],
                  label="PV curtailed")
        if report.plan_shed_kw is not None:
            plan_edges, plan_kw = report.plan_shed_kw
            ax.stairs(plan_kw, _dates(plan_edges), color=COLORS["shed"], ls="--", lw=2.5,
                      label="plan: shed")
            ax.set_xlim(edges[0], edges[-1])
        planned = plan_steps(report, "curtailed_kw")
        if planned is not None:
            ax.stairs(planned[1], _dates(planned[0]), color=COLORS["curtailed"], ls="--",
                      lw=2.5, label="plan: curtailed")
            ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(bottom=0)
        ax.set_title("Shed load and curtailed PV")
        _legend(ax, 3)
    plan = ("; dashed: the plan, step by step" if plan_steps(report, "curtailed_kw") else
            "; dashed: the plan's shed (each scheduled run spread evenly over its steps; this "
            "plan file has no curtailment per step)") if report.plan is not None else ""
    return Plot("shed_curtailed", path, "Shed and curtailed",
                f"Load shed and PV curtailed, mean kW per interval{plan}.")


def _cumulative(report: IslandReport, path: Path) -> Plot | None:
    if report.plan is None or report.plan_shed_kw is None:
        return None
    with _figure(path) as fig:
        ax = fig.add_subplot()
        edges = _time_axis(ax, report, "kWh since the start")
        for name in ("shed", "curtailed"):
            done = np.concatenate([[0.0], np.cumsum(np.nan_to_num(report.coop[name]))]) / 1000
            ax.plot(edges, done, color=COLORS[name], label=f"{name} (actual)")
        plan_edges, plan_kw = report.plan_shed_kw
        hours = np.diff(plan_edges) / 3600.0
        ax.plot(_dates(plan_edges), np.concatenate([[0.0], np.cumsum(plan_kw * hours)]),
                color=COLORS["shed"], ls="--", lw=2.5, label="shed (plan)")
        planned = plan_steps(report, "curtailed_kw")
        if planned is not None:  # added up step by step, as what happened is
            hours = np.diff(planned[0]) / 3600.0
            ax.plot(_dates(planned[0]), np.concatenate([[0.0], np.cumsum(planned[1] * hours)]),
                    color=COLORS["curtailed"], ls="--", lw=2.5, label="curtailed (plan)")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(bottom=0)
        ax.set_title("Plan against what happened")
        _legend(ax, 2)
    return Plot("plan_vs_actual", path, "Plan against what happened",
                "Shed and curtailed energy added up since the window's start: solid as booked, "
                "dashed as planned.")


def _liberated(report: IslandReport, path: Path) -> Plot:
    members = report.summary["members"]
    order = sorted(members, key=lambda m: -(members[m]["liberated_kwh"] or 0.0))
    shown = order[:MAX_MEMBERS][::-1]
    with _figure(path, max(HEIGHT_IN, 1.6 + 0.55 * len(shown))) as fig:
        ax = fig.add_subplot()
        labels = [_label(members[m]["name"]) for m in shown]
        values = [members[m]["liberated_kwh"] or 0.0 for m in shown]
        bars = ax.barh(range(len(shown)), values, color=COLORS["bar"], height=0.7, lw=0)
        ax.bar_label(bars, fmt="%.1f", padding=8)
        ax.set_yticks(range(len(shown)), labels)
        ax.set_xlabel("kWh liberated")
        ax.grid(axis="y", visible=False)
        ax.set_xlim(0, max([*values, 0.1]) * 1.18)
        ax.set_title("Liberated energy per member")
    more = f"; the {len(shown)} that liberated most of {len(order)}" if len(order) > len(
        shown) else ""
    return Plot("liberated", path, "Liberated per member",
                f"kWh of each member's load served from the coop's own PV and batteries{more}.")


def _bands(report: IslandReport) -> str:
    """What the shaded background means, for a caption."""
    if (report.islanded > 0).all():
        return "the whole window was islanded (shaded)"
    return "shaded bands: islanded"


def _label(name: str, width: int = 18) -> str:
    """A member's name as a tick label: shortened, with ``$`` kept from mathtext."""
    short = name if len(name) <= width else name[:width - 1] + "…"
    return short.replace("$", r"\$")


def render_plots(report: IslandReport, out: Path) -> list[Plot]:
    """Write every chart into ``out``; the charts written, in the page's order."""
    plots = [
        _pv_load(report, out / "pv_load.png"),
        _soc(report, out / "soc.png"),
        _shared(report, out / "shared.png"),
        _shed_curtailed(report, out / "shed_curtailed.png"),
        _cumulative(report, out / "plan_vs_actual.png"),
        _liberated(report, out / "liberated.png"),
    ]
    return [p for p in plots if p is not None]
