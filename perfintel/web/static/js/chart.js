// uPlot wrappers: time-series charts with an anomaly band, anomaly markers, a forecast with
// 80/95 % bands, live appends; and sparklines. Colours come from the CSS theme.
import { el, num } from "./format.js";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const palette = () => [1, 2, 3, 4, 5, 6, 7, 8].map((i) => css(`--line${i}`));

function axes() {
  const stroke = css("--muted");
  const grid = { stroke: css("--grid"), width: 1 };
  return [
    { stroke, grid, ticks: grid, space: 90 },
    { stroke, grid, ticks: grid, size: 56, values: (u, vals) => vals.map((v) => num(v)) },
  ];
}

function tooltipAt(x, y, html) {
  const tip = document.getElementById("tooltip");
  if (!tip) return;
  if (html === null) { tip.hidden = true; return; }
  tip.innerHTML = "";
  tip.append(html);
  tip.hidden = false;
  const w = tip.offsetWidth;
  tip.style.left = `${Math.max(4, Math.min(window.innerWidth - w - 8, x + 12))}px`;
  tip.style.top = `${y + 14}px`;
}

/**
 * A time chart. data = {series: [{key, label, x: [s...], y: [...]}], band: {x, lower, upper},
 * markers: [{t, v, text}], forecast: {x, mean, lo80, hi80, lo95, hi95, label}}; a forecast
 * without lo95/hi95 draws one band (lo80–hi80) around its dashed line.
 */
export class TimeChart {
  constructor(container, { height = 300, label = "Chart", maxSeries = 12 } = {}) {
    this.container = container;
    this.height = height;
    this.maxSeries = maxSeries;
    this.label = label;
    this.plot = null;
    this.data = null;
    this.markers = [];
    this.resize = new ResizeObserver(() => this.plot && this.plot.setSize(this.size()));
    this.resize.observe(container);
  }

  size() {
    return { width: Math.max(200, this.container.clientWidth), height: this.height };
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }

  /** Render; returns the number of data points drawn. */
  set(data) {
    this.data = {
      series: data.series.slice(0, this.maxSeries).map((s) => ({ ...s, map: new Map(s.x.map((t, i) => [t, s.y[i]])) })),
      band: data.band || null,
      forecast: data.forecast || null,
    };
    this.markers = data.markers || [];
    return this.redraw();
  }

  /** Live samples of one series (by key): appended, the window sliding to keep its width. */
  append(key, xs, ys) {
    if (!this.data) return 0;
    const s = this.data.series.find((q) => q.key === key);
    if (!s) return 0;
    let added = 0;
    this.container.dataset.live = String((+this.container.dataset.live || 0) + xs.length);
    for (let i = 0; i < xs.length; i++) {
      if (!s.map.has(xs[i])) added++;
      s.map.set(xs[i], ys[i]);
    }
    if (added) this.redraw(true);
    return added;
  }

  keys() {
    return this.data ? this.data.series.map((s) => s.key) : [];
  }

  redraw(sliding = false) {
    const d = this.data;
    const xs = new Set();
    for (const s of d.series) for (const t of s.map.keys()) xs.add(t);
    if (d.band) d.band.x.forEach((t) => xs.add(t));
    if (d.forecast) d.forecast.x.forEach((t) => xs.add(t));
    let x = [...xs].sort((a, b) => a - b);
    if (sliding && this.span && x.length) {
      const end = x[x.length - 1];
      x = x.filter((t) => t >= end - this.span);
    } else if (x.length) {
      this.span = x[x.length - 1] - x[0];
    }
    const cols = [x];
    const colors = palette();
    const series = [{}];
    const bands = [];
    d.series.forEach((s, i) => {
      cols.push(x.map((t) => (s.map.has(t) ? s.map.get(t) : null)));
      series.push({ label: s.label, stroke: colors[i % colors.length], width: 1.6, spanGaps: true, points: { show: false } });
    });
    const lookup = (xsrc, ysrc) => {
      const m = new Map(xsrc.map((t, i) => [t, ysrc[i]]));
      return x.map((t) => (m.has(t) ? m.get(t) : null));
    };
    if (d.band) {
      const hi = cols.length;
      cols.push(lookup(d.band.x, d.band.upper));
      series.push({ label: "expected upper", stroke: css("--band"), width: 1, spanGaps: true, points: { show: false } });
      cols.push(lookup(d.band.x, d.band.lower));
      series.push({ label: "expected lower", stroke: css("--band"), width: 1, spanGaps: true, points: { show: false } });
      bands.push({ series: [hi, hi + 1], fill: css("--band") });
    }
    if (d.forecast) {
      const f = d.forecast;
      const faint = { width: 0, spanGaps: true, points: { show: false } };
      if (f.lo95 && f.hi95) {
        const base = cols.length;
        cols.push(lookup(f.x, f.hi95), lookup(f.x, f.lo95));
        series.push({ ...faint, label: "95 % upper" }, { ...faint, label: "95 % lower" });
        bands.push({ series: [base, base + 1], fill: css("--band2") });
      }
      const base = cols.length;
      cols.push(lookup(f.x, f.hi80), lookup(f.x, f.lo80), lookup(f.x, f.mean));
      series.push({ ...faint, label: "80 % upper" }, { ...faint, label: "80 % lower" });
      series.push({ label: f.label || "forecast", stroke: css("--forecast"), width: 1.6, dash: [6, 4], spanGaps: true, points: { show: false } });
      bands.push({ series: [base, base + 1], fill: css("--band") });
    }
    const markers = this.markers;
    const self = this;
    const opts = {
      ...this.size(),
      title: "",
      series,
      bands,
      axes: axes(),
      legend: { show: false },
      cursor: { points: { show: false }, drag: { x: true, y: false } },
      scales: { x: { time: true } },
      hooks: {
        draw: [(u) => self.drawMarkers(u)],
        setCursor: [(u) => self.hover(u)],
      },
    };
    if (this.plot) this.plot.destroy();
    this.container.innerHTML = "";
    this.plot = new uPlot(opts, cols, this.container);
    const canvas = this.container.querySelector("canvas");
    if (canvas) {
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `${this.label}: ${d.series.length} series, ${markers.length} anomalies`);
    }
    let points = 0;
    for (let i = 1; i <= d.series.length; i++) points += cols[i].filter((v) => v !== null).length;
    this.container.dataset.points = String(points);
    this.container.dataset.series = String(d.series.length);
    this.container.dataset.markers = String(markers.length);
    return points;
  }

  drawMarkers(u) {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = css("--marker");
    ctx.strokeStyle = css("--panel");
    ctx.lineWidth = 2;
    this.markerPos = [];
    for (const m of this.markers) {
      if (m.v === null || m.v === undefined) continue;
      const cx = u.valToPos(m.t, "x", true);
      const cy = u.valToPos(m.v, "y", true);
      if (!Number.isFinite(cx) || !Number.isFinite(cy)) continue;
      ctx.beginPath();
      ctx.arc(cx, cy, 5 * devicePixelRatio, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      this.markerPos.push({ x: cx / devicePixelRatio, y: cy / devicePixelRatio, m });
    }
    ctx.restore();
  }

  hover(u) {
    const { left, top } = u.cursor;
    if (left === undefined || left < 0 || !this.markerPos) { tooltipAt(0, 0, null); return; }
    let best = null;
    for (const p of this.markerPos) {
      const dist = Math.hypot(p.x - left, p.y - top);
      if (dist < 14 && (!best || dist < best.dist)) best = { ...p, dist };
    }
    if (!best) { tooltipAt(0, 0, null); return; }
    const rect = u.over.getBoundingClientRect();
    tooltipAt(rect.left + best.x, rect.top + best.y, el("div", {}, el("strong", { text: best.m.title || "Anomaly" }), el("div", { text: best.m.text })));
  }
}

/** A small line without axes (overview anomalies). Returns the number of points drawn. */
export function sparkline(container, xs, ys, { label = "sparkline", color = null } = {}) {
  const opts = {
    width: container.clientWidth || 140,
    height: container.clientHeight || 36,
    series: [{}, { stroke: color || css("--line1"), width: 1.4, spanGaps: true, points: { show: false } }],
    axes: [{ show: false }, { show: false }],
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false } },
  };
  const plot = new uPlot(opts, [xs, ys], container);
  const canvas = container.querySelector("canvas");
  if (canvas) { canvas.setAttribute("role", "img"); canvas.setAttribute("aria-label", label); }
  container.dataset.points = String(ys.filter((v) => v !== null).length);
  return plot;
}
