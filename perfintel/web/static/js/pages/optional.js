// Panels of APIs other parts of perfintel add later: each appears only once its API answers
// (a 404 keeps it hidden). Active alerts read the Alertmanager API v2 wire format.
import { api } from "../api.js";
import { el, seriesName } from "../format.js";
import { formatTime } from "../time.js";

/** The active alerts panel, or null while the alerting API does not exist. */
export async function activeAlerts(signal) {
  let alerts;
  try {
    alerts = await api("/api/v2/alerts", { params: { active: "true", silenced: "false", inhibited: "false" }, signal });
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
  if (!Array.isArray(alerts)) return null;
  const panel = el("section", { class: "panel span-12", "aria-labelledby": "h-alerts", id: "alerts-panel" },
    el("h2", { id: "h-alerts", text: `Active alerts (${alerts.length})` }));
  if (!alerts.length) { panel.append(el("p", { class: "empty", text: "No alert is firing." })); return panel; }
  const order = { critical: 0, error: 1, warning: 2, info: 3 };
  alerts.sort((a, b) => (order[a.labels.severity] ?? 9) - (order[b.labels.severity] ?? 9) || a.startsAt.localeCompare(b.startsAt));
  panel.append(el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ["Alert", "Severity", "Since", "Summary"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, alerts.slice(0, 50).map((a) => {
      const labels = { ...a.labels };
      const name = labels.alertname;
      delete labels.alertname;
      return el("tr", {},
        el("td", {}, el("strong", { text: name }), " ", el("span", { class: "muted small", text: seriesName(labels) })),
        el("td", { text: a.labels.severity || "—" }),
        el("td", { text: formatTime(Date.parse(a.startsAt)) }),
        el("td", { text: (a.annotations && (a.annotations.summary || a.annotations.description)) || "" }));
    })))));
  return panel;
}
