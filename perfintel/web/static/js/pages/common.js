// What the Explore and Series pages share: loading a range, the anomaly band and the forecast.
import { api } from "../api.js";
import { seriesName } from "../format.js";
import { parseTime, stepFor } from "../time.js";

export function keyOf(labels) {
  const sorted = {};
  for (const k of Object.keys(labels).sort()) sorted[k] = labels[k];
  return seriesName(sorted);
}

export function isSelector(q) {
  return /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*\s*)?(\{[^{}]*\})?\s*$/.test(q) && q.trim() !== "";
}

export function rangeOf(from, to) {
  const now = Date.now() / 1000;
  const start = parseTime(from, now);
  const end = parseTime(to, now);
  if (!(end > start)) throw new Error("the range ends before it starts");
  return { start, end, step: stepFor(end - start) };
}

export async function queryRange(q, r, signal) {
  const doc = await api("/api/v1/query_range", { params: { query: q, start: r.start.toFixed(3), end: r.end.toFixed(3), step: r.step }, signal });
  return doc.data.result.map((s) => ({
    key: keyOf(s.metric),
    labels: s.metric,
    label: seriesName(s.metric),
    x: s.values.map((p) => p[0]),
    y: s.values.map((p) => (p[1] === "NaN" ? null : parseFloat(p[1]))),
  }));
}

/** Anomaly band (of the first series) and markers (of all), from the detect API. */
export async function anomalies(selector, r, signal) {
  const doc = await api("/api/v1/performance/detect/anomalies", {
    method: "POST", body: { selector, start: r.start, end: r.end }, signal,
  });
  const series = doc.data.series;
  const markers = [];
  const events = [];
  for (const s of series) {
    for (const a of s.anomalies) {
      const m = { t: a.peak_time / 1000, v: a.peak_value, title: `${seriesName(s.labels)} · ${a.severity}`, text: a.explanation };
      markers.push(m);
      events.push({ ...a, labels: s.labels });
    }
  }
  let band = null;
  if (series.length) {
    const s = series[0];
    band = { x: s.timestamps.map((t) => t / 1000), lower: s.yhat_lower, upper: s.yhat_upper, key: keyOf(s.labels) };
  }
  return { band, markers, events };
}

/** A forecast of the first series matching `selector`, `horizonS` ahead, with 80/95 % bands. */
export async function forecast(selector, horizonS, signal) {
  const doc = await api("/api/v1/performance/predict/metrics", {
    method: "POST", body: { selector, horizon: `${Math.max(60, Math.round(horizonS))}s`, levels: [80, 95] }, signal,
  });
  const s = doc.data.series[0];
  if (!s) return null;
  return {
    x: s.timestamps.map((t) => t / 1000), mean: s.mean,
    lo80: s.bands["80"].lower, hi80: s.bands["80"].upper, lo95: s.bands["95"].lower, hi95: s.bands["95"].upper,
    model: s.model, labels: s.labels,
    // how far back what it was fitted on reaches: a forecast further ahead is an extrapolation
    historyS: s.history_points * doc.data.step_seconds,
  };
}
