// Series detail: one series with its anomalies, forecast, correlated series and capacity outlook.
import { api } from "../api.js";
import { TimeChart } from "../chart.js";
import { el, pct, selectorOf, seriesName } from "../format.js";
import { live } from "../live.js";
import { formatDays, formatDuration, formatTime } from "../time.js";
import { anomalies, forecast, keyOf, queryRange, rangeOf } from "./common.js";

// Resources whose capacity partner is known: usage selector metric -> capacity metric.
const CAPACITY = {
  node_filesystem_avail_bytes: ["node_filesystem_size_bytes", "available", "disk"],
  node_memory_MemAvailable_bytes: ["node_memory_MemTotal_bytes", "available", "memory"],
};

export async function render(main, { signal, params }) {
  const s = params.get("s") || "";
  const from = params.get("from") || "now-24h";
  const to = params.get("to") || "now";
  main.append(el("p", { class: "crumbs" }, el("a", { href: `/explore?q=${encodeURIComponent(s)}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, "data-link": true, text: "Open in Explore" })));
  main.append(el("h1", {}, "Series ", el("span", { class: "mono", text: s })));
  if (!s) { main.append(el("p", { class: "empty", text: "No series given." })); return () => {}; }
  const grid = el("div", { class: "grid" });
  main.append(grid);
  const histPanel = el("section", { class: "panel span-12", "aria-labelledby": "h-hist" }, el("h2", { id: "h-hist", text: "History, expected band and anomalies" }));
  const histBox = el("div", { class: "chart", id: "series-chart" });
  const histNote = el("div", { class: "small", role: "status" });
  histPanel.append(histBox, histNote);
  const fcPanel = el("section", { class: "panel span-8", "aria-labelledby": "h-fc" }, el("h2", { id: "h-fc", text: "Forecast, next 6 hours" }));
  const fcBox = el("div", { class: "chart", id: "forecast-chart" });
  const fcNote = el("p", { class: "small muted", role: "status", id: "forecast-note" });
  fcPanel.append(fcBox, fcNote);
  const capPanel = el("section", { class: "panel span-4", "aria-labelledby": "h-cap", id: "capacity-outlook" }, el("h2", { id: "h-cap", text: "Capacity outlook" }));
  const corrPanel = el("section", { class: "panel span-12", "aria-labelledby": "h-corr", id: "correlated" }, el("h2", { id: "h-corr", text: "Correlated series" }));
  grid.append(histPanel, fcPanel, capPanel, corrPanel);
  const height = window.innerWidth < 600 ? 220 : 300;
  const hist = new TimeChart(histBox, { height, label: `history of ${s}` });
  const fchart = new TimeChart(fcBox, { height: 240, label: `forecast of ${s}` });
  let r;
  try { r = rangeOf(from, to); } catch (e) { histNote.textContent = e.message; return () => {}; }
  const [data, a] = await Promise.all([
    queryRange(s, r, signal).catch((e) => { histNote.textContent = e.message; return []; }),
    anomalies(s, r, signal).catch((e) => ({ err: e.message })),
  ]);
  if (data.length) hist.set({ series: data.slice(0, 1), band: a.band, markers: a.markers || [] });
  else histNote.textContent = histNote.textContent || "No data in this range.";
  if (a.err) histNote.append(el("p", { class: "muted", text: `Anomaly band: ${a.err}` }));
  if (a.events) {
    histNote.append(el("h3", { text: a.events.length ? `${a.events.length} anomalies` : "No anomalies in this range" }));
    histNote.append(el("ul", { class: "reasons" }, a.events.map((ev) => el("li", { text: `${formatTime(ev.start)}–${formatTime(ev.end)} (${ev.severity}): ${ev.explanation}` }))));
  }
  const horizonS = 6 * 3600;
  forecast(s, horizonS, signal).then((f) => {
    if (!f) { fcNote.textContent = "No forecast."; return; }
    const lastDay = data.length ? { ...data[0], x: data[0].x.filter((t) => t >= f.x[0] - 6 * 3600) } : null;
    if (lastDay) lastDay.y = data[0].y.slice(data[0].x.length - lastDay.x.length);
    fchart.set({ series: lastDay ? [lastDay] : [], forecast: f });
    fcNote.textContent = `Model: ${f.model}; shaded: 80 % and 95 % prediction intervals.`;
    // 6 h ahead of minutes of history (a new host) is drawn all the same: say what it rests on
    if (f.historyS < horizonS) fcNote.textContent += ` Fitted on only ${formatDuration(f.historyS)} of history: 6 h ahead is further than it reaches back, an extrapolation.`;
  }).catch((e) => { fcNote.textContent = `Forecast: ${e.message}`; });
  const name = data.length ? data[0].labels.__name__ : null;
  const known = name && CAPACITY[name];
  if (known) {
    const planning = el("p", { class: "muted", text: "Planning…" });
    capPanel.append(planning);
    const labels = { ...data[0].labels };
    delete labels.__name__;
    const match = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
    api("/api/v1/performance/capacity/analyze", { method: "POST", signal, body: { usage: s, capacity: `${known[0]}{${match}}`, usage_kind: known[1], resource: known[2], horizon_days: 30, step: "5m", history: "7d" } })
      .then((doc) => {
        planning.remove();
        const res = doc.data.resources[0];
        if (!res) { capPanel.append(el("p", { class: "empty", text: (doc.data.skipped[0] || {}).reason || "Cannot plan this resource." })); return; }
        const b = res.scenarios[0];
        capPanel.append(el("p", { text: res.summary }),
          el("table", {}, el("tbody", {},
            el("tr", {}, el("th", { scope: "row", text: "Used now" }), el("td", { class: "num", text: pct(res.utilisation_now) })),
            el("tr", {}, el("th", { scope: "row", text: "Runs out P10" }), el("td", { class: "num", text: formatDays(b.exhaustion.p10 && b.exhaustion.p10.days) })),
            el("tr", {}, el("th", { scope: "row", text: "Runs out P50" }), el("td", { class: "num", text: formatDays(b.exhaustion.p50 && b.exhaustion.p50.days) })),
            el("tr", {}, el("th", { scope: "row", text: "Runs out P90" }), el("td", { class: "num", text: formatDays(b.exhaustion.p90 && b.exhaustion.p90.days) })))));
      }).catch((e) => { planning.remove(); capPanel.append(el("p", { class: "error", text: e.message })); });
  } else {
    capPanel.append(el("p", { class: "muted", text: "Capacity outlooks are planned for disks (node_filesystem_avail_bytes) and memory (node_memory_MemAvailable_bytes); see the Capacity page for any resource." }));
  }
  if (data.length) correlated(corrPanel, data[0].labels, s, r, from, signal);
  else corrPanel.append(el("p", { class: "empty", text: "No data to correlate." }));
  if (to === "now") live.subscribe(["samples"], [s], (msg) => {
    if (msg.type === "samples") for (const q of msg.series) hist.append(keyOf(q.labels), q.timestamps.map((t) => t / 1000), q.values);
  });
  return () => { hist.destroy(); fchart.destroy(); live.unsubscribe(); };
}

/** Series of the same host (else service, else job) that moved with this one, over the page's
 * range: the correlation analysis API (Pearson/Spearman at the best lag, false-discovery control). */
function correlated(panel, labels, target, r, from, signal) {
  const scope = ["instance", "service", "job"].find((k) => labels[k]);
  if (!scope) { panel.append(el("p", { class: "empty", text: "No instance, service or job label to look for neighbours by." })); return; }
  const value = String(labels[scope]).replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  const note = el("p", { class: "small muted", role: "status", text: `Correlating with the series of ${scope} ${labels[scope]}…` });
  panel.append(note);
  // for="": not the detector's own outputs (anomaly_score, yhat… carry the source in "for")
  const body = { target, selectors: [`{${scope}="${value}",for=""}`], start: r.start, end: r.end, max_lag: "30m", limit: 10000, matrix: false };
  api("/api/v1/performance/analyze/correlations", { method: "POST", body, signal }).then((doc) => {
    const d = doc.data;
    const own = seriesName(labels);
    const rows = d.pairs
      .filter((p) => (p.a === 0 || p.b === 0) && p.xcorr !== null)
      .map((p) => {
        const other = p.a === 0 ? p.b : p.a;
        // lag > 0: b follows a; from this series' side, the other one follows when it is b
        const lag = p.a === 0 ? p.lag_seconds : -p.lag_seconds;
        return { labels: d.series[other].labels, p, lag };
      })
      .filter((x) => seriesName(x.labels) !== own)
      .sort((x, y) => Number(y.p.significant) - Number(x.p.significant) || Math.abs(y.p.xcorr) - Math.abs(x.p.xcorr))
      .slice(0, 10);
    note.textContent = `${d.series.length - 1} series of ${scope} ${labels[scope]} compared over ${formatDuration((d.end - d.start) / 1000)} (step ${formatDuration(d.step_seconds)}); ${d.significant_pairs} significant pairs at a ${Math.round(d.alpha * 100)} % false-discovery rate.`;
    if (!rows.length) {
      // say why nothing was compared (a series of a few minutes, a flat one) rather than "nothing moved"
      const mine = d.series[0] && !d.series[0].usable ? `This series cannot be correlated: ${d.series[0].reason}.` : null;
      const none = d.why_no_pairs ? `Nothing compared: ${d.why_no_pairs}.` : "Nothing moved with this series.";
      panel.append(el("p", { class: "empty", id: "correlated-empty", text: mine || none }));
      return;
    }
    panel.append(el("div", { class: "table-wrap" }, el("table", { id: "correlated-table", class: "stack" },
      el("thead", {}, el("tr", {}, ["Series", "Correlation", "Lag", "Significant"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((x) => el("tr", {},
        el("td", { "data-label": "Series" }, el("div", {}, el("a", { class: "mono", href: `/series?s=${encodeURIComponent(selectorOf(x.labels))}&from=${encodeURIComponent(from)}`, "data-link": true, text: seriesName(x.labels) }))),
        el("td", { "data-label": "Correlation", class: "num" }, el("div", { text: x.p.xcorr.toFixed(2) })),
        el("td", { "data-label": "Lag" }, el("div", { text: x.lag === 0 ? "together" : x.lag > 0 ? `follows by ${formatDuration(x.lag)}` : `leads by ${formatDuration(-x.lag)}` })),
        el("td", { "data-label": "Significant" }, el("div", { text: x.p.significant ? `yes (q = ${x.p.q_value.toPrecision(2)})` : "no" }))))))));
  }).catch((e) => { if (e.name !== "AbortError") note.textContent = `Correlation: ${e.message}`; });
}
