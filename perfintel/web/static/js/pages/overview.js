// Overview: health, top anomalies with sparklines, capacity risks, ingest and perfintel's own health.
import { api } from "../api.js";
import { sparkline } from "../chart.js";
import { bytes, clear, el, num, pct, selectorOf, seriesName, statusClass } from "../format.js";
import { live } from "../live.js";
import { formatDays, formatDuration, formatTime } from "../time.js";

function healthItem(h) {
  const reasons = h.reasons.filter((r) => r.penalty > 0);
  return el("li", {},
    el("details", {},
      el("summary", {},
        el("span", { text: h.name }),
        el("span", { class: `score ${statusClass(h.status)}`, text: `${h.score}`, "aria-label": `score ${h.score}, ${h.status}` })),
      el("ul", { class: "reasons" },
        reasons.length ? reasons.map((r) => el("li", { text: `${r.detail} — −${r.penalty}` })) : el("li", { text: "Nothing costs points." }))));
}

function stat(label, value, extra = null) {
  return el("div", { class: "panel span-3 stat" }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }), extra);
}

function badge(severity) {
  const cls = severity === "critical" ? "status-critical" : severity === "warning" ? "status-warning" : "muted";
  return el("span", { class: `badge ${cls}`, text: severity });
}

/** Active alerts and incidents from the realtime answer: counts, then the top items. */
function alertsPanel(a) {
  const panel = el("section", { class: "panel span-12", "aria-labelledby": "h-alerts", id: "alerts-panel" },
    el("div", { class: "panel-head" },
      el("h2", { id: "h-alerts", text: `Active alerts (${a.firing})` }),
      el("a", { href: "/alerts", "data-link": true, class: "small", text: "Alerts and incidents" })));
  const bs = a.by_severity;
  panel.append(el("p", { class: "small", id: "alerts-counts" },
    `${bs.critical || 0} critical, ${bs.warning || 0} warning, ${bs.info || 0} other firing · `,
    `${a.incidents.open} open incidents, ${a.incidents.acknowledged} acknowledged · `,
    `${a.silenced} silenced, ${a.inhibited} inhibited`));
  if (!a.firing && !a.top_incidents.length) { panel.append(el("p", { class: "empty", text: "No alert is firing." })); return panel; }
  const cols = el("div", { class: "detail-cols" });
  cols.append(el("div", {}, el("h3", { text: "Incidents" }), a.top_incidents.length ? el("ul", { class: "member-list" }, a.top_incidents.map((i) => el("li", {},
    badge(i.severity), " ", el("a", { href: `/incidents/${encodeURIComponent(i.id)}`, "data-link": true, text: i.title || i.id }),
    el("span", { class: "muted small", text: ` ${i.state}${i.escalationLevel ? `, L${i.escalationLevel}` : ""}, since ${formatTime(i.openedAt * 1000)}` })))) : el("p", { class: "empty", text: "None open." })));
  cols.append(el("div", {}, el("h3", { text: "Alerts" }), el("ul", { class: "member-list" }, a.top_alerts.map((x) => {
    const labels = { ...x.labels };
    const name = labels.alertname || x.fingerprint;
    delete labels.alertname;
    delete labels.severity;
    return el("li", {}, badge(x.severity), " ", el("strong", { text: name }), " ", el("span", { class: "muted small mono", text: seriesName(labels) }),
      x.summary ? el("div", { class: "small", text: x.summary }) : null);
  }))));
  panel.append(cols);
  return panel;
}

/** Why nothing is listed while series are new: the detector scores a series once its
 * history spans its warm-up (`anomaly_warmup`: seconds, series, warming, first_ready). */
function warmupNote(w) {
  const span = w.seconds % 3600 === 0 ? `${w.seconds / 3600} h` : formatDuration(w.seconds);
  const when = w.first_ready ? formatTime(w.first_ready) : null;
  const text = w.warming === w.series // nothing is scored yet
    ? `Anomaly scores start once a series has ${span} of history${when ? `: the first of these ${w.series} series at ${when}` : ""}.`
    : `${w.warming} of ${w.series} series are still warming up: anomaly scores start once a series has ${span} of history${when ? ` (the next at ${when})` : ""}.`;
  return el("p", { class: w.warming === w.series ? "empty" : "muted small", id: "anomaly-warmup", "data-warming": String(w.warming), text });
}

export async function render(main, { signal }) {
  main.append(el("h1", { text: "Overview" }));
  const root = el("div", { class: "grid", id: "overview" });
  main.append(root);
  const draw = (doc) => {
    const d = doc.data;
    const alerts = d.alerts ? alertsPanel(d.alerts) : null; // null while alerting is off
    clear(root);
    const o = d.health.overall;
    root.append(
      stat("Overall health", `${o.score}`, el("span", { class: `badge ${statusClass(o.status)}`, text: o.status })),
      stat("Ingest", `${num(d.ingest.samples_per_second)} /s`, el("span", { class: "label", text: `${num(d.ingest.series)} series` })),
      stat("Storage", bytes(d.ingest.disk_bytes), el("span", { class: "label", text: d.ingest.disk_growth_bytes_per_hour === null ? "growth: measuring" : `+${bytes(d.ingest.disk_growth_bytes_per_hour)}/h` })),
      stat("perfintel", `${d.perfintel.score}`, el("span", { class: `badge ${statusClass(d.perfintel.status)}`, text: d.perfintel.status })),
    );
    const services = el("section", { class: "panel span-6", "aria-labelledby": "h-services" }, el("h2", { id: "h-services", text: "Services" }));
    services.append(d.health.services.length ? el("ul", { class: "health-list" }, d.health.services.map(healthItem)) : el("p", { class: "empty", text: "No services seen yet (series with a service label)." }));
    const hosts = el("section", { class: "panel span-6", "aria-labelledby": "h-hosts" }, el("h2", { id: "h-hosts", text: "Hosts" }));
    hosts.append(d.health.hosts.length ? el("ul", { class: "health-list" }, d.health.hosts.map(healthItem)) : el("p", { class: "empty", text: "No hosts seen yet (node exporter series)." }));
    if (alerts) root.append(alerts);
    root.append(services, hosts);

    const hours = Math.round(d.window_seconds / 3600);
    const anomalies = el("section", { class: "panel span-8", "aria-labelledby": "h-anomalies" }, el("h2", { id: "h-anomalies", text: `Top anomalies, last ${hours} h` }));
    const warm = d.anomaly_warmup;
    const allWarming = warm && warm.series > 0 && warm.warming === warm.series;
    if (!d.anomalies.length && !(allWarming && d.refreshed.anomalies)) anomalies.append(el("p", { class: "empty", text: d.refreshed.anomalies ? "No anomalies in this window." : "Looking for anomalies…" }));
    if (!d.anomalies.length && warm && warm.warming) anomalies.append(warmupNote(warm));
    const list = el("ol", { class: "anomaly-list" });
    for (const a of d.anomalies) {
      const spark = el("div", { class: "spark" });
      const href = `/series?s=${encodeURIComponent(selectorOf(a.labels))}&from=now-${hours}h`;
      list.append(el("li", {},
        el("div", {},
          el("a", { href, "data-link": true, class: "series-name", text: seriesName(a.labels) }),
          el("div", { class: "explanation" }, el("span", { class: `badge ${a.severity === "high" ? "status-critical" : "status-warning"}`, text: a.severity }), " ", `${formatTime(a.peak_time)} — ${a.explanation}`)),
        spark));
      const ys = a.sparkline.values;
      requestAnimationFrame(() => sparkline(spark, ys.map((_, i) => i), ys, { label: `last ${hours} h of ${seriesName(a.labels)}` }));
    }
    if (d.anomalies.length) anomalies.append(list);
    const capacity = el("section", { class: "panel span-4", "aria-labelledby": "h-capacity" }, el("h2", { id: "h-capacity", text: "Capacity risks" }));
    const projected = d.capacity.filter((r) => r.days_p50 !== null);
    const risks = projected.filter((r) => !r.beyond_history).slice(0, 8);
    const unsure = projected.filter((r) => r.beyond_history).length;
    if (!risks.length) capacity.append(el("p", { class: "empty", text: d.refreshed.capacity ? "Nothing runs out within the horizon." : "Planning capacity…" }));
    else capacity.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: "Resource" }), el("th", { class: "num", text: "P50" }), el("th", { class: "num", text: "P10" }))),
      el("tbody", {}, risks.map((r) => el("tr", {},
        el("td", {}, `${r.resource} `, el("span", { class: "muted small", text: r.host || r.labels.instance || "" })),
        el("td", { class: "num", text: formatDays(r.days_p50) }),
        el("td", { class: "num", text: formatDays(r.days_p10) })))))));
    if (unsure) capacity.append(el("p", { class: "muted small", "data-beyond-history": String(unsure), text: `${unsure} more projected from under half a day of history: listed once it is longer (a rise may be the daily cycle).` }));
    capacity.append(el("p", { class: "small" }, el("a", { href: "/capacity", "data-link": true, text: "All resources" })));
    root.append(anomalies, capacity);

    const self = el("section", { class: "panel span-12", "aria-labelledby": "h-self" }, el("h2", { id: "h-self", text: "perfintel itself" }));
    const f = d.ingest;
    self.append(el("div", { class: "table-wrap" }, el("table", {}, el("tbody", {},
      el("tr", {}, el("th", { scope: "row", text: "Last batch" }), el("td", { text: f.seconds_since_last_batch === null ? "—" : `${num(f.seconds_since_last_batch)} s ago` }),
        el("th", { scope: "row", text: "Write head" }), el("td", { text: `${num(f.head_samples)} samples` })),
      el("tr", {}, el("th", { scope: "row", text: "Detector queue" }), el("td", { text: `${f.detector_queue} / ${f.detector_queue_capacity}` }),
        el("th", { scope: "row", text: "Stream clients" }), el("td", { text: `${f.stream_clients}` })),
      el("tr", {}, el("th", { scope: "row", text: "Health reasons" }), el("td", { colspan: "3", text: d.perfintel.reasons.filter((r) => r.penalty > 0).map((r) => r.detail).join("; ") || "all fine" }))))));
    root.append(self);
    root.dataset.loaded = "1";
  };
  const load = async () => {
    try {
      draw(await api("/api/v1/performance/dashboard/realtime", { signal }));
    }
    catch (e) { if (e.name !== "AbortError") { clear(root); root.append(el("p", { class: "error", role: "alert", text: `Cannot load the overview: ${e.message}` })); } }
  };
  await load();
  const timer = setInterval(load, 5000);
  live.subscribe(["health", "alerts"], [], () => load());
  return () => { clearInterval(timer); live.unsubscribe(); };
}
