// Capacity: time to exhaustion (P10/P50/P90) per resource, and a chart per resource of the
// projection those times come from (the capacity model's simulated paths, from the same answer:
// asked for with projection: true, the API leaves it out — null — otherwise).
import { api } from "../api.js";
import { TimeChart } from "../chart.js";
import { el, pct, selectorOf, seriesName } from "../format.js";
import { formatDays } from "../time.js";
import { queryRange, rangeOf } from "./common.js";


const HORIZON_DAYS = 30;
const PRESETS = [
  { resource: "disk", usage: 'node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|nsfs|proc|sysfs|autofs"}', capacity: "node_filesystem_size_bytes" },
  { resource: "memory", usage: "node_memory_MemAvailable_bytes", capacity: "node_memory_MemTotal_bytes" },
];

export async function render(main, { signal }) {
  main.append(el("h1", { text: "Capacity" }));
  const tablePanel = el("section", { class: "panel", "aria-labelledby": "h-table" }, el("h2", { id: "h-table", text: `Time to exhaustion, next ${HORIZON_DAYS} days` }));
  const status = el("p", { class: "small muted", role: "status", text: "Planning…" });
  tablePanel.append(status);
  const chartPanel = el("section", { class: "panel", "aria-labelledby": "h-proj", style: "margin-top:1rem" }, el("h2", { id: "h-proj", text: "Projection" }));
  const chartBox = el("div", { class: "chart", id: "capacity-chart" });
  const chartNote = el("p", { class: "small muted", role: "status", text: "Choose a resource above." });
  chartPanel.append(chartBox, chartNote);
  main.append(tablePanel, chartPanel);
  const chart = new TimeChart(chartBox, { height: window.innerWidth < 600 ? 220 : 300, label: "capacity projection" });
  const rows = [];
  const results = await Promise.all(PRESETS.map((p) => api("/api/v1/performance/capacity/analyze", {
    method: "POST", signal, body: { usage: p.usage, capacity: p.capacity, usage_kind: "available", resource: p.resource, horizon_days: HORIZON_DAYS, step: "5m", history: "7d", projection: true },
  }).then((d) => ({ p, d })).catch((e) => ({ p, e }))));
  const problems = [];
  for (const { p, d, e } of results) {
    if (e) { if (e.status !== 404) problems.push(`${p.resource}: ${e.message}`); continue; }
    for (const res of d.data.resources) rows.push({ preset: p, res, base: res.scenarios[0] });
  }
  // a projection from too little history (a new host's first minutes) is shown, marked, after the others
  const soon = (r) => (r.base.exhaustion.p50 ? r.base.exhaustion.p50.days : 1e9);
  rows.sort((a, b) => (a.res.beyond_history - b.res.beyond_history) || (soon(a) - soon(b)));
  const unsure = rows.filter((r) => r.res.beyond_history).length;
  status.textContent = rows.length ? `${rows.length} resources, soonest exhaustion first.` : "No disks or memory series to plan yet.";
  if (unsure) status.textContent += ` ${unsure} projected from under half a day of history (marked *, listed last): too little to plan on, a daily cycle's upswing looks like growth.`;
  if (problems.length) status.textContent += ` ${problems.join("; ")}`;
  const show = async (row) => {
    chartNote.textContent = "Projecting…";
    const sel = selectorOf(row.res.labels);
    try {
      const hist = await queryRange(sel, rangeOf("now-2d", "now"), signal);
      const cap = row.res.capacity;
      const used = (v) => (v === null || cap === null ? null : cap - v);
      const series = hist.slice(0, 1).map((s) => ({ ...s, label: `${row.preset.resource} used`, y: s.y.map(used) }));
      const drawn = projectionSpan(row.res.projection, row.base.exhaustion.p90, HORIZON_DAYS);
      const fc = drawn && { x: drawn.x, mean: drawn.p50, lo80: drawn.p10, hi80: drawn.p90, label: "P50 projection" };
      const capLine = { key: "capacity", label: "capacity", x: [...(series[0] ? series[0].x : []), ...(fc ? fc.x : [])], y: [] };
      capLine.y = capLine.x.map(() => cap);
      chart.set({ series: [...series, capLine], forecast: fc });
      // what is drawn, for tests and for anyone inspecting the page
      chartBox.dataset.projection = JSON.stringify({ capacity: cap, x: drawn ? drawn.x : [], p50: drawn ? drawn.p50 : [] });
      const span = drawn ? drawn.why : "no projection";
      chartNote.textContent = `${row.res.summary}. Used = capacity − available, the last 2 days; then the capacity model's own projection, the one the table's times come from (dashed: P50 of its simulated usage; band: P10–P90), ${span}.`;
      // a trend of minutes drawn over a month says little, exhausting or not (a disk emptying
      // for ten minutes was drawn falling to 0): the note says so for every such resource
      if (row.res.short_history) chartNote.textContent += ` Drawn from only ${historyText(row.res.history_days)} of history: too little to plan on.`;
    } catch (e) { chartNote.textContent = `Projection: ${e.message}`; }
  };
  if (rows.length) {
    const tbody = el("tbody");
    rows.forEach((row, i) => {
      const e = row.base.exhaustion;
      const mark = row.res.beyond_history ? " *" : "";
      const when = (q) => el("td", { class: `num${mark ? " muted" : ""}`, "data-beyond-history": mark ? "true" : null, title: mark ? row.res.summary : null, text: formatDays(q && q.days) + (q ? mark : "") });
      const btn = el("button", { type: "button", class: "ghost", "aria-pressed": i === 0 ? "true" : "false", text: row.preset.resource, onclick: () => { tbody.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", "false")); btn.setAttribute("aria-pressed", "true"); show(row); } });
      tbody.append(el("tr", {},
        el("td", {}, btn),
        el("td", { class: "mono", title: seriesName(row.res.labels), text: shortName(row.res.labels) }),
        el("td", { class: "num", text: pct(row.res.utilisation_now) }),
        when(e.p10), when(e.p50), when(e.p90)));
    });
    tablePanel.append(el("div", { class: "table-wrap" }, el("table", { id: "capacity-table" },
      el("caption", { class: "visually-hidden", text: "Time to exhaustion per resource" }),
      el("thead", {}, el("tr", {}, ["Resource", "Series", "Used now", "P10", "P50", "P90"].map((h, i) => el("th", { scope: "col", class: i > 1 ? "num" : null, text: h })))),
      tbody)));
    await show(rows[0]);
  }
  return () => chart.destroy();
}

function historyText(days) {
  const minutes = days * 1440;
  return minutes < 90 ? `${Math.max(1, Math.round(minutes))} min` : formatDays(days);
}

function shortName(labels) {
  const host = (labels.instance || "").replace(/:\d+$/, "");
  const where = labels.mountpoint || labels.device || "";
  return [host, where].filter(Boolean).join(" ") || seriesName(labels);
}

// The projection up to the horizon, or a little past the P90 exhaustion when that comes first
// (a tenth of the lead time more, two of its steps at least), so a disk full in 18 days is not
// drawn over 30 and a memory full in hours is not a corner of a month.
function projectionSpan(proj, p90, horizonDays) {
  if (!proj || !proj.timestamps.length) return null;
  const t = proj.timestamps;
  // the kept steps: the first projected step, then a regular stride up to the horizon
  const stride = t.length > 2 ? t[2] - t[1] : 0;
  let end = t[t.length - 1];
  let why = `up to the horizon (${horizonDays} days)`;
  if (p90) {
    const now = p90.unix - p90.days * 86400;
    const past = p90.unix + Math.max(0.1 * (p90.unix - now), 2 * stride);
    if (past < end) { end = past; why = `a little past the P90 exhaustion (${formatDays((past - now) / 86400)} ahead)`; }
  }
  let n = t.findIndex((x) => x > end);
  if (n === -1) n = t.length;
  n = Math.max(n, Math.min(2, t.length));
  return { x: t.slice(0, n), p10: proj.p10.slice(0, n), p50: proj.p50.slice(0, n), p90: proj.p90.slice(0, n), why };
}
