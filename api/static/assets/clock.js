"use strict";
// The controller's clock, which every page shows its times on (/api/v1/clock). In the demo
// and `island rehearse` it is simulated (a day in minutes): "now" and "today" come from it,
// never from the browser, and the header says so ("simulated 14:05 UTC (60×)"), so a
// simulated time is never read as wall time. Loaded by every page, before its own script.
const CWClock = (() => {
  // The last answer, and when it came (performance.now() is monotonic, Date.now() is not).
  let base = { now: Date.now() / 1000, speed: 1, simulated: false, clock: "wall" };
  let at = performance.now();
  const now = () => base.now + (performance.now() - at) / 1000 * base.speed;

  async function sync() {
    try {
      const r = await fetch("/api/v1/clock", { cache: "no-store", credentials: "same-origin" });
      if (r.ok) { base = await r.json(); at = performance.now(); }
    } catch (e) { /* no controller: the browser's clock, unmarked */ }
    show();
  }

  function label() {
    const hm = new Date(now() * 1000).toISOString().slice(11, 16);
    const speed = Number(base.speed);
    return `simulated ${hm} UTC (${Number.isInteger(speed) ? speed : speed.toFixed(1)}×)`;
  }

  // A badge in the header, styled here: two of the pages carry their own stylesheet.
  function show() {
    const header = document.querySelector("header");
    let badge = document.getElementById("sim-clock");
    if (!base.simulated) { if (badge) badge.remove(); return; }
    if (!header) return;
    if (!badge) {
      badge = document.createElement("p");
      badge.id = "sim-clock";
      badge.title = "The controller runs on a simulated clock: every time on this page is on it, not on your watch.";
      badge.style.cssText = "display:inline-block;margin:.45rem 0 0;padding:.1rem .55rem;"
        + "border-radius:.8rem;background:#ffd166;color:#1d2d24;font-size:.85rem;font-weight:600;";
      header.appendChild(badge);
    }
    badge.textContent = label();
  }

  const ready = sync();
  setInterval(show, 1000);   // the badge's minutes run fast at 60×
  setInterval(sync, 60000);  // a restarted demo, a drifting tab
  document.addEventListener("DOMContentLoaded", show);
  return { now, ready, sync, label, get simulated() { return base.simulated; }, get clock() { return base.clock; } };
})();
