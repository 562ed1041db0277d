// Explore: a PromQL box with autocomplete, a time range, the anomaly band and markers, a
// forecast on request, live updates; the query and range live in the URL.
import { attach } from "../autocomplete.js";
import { TimeChart } from "../chart.js";
import { clear, el, selectorOf, seriesName } from "../format.js";
import { live } from "../live.js";
import { RANGES, formatTime } from "../time.js";
import { anomalies, forecast, isSelector, keyOf, queryRange, rangeOf } from "./common.js";

let firstChart = true;

export async function render(main, { signal, params, navigate }) {
  const q = params.get("q") || "";
  const from = params.get("from") || "now-6h";
  const to = params.get("to") || "now";
  const showBand = params.get("band") !== "0";
  const showForecast = params.get("forecast") === "1";
  main.append(el("h1", { text: "Explore" }));
  const input = el("textarea", { id: "query", name: "query", rows: "1", spellcheck: "false", autocomplete: "off", placeholder: 'e.g. node_load1 or rate(http_requests_total[5m])' });
  input.value = q;
  const range = el("select", { id: "range", name: "range" }, RANGES.map(([v, label]) => el("option", { value: v, text: label, selected: from === `now-${v}` && to === "now" })));
  const custom = !RANGES.some(([v]) => from === `now-${v}`) || to !== "now";
  if (custom) range.append(el("option", { value: "custom", text: "Custom", selected: true }));
  const fromIn = el("input", { id: "from", name: "from", value: from, size: "14" });
  const toIn = el("input", { id: "to", name: "to", value: to, size: "10" });
  const band = el("input", { type: "checkbox", id: "band", checked: showBand });
  const fc = el("input", { type: "checkbox", id: "forecast", checked: showForecast });
  range.addEventListener("change", () => { if (range.value !== "custom") { fromIn.value = `now-${range.value}`; toIn.value = "now"; run(); } });
  const run = () => {
    const p = new URLSearchParams({ q: input.value.trim(), from: fromIn.value.trim() || "now-6h", to: toIn.value.trim() || "now" });
    if (!band.checked) p.set("band", "0");
    if (fc.checked) p.set("forecast", "1");
    navigate(`/explore?${p}`, { replace: false });
  };
  const form = el("form", { class: "panel query", role: "search", onsubmit: (e) => { e.preventDefault(); run(); } },
    el("div", { class: "query-row" },
      el("div", { class: "field grow" }, el("label", { for: "query", text: "PromQL query" }), input),
      el("div", { class: "field" }, el("label", { for: "range", text: "Range" }), range),
      el("div", { class: "field" }, el("label", { for: "from", text: "From" }), fromIn),
      el("div", { class: "field" }, el("label", { for: "to", text: "To" }), toIn),
      el("button", { type: "submit", class: "primary", text: "Run" })),
    el("div", { class: "query-row" },
      el("label", { class: "check", for: "band" }, band, "Anomaly band and markers"),
      el("label", { class: "check", for: "forecast" }, fc, "Forecast (80/95 %)")));
  main.append(form);
  attach(input, run);
  const panel = el("section", { class: "panel", "aria-labelledby": "chart-title" });
  const title = el("h2", { id: "chart-title", text: q ? "Result" : "Type a query to start" });
  const chartBox = el("div", { class: "chart", id: "explore-chart" });
  const note = el("p", { class: "small muted", role: "status" });
  const events = el("div", { id: "anomaly-events" });
  panel.append(title, chartBox, note, events);
  main.append(panel);
  if (!q) { input.focus(); return () => {}; }

  const chart = new TimeChart(chartBox, { height: window.innerWidth < 600 ? 240 : 340, label: q });
  let r;
  try { r = rangeOf(from, to); } catch (e) { note.textContent = e.message; note.className = "error"; return () => chart.destroy(); }
  let data;
  try { data = await queryRange(q, r, signal); }
  catch (e) { if (e.name === "AbortError") return () => chart.destroy(); note.textContent = e.message; note.className = "error"; return () => chart.destroy(); }
  if (!data.length) { note.textContent = "No data in this range."; return () => chart.destroy(); }
  const points = chart.set({ series: data });
  if (points && firstChart) { firstChart = false; performance.mark("perfintel:first-chart"); }
  title.textContent = `${data.length} series`;
  note.textContent = data.length > chart.maxSeries ? `Showing ${chart.maxSeries} of ${data.length} series.` : "";
  const extras = [];
  const sel = isSelector(q) ? q : data.length === 1 && data[0].labels.__name__ ? selectorOf(data[0].labels) : null;
  if (sel && showBand) extras.push(anomalies(sel, r, signal).then((a) => ({ a })).catch((e) => ({ err: `Anomaly band: ${e.message}` })));
  if (sel && showForecast) extras.push(forecast(sel, (r.end - r.start) * 0.25, signal).then((f) => ({ f })).catch((e) => ({ err: `Forecast: ${e.message}` })));
  if (!sel && (showBand || showForecast)) note.textContent = "The anomaly band and the forecast need a series selector (or a query of one named series).";
  const results = await Promise.all(extras);
  let a = null;
  let f = null;
  const errs = [];
  for (const res of results) { if (res.a) a = res.a; if (res.f) f = res.f; if (res.err) errs.push(res.err); }
  if (a || f) chart.set({ series: data, band: a && a.band, markers: a ? a.markers : [], forecast: f });
  if (errs.length) note.textContent = errs.join(" · ");
  if (a) {
    clear(events);
    events.append(el("h3", { text: a.events.length ? `${a.events.length} anomalies` : "No anomalies in this range" }));
    if (a.events.length) events.append(el("ul", { class: "reasons" }, a.events.slice(0, 20).map((ev) =>
      el("li", {}, el("a", { href: `/series?s=${encodeURIComponent(selectorOf(ev.labels))}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, "data-link": true, text: seriesName(ev.labels) }), ` ${formatTime(ev.peak_time)}: ${ev.explanation}`))));
  }
  if (f) note.textContent = `${note.textContent} Forecast model: ${f.model}.`.trim();
  if (sel && to === "now") {
    live.subscribe(["samples"], [sel], (msg) => {
      if (msg.type === "subscribed") chartBox.dataset.live = chartBox.dataset.live || "0";
      if (msg.type !== "samples") return;
      for (const s of msg.series) chart.append(keyOf(s.labels), s.timestamps.map((t) => t / 1000), s.values);
    });
  }
  return () => { chart.destroy(); live.unsubscribe(); };
}
