"""The island report as one self-contained HTML page, readable on a phone.

Everything is inside the file: CSS inline, charts as base64 ``data:`` URIs,
no script, font or link to anything outside, so it can be mailed, printed or
opened offline. One column; on a narrow screen every wide table turns into
stacked rows (each cell labelled), so nothing scrolls sideways at 390 px.
Every text that comes from the config, the ledger or the plan is escaped.
"""

from __future__ import annotations

import base64
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from controller.island.plan import TIERS
from controller.island_day.report_day import day_edges_html
from controller.island_day.trust import odds_html

if TYPE_CHECKING:
    from controller.island_day.report import IslandReport
    from controller.island_day.report_plots import Plot

CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:#1d2733;background:#f3f5f8}
main{max-width:760px;margin:0 auto;padding:16px 14px 40px}
h1{font-size:1.55rem;line-height:1.2;margin:.3em 0 .2em}
h2{font-size:1.2rem;margin:1.8em 0 .6em}
p{margin:.4em 0}
.sub{color:#4a5663;margin:0 0 1em}
.cards{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px}
.card{background:#fff;border-radius:10px;padding:10px 12px;box-shadow:0 1px 2px #0002}
.value{font-size:1.55rem;font-weight:700;line-height:1.2;overflow-wrap:anywhere}
.label{color:#4a5663;font-size:.9rem}
.tiers{margin-top:10px;grid-template-columns:repeat(3,minmax(0,1fr))}
.tiers .value{font-size:1.1rem}
.why{margin:10px 2px;color:#39434e}
.ok{color:#1e7d45}.bad{color:#b3261e}.muted{color:#6b7682}
figure{margin:14px 0;background:#fff;border-radius:10px;padding:8px;box-shadow:0 1px 2px #0002}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:.92rem;color:#39434e;padding:6px 4px 2px}
figcaption b{color:#1d2733}
table{width:100%;border-collapse:collapse;background:#fff;border-radius:10px;
  box-shadow:0 1px 2px #0002;font-size:.95rem}
th,td{padding:7px 8px;text-align:right;border-bottom:1px solid #e3e8ee;
  overflow-wrap:break-word;vertical-align:top}
th{font-size:.85rem;color:#4a5663;font-weight:600}
th:first-child,td:first-child{text-align:left;overflow-wrap:anywhere}
ul{padding-left:1.2em}li{margin:.3em 0}
footer{margin-top:2em;color:#6b7682;font-size:.85rem}
@media (max-width:600px){
  table.stack thead{display:none}
  table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
  table.stack tr{border-bottom:2px solid #d5dce3;padding:6px 0}
  table.stack td{display:flex;justify-content:space-between;gap:12px;border:0;padding:3px 12px}
  table.stack td::before{content:attr(data-label);color:#4a5663;text-align:left}
  table.stack td:first-child{font-weight:700;font-size:1.05rem}
  table.stack td:first-child::before{content:none}
}
"""


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}".replace(",", "\u202f")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}\u202f%"


def _held(held: bool | None) -> str:
    if held is None:
        return '<span class="muted">no plan</span>'
    return '<span class="ok">✓ held</span>' if held else '<span class="bad">✗ shed</span>'


def _table(head: list[str], rows: list[list[str]], stack: bool = True) -> str:
    """A table whose cells are already HTML; stacked rows on a phone when ``stack``."""
    labels = [escape(h) for h in head]
    body = "".join("<tr>" + "".join(f'<td data-label="{labels[k]}"><span>{c}</span></td>'
                                    for k, c in enumerate(r)) + "</tr>" for r in rows)
    return (f'<table{" class=stack" if stack else ""}><thead><tr>'
            + "".join(f"<th>{h}</th>" for h in labels) + f"</tr></thead><tbody>{body}"
            "</tbody></table>")


def _clock(iso: str | None) -> str:
    if not iso:
        return "–"
    when = datetime.fromisoformat(iso)
    return f"{when:%Y-%m-%d %H:%M}"


def _headline(s: dict) -> str:
    c = s["coop"]
    cards = [
        (_num(c["hours_islanded"], "\u202fh"), "islanded"),
        (_num(c["liberated_kwh"], "\u202fkWh"), "liberated: served from the coop's own energy"),
        (_pct(c["self_sufficiency"]), "self-sufficiency (liberated / load)"),
        (_num(c["shed_kwh"], "\u202fkWh"), "unserved (shed load)"),
        (_num(c["shared_kwh"], "\u202fkWh"), "shared between members"),
        (_num(c["curtailed_kwh"], "\u202fkWh"),
         f"PV curtailed, of {_num(c['pv_kwh'])} kWh available"),
    ]
    tiers = "".join(f'<div class="card"><div class="value">{_held(s["tiers"][t]["held"])}</div>'
                    f'<div class="label">{t}</div></div>' for t in TIERS)
    return ('<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{escape(v)}</div><div class="label">'
        f"{escape(label)}</div></div>" for v, label in cards)
        + f'</div><p class="why">{_why(c)}</p><div class="cards tiers">{tiers}</div>')


def _why(c: dict) -> str:
    """Where the load came from, so the self-sufficiency figure explains itself."""
    parts = [f"{_num(c['liberated_kwh'])} kWh liberated (the coop's own PV, directly or "
             "through batteries it charged)"]
    if c.get("from_stored_unknown_kwh"):
        parts.append(f"{_num(c['from_stored_unknown_kwh'])} kWh from battery energy stored "
                     "before, of unknown origin (it may have come from the grid, so it does "
                     "not count as liberated)")
    if c.get("from_grid_kwh"):
        parts.append(f"{_num(c['from_grid_kwh'])} kWh from the grid")
    if c["shed_kwh"]:
        parts.append(f"{_num(c['shed_kwh'])} kWh not served (shed)")
    return (f"Of {_num(c['load_kwh'])} kWh of load: " + "; ".join(parts)
            + f". Self-sufficiency is the liberated share: {_pct(c['self_sufficiency'])}.")


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(plot.title)}" width="1200" height="700" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{escape(plot.title)}.</b> '
            f"{escape(plot.caption)}</figcaption></figure>")


def _members(s: dict) -> str:
    rows = []
    for m, f in sorted(s["members"].items(), key=lambda x: -(x[1]["liberated_kwh"] or 0.0)):
        who = escape(f["name"]) + (f' <span class="muted">({escape(m)})</span>'
                                   if f["name"] != m else "")
        rows.append([who, escape(f["tier"] or "–"), _num(f["load_kwh"]),
                     _num(f["liberated_kwh"]), _pct(f["self_sufficiency"]),
                     _num(f["shed_kwh"])])
    return _table(["Member", "Tier", "Load kWh", "Liberated kWh", "Self-sufficiency",
                   "Shed kWh"], rows)


def _batteries(report: IslandReport) -> str:
    s = report.summary
    if not s["batteries"]:
        return '<p class="muted">No batteries in this coop.</p>'
    plan = (s["plan"] or {}).get("batteries", {})
    rows = []
    for m, b in s["batteries"].items():
        floor = b["floor_pct"]
        low = _num(b["min_soc_pct"], "\u202f%", 0)
        if b["above_floor"] is False:
            low = f'<span class="bad">{low}</span>'
        rows.append([escape(report.names.get(m, m)), _num(b["capacity_kwh"], "\u202fkWh"),
                     _num(b["start_soc_pct"], "\u202f%", 0)
                     + f' <span class="muted">({escape(b["start_soc_source"])})</span>',
                     low, _end_soc(b), _num(floor, "\u202f%", 0),
                     _num(plan[m]["min_soc_pct"], "\u202f%", 0) if m in plan
                     else '<span class="muted">no plan</span>'])
    return _table(["Battery of", "Capacity", "Start SoC", "Lowest SoC", "End SoC", "Floor",
                   "Plan: lowest"], rows)


def _end_soc(b: dict) -> str:
    """The end SoC, or since when it is unknown (the battery stopped answering)."""
    if b.get("unknown_from"):
        return f'<span class="bad">unknown from {escape(_clock(b["unknown_from"])[11:])}</span>'
    return _num(b["end_soc_pct"], "\u202f%", 0)


def _plan(s: dict) -> str:
    plan = s["plan"]
    none = '<span class="muted">no plan</span>'
    rows = []
    for t in TIERS:
        rows.append([f"{t} load", _held(None if plan is None else plan["feasible"][t]),
                     _held(s["tiers"][t]["held"])])
    for t in TIERS:
        rows.append([f"{t} shed", none if plan is None else _num(plan["shed_kwh"][t],
                                                                  "\u202fkWh", 2),
                     _num(s["tiers"][t]["shed_kwh"], "\u202fkWh", 2)])
    rows.append(["PV curtailed", none if plan is None or plan["curtailed_kwh"] is None
                 else _num(plan["curtailed_kwh"], "\u202fkWh", 2),
                 _num(s["coop"]["curtailed_kwh"], "\u202fkWh", 2)])
    intro = ('<p class="muted">No plan was given. Before the day, save '
             "<code>commonwatt island plan CONFIG --start … --json &gt; plan.json</code> "
             "and pass <code>--plan plan.json</code> to compare.</p>") if plan is None else (
        f"<p>Plan from {escape(_clock(plan['start']))} to {escape(_clock(plan['end']))}, "
        f"scenario {escape(str(plan['scenario']))}.</p>")
    odds = odds_html(plan.get("survival")) if plan is not None else ""  # #21
    return intro + odds + _table(["", "Plan", "Actual"], rows, stack=False)


def _method(report: IslandReport) -> str:
    s = report.summary
    items = [
        f"Window: {escape(s['window']['source'])}; {s['coop']['intervals']} of "
        f"{s['coop']['intervals_expected']} settlement intervals of "
        f"{s['window']['settlement_s'] // 60} min booked, {s['coop']['intervals_with_gaps']} "
        "with a gap.",
        "Load = served + shed. Liberated = served from members' own PV, neighbours' PV and "
        "batteries charged from coop PV, never from the grid. Self-sufficiency = liberated / "
        "load, so shed load counts against it.",
        f"Tiers from the {escape(s['tier_source'])}. Shed is counted against flexible load "
        "first, then essential, then critical, as the dispatch sheds; a tier held when none "
        "of it was shed.",
        "Battery SoC is rebuilt from each interval's booked battery flows, from the starting "
        "SoC named in the battery table; a battery that stopped answering is unknown from "
        "then on.",
        "PV available = delivered + curtailed. Curtailed PV that a cap or a full grid-former "
        "held back is estimated from the plan's PV forecast scaled by what the panels gave "
        "while nothing held them back; a cloud that passes while the island is full is "
        "invisible to it, so the estimate is then too high.",
        *(escape(n) for n in s["notes"]),
    ]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def render_html(report: IslandReport, plots: list[Plot]) -> str:
    """The whole page."""
    s, w = report.summary, report.summary["window"]
    name = escape(report.name)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Island report: {name}</title>
<style>{CSS}</style>
</head>
<body><main>
<h1>Island report: {name}</h1>
<p class="sub">{escape(_clock(w["from"]))} to {escape(_clock(w["to"]))} ({escape(w["tz"])})</p>
{_headline(s)}
<h2>The day in charts</h2>
{"".join(_figure(p) for p in plots)}
<h2>Members</h2>
{_members(s)}
<h2>Batteries</h2>
{_batteries(report)}
{day_edges_html(s, report.names)}
<h2>Plan against what happened</h2>
{_plan(s)}
<h2>How these figures are made</h2>
{_method(report)}
<footer>Written by <code>commonwatt island report</code> from the coop's ledger; every figure
is also in summary.json beside this page.</footer>
</main></body>
</html>
"""
