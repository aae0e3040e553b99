"use strict";
// Shared by Commonwatt's pages (no build step). Every text from the API goes in with
// textContent or as an SVG text node: names, labels and device errors are data, never
// markup; no HTML is ever parsed from data.
const CW = (() => {
  const $ = id => document.getElementById(id);
  const num = x => x !== null && x !== undefined && x !== "" && Number.isFinite(Number(x));
  const fmt = (x, d = 2) => num(x) ? Number(x).toFixed(d) : "—";
  const pct = x => num(x) ? (100 * x).toFixed(0) + " %" : "—";
  const SVG = "http://www.w3.org/2000/svg";

  // Seconds in words a person reads at a glance: "45 s", "12 min", "4 h 38 min", "3 d 2 h".
  function duration(s) {
    if (!num(s)) return "—";
    s = Math.max(0, Number(s));
    if (s < 9.95) return s.toFixed(1) + " s";
    if (s < 59.5) return Math.round(s) + " s";
    const m = Math.round(s / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (d > 0) return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
    return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  }

  function put(id, text) { $(id).textContent = text === undefined || text === null ? "" : String(text); }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function cell(row, label, text, cls) {
    const td = el("td", text, cls);
    td.dataset.label = label;
    row.appendChild(td);
    return td;
  }
  function watts(w) {
    if (!num(w)) return "—";
    const a = Math.abs(w);
    return a >= 1000 ? (w / 1000).toFixed(a >= 10000 ? 1 : 2) + " kW" : Math.round(w) + " W";
  }
  function money(cents, currency) {
    if (!num(cents)) return "—";
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency }).format(cents / 100);
    } catch (e) {  // a currency code the browser does not know: still the exact amount
      return (cents / 100).toFixed(2) + " " + currency;
    }
  }
  function setBar(fill, fraction) {
    fill.style.width = (num(fraction) ? Math.max(0, Math.min(1, fraction)) * 100 : 0) + "%";
  }

  class HttpError extends Error {
    constructor(url, status, detail) { super(`${url} answered ${status}: ${detail}`); this.status = status; }
  }
  async function getJSON(url) {
    await CWClock.ready;  // what a page does with the answer is on the controller's clock
    const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
      throw new HttpError(url, r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return r.json();
  }

  // ---- UTC calendar: the ledger's days, months and years are UTC
  // "Today" is the controller's (clock.js): in the demo a simulated day, not the browser's.
  const today = () => new Date(CWClock.now() * 1000);
  const dayStart = (d = today()) => Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) / 1000;
  const monthStart = (d = today()) => Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1) / 1000;
  const yearStart = (d = today()) => Date.UTC(d.getUTCFullYear(), 0, 1) / 1000;
  const isoDay = ts => new Date(ts * 1000).toISOString().slice(0, 10);
  const isoMonth = ts => new Date(ts * 1000).toISOString().slice(0, 7);
  const hhmm = ts => new Date(ts * 1000).toISOString().slice(11, 16);
  const stamp = ts => num(ts) ? new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "—";
  function addMonths(month, n) {  // "YYYY-MM" moved by n months
    const [y, m] = month.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1 + n, 1)).toISOString().slice(0, 7);
  }

  // ---- who is logged in: the header's log-in link says so
  async function whoami() {
    await CWClock.ready;  // the pages start here: their "today" is on the controller's clock
    let me = { role: "public", member: null, label: null };
    try { me = await getJSON("/api/v1/whoami"); } catch (e) { /* a stale cookie: public */ }
    const link = $("login-link");
    if (link) link.textContent = me.role === "public" ? "Log in" : `${me.label} (${me.role}) · log out`;
    return me;
  }

  // ---- the live picture: one Server-Sent Event a cycle, polling as the fallback
  function live(onView, onMode) {
    let polling = null;
    const poll = async () => {
      try { onView(await getJSON("/api/v1/live")); onMode("poll", "updating every 2 s"); }
      catch (e) { onMode("", "cannot reach the controller"); }
      polling = setTimeout(poll, 2000);
    };
    const startPolling = () => { if (polling === null) poll(); };
    if (typeof EventSource === "undefined") { startPolling(); return; }
    const source = new EventSource("/api/v1/live/stream");
    const fallback = setTimeout(startPolling, 6000);
    source.addEventListener("cycle", ev => {
      clearTimeout(fallback);
      if (polling !== null) { clearTimeout(polling); polling = null; }
      onMode("live", "live, every cycle");
      try { onView(JSON.parse(ev.data)); } catch (e) { /* a torn event: the next one comes */ }
    });
    source.onerror = () => { clearTimeout(fallback); startPolling(); };
    getJSON("/api/v1/live").then(v => { if (polling === null) onView(v); }).catch(() => {});
  }

  // ---- hand-made SVG
  function svg(tag, attrs, parent, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }
  function niceMax(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    return [1, 2, 2.5, 5, 10].map(f => f * p).find(v => v >= x);
  }
  /** Stacked bars, one per slot; ``slots`` are [start_ts, {key: value}], ``series`` are
   * {key, label, color}; the width follows the element's, so text stays legible. */
  function stackedBars(target, slots, series, opts) {
    const W = Math.max(260, Math.round(target.getBoundingClientRect().width || 600));
    const H = opts.height || 210, left = 40, right = 8, top = 22, bottom = 22;
    const totals = slots.map(([, v]) => series.reduce((s, k) => s + (v[k.key] || 0), 0));
    const ymax = niceMax(Math.max(0, ...totals));
    const plotW = W - left - right, plotH = H - top - bottom;
    const n = opts.count || slots.length || 1, bw = plotW / n;
    target.replaceChildren();
    target.setAttribute("viewBox", `0 0 ${W} ${H}`);
    for (const f of [0, 0.5, 1]) {
      const y = top + plotH * (1 - f);
      svg("line", { x1: left, x2: W - right, y1: y, y2: y, stroke: "#e4e4e4" }, target);
      svg("text", { x: left - 4, y: y + 4, "text-anchor": "end" }, target, (ymax * f).toFixed(ymax * f < 10 && f ? 1 : 0));
    }
    svg("text", { x: 2, y: 11 }, target, opts.unit || "");  // above the top tick
    slots.forEach(([ts, v]) => {
      const i = opts.index ? opts.index(ts) : slots.findIndex(s => s[0] === ts);
      let y = top + plotH;
      for (const s of series) {
        const h = (v[s.key] || 0) / ymax * plotH;
        if (h <= 0) continue;
        y -= h;
        svg("rect", { x: left + i * bw + bw * 0.12, y, width: Math.max(bw * 0.76, 1), height: h,
                      style: "fill:" + s.color, "data-key": s.key }, target);
      }
    });
    (opts.ticks || []).forEach(([i, label]) => {
      svg("text", { x: left + (i + 0.5) * bw, y: H - 6, "text-anchor": "middle" }, target, label);
    });
  }

  function markNav() {
    for (const a of document.querySelectorAll("nav.site a")) {
      if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
    }
  }
  document.addEventListener("DOMContentLoaded", markNav);

  // The rolling plan's next hours (issue 22, point 5) into ``#plan-rows``, one row an hour,
  // labelled for the page (a household's own battery, or every battery together); false
  // (and ``#plan-ahead`` hidden) when there is no plan.
  function planAhead(p, targetLabel, sharedLabel) {
    $("plan-ahead").hidden = !p.plan;
    if (!p.plan) return false;
    $("plan-rows").replaceChildren(...p.hours.map(h => {
      const tr = document.createElement("tr");
      tr.dataset.at = h.at;
      cell(tr, "By (UTC)", hhmm(Date.parse(h.at) / 1000), "head");
      cell(tr, targetLabel, h.target_pct === null ? "—" : `${fmt(h.target_pct, 0)} %`);
      cell(tr, sharedLabel, fmt(h.shared_kwh));
      return tr;
    }));
    return true;
  }

  return { $, num, fmt, pct, duration, put, el, cell, watts, money, setBar, getJSON, HttpError,
           dayStart, monthStart, yearStart, isoDay, isoMonth, hhmm, stamp, addMonths,
           whoami, live, svg, stackedBars, planAhead };
})();
