// Alerts and incidents: what fires, the incidents it opened with their timeline and escalation
// level, acknowledge, silence an alert by its labels, and the silences with expire.
// Reads the incidents API and the Alertmanager API v2; updates over the stream's alerts topic.
import { api } from "../api.js";
import { clear, el, seriesName } from "../format.js";
import { live } from "../live.js";
import { formatDuration, formatTime, parseDuration } from "../time.js";

const RANK = { critical: 4, page: 4, error: 3, high: 3, warning: 2, warn: 2 };
const DURATIONS = [["1h", "1 hour"], ["2h", "2 hours"], ["4h", "4 hours"], ["12h", "12 hours"], ["1d", "1 day"], ["7d", "7 days"]];

function severityOf(labels) {
  const s = (labels && labels.severity) || "";
  return { text: s || "none", rank: RANK[s.toLowerCase()] || 0 };
}

function severityBadge(labels) {
  const s = severityOf(labels);
  const cls = s.rank >= 3 ? "status-critical" : s.rank === 2 ? "status-warning" : "muted";
  return el("span", { class: `badge ${cls}`, text: s.text });
}

function since(seconds) {
  return `${formatTime(seconds * 1000)} (${formatDuration(Date.now() / 1000 - seconds)} ago)`;
}

function level(inc) {
  const e = inc.escalation;
  if (!e) return el("span", { class: "muted", text: "no policy" });
  const text = e.level ? `L${e.level}` : "L1 pending";
  return el("span", { class: "level", title: `escalation policy ${e.policy}${e.stopped ? `, stopped: ${e.stopped}` : ""}`, text: e.stopped ? `${text} (${e.stopped})` : text });
}

const STATE_CLASS = { open: "status-critical", firing: "status-critical", acknowledged: "status-warning", silenced: "muted", inhibited: "muted", resolved: "status-ok" };
const SILENCE_CLASS = { active: "status-ok", pending: "status-warning", expired: "muted" };

function stateBadge(state, classes = STATE_CLASS) {
  return el("span", { class: `badge ${classes[state] || "muted"}`, text: state });
}

// one wrapper per cell: on a phone the cell is a two-column grid (its label, its content)
function cell(label, ...children) {
  return el("td", { "data-label": label, class: label === "Actions" ? "actions" : null }, el("div", {}, ...children));
}

function incidentSeverity(inc) {
  let best = { text: "none", rank: -1 };
  for (const a of Array.isArray(inc.alerts) ? inc.alerts : []) {
    const s = severityOf(a.labels);
    if (s.rank > best.rank) best = s;
  }
  return { severity: best.rank >= 0 ? best.text : "none" };
}

// Open and acknowledged incidents asked for by state (an old open one is not pushed out of
// the list by newer resolved ones); the newest 100 of any state too when resolved are shown.
async function loadAll(signal, showResolved) {
  const incidents = (state, limit) => api("/api/v1/incidents", { params: { state, limit }, signal }).then((d) => d.data);
  const [open, acked, recent, alerts, silences] = await Promise.all([
    incidents("open", 500),
    incidents("acknowledged", 500),
    showResolved ? incidents(null, 100) : [],
    api("/api/v2/alerts", { params: { active: "true", silenced: "true", inhibited: "true" }, signal }),
    api("/api/v2/silences", { signal }),
  ]);
  const byId = new Map([...open, ...acked, ...recent].map((i) => [i.id, i]));
  const all = [...byId.values()].sort((a, b) => b.openedAt - a.openedAt);
  return { incidents: all, alerts, silences };
}

export async function render(main, { signal, params }) {
  const selected = location.pathname.startsWith("/incidents/") ? decodeURIComponent(location.pathname.slice("/incidents/".length)) : null;
  main.append(el("h1", { text: "Alerts and incidents" }));
  const note = el("p", { class: "small", role: "status", id: "alerts-status" });
  const root = el("div", { class: "grid", id: "alerts-page" });
  main.append(note, root);
  const showResolved = params.get("resolved") === "1";

  const stats = el("div", { class: "span-12 stat-row" });
  const incPanel = el("section", { class: "panel span-12", "aria-labelledby": "h-incidents" });
  const detail = el("section", { class: "panel span-12", "aria-labelledby": "h-detail", id: "incident-detail", hidden: true });
  const alertPanel = el("section", { class: "panel span-12", "aria-labelledby": "h-alert-list" });
  const silencePanel = el("section", { class: "panel span-12", "aria-labelledby": "h-silences" });
  root.append(stats, incPanel, detail, alertPanel, silencePanel);
  const dialog = silenceDialog();
  main.append(dialog.node);

  let state = null;
  let version = 0;
  const say = (text, error = false) => { note.textContent = text; note.classList.toggle("error", error); };

  // done: what happened; doing: what was tried (a 403 says the token lacks the write scope)
  const act = async (done, doing, fn) => {
    try { await fn(); say(done); await load(); }
    catch (e) {
      if (e.name === "AbortError") return;
      say(`Cannot ${doing}: ${e.status === 403 ? "this token may only read (acknowledging and silencing need the write scope)" : e.message}`, true);
    }
  };
  const incidentUrl = (id, what) => `/api/v1/incidents/${encodeURIComponent(id)}/${what}`;
  const acknowledge = (id) => act(`Incident ${id} acknowledged.`, `acknowledge incident ${id}`, () => api(incidentUrl(id, "acknowledge"), { method: "POST", body: { by: "dashboard" }, signal }));
  const resolve = (id) => act(`Incident ${id} resolved.`, `resolve incident ${id}`, () => api(incidentUrl(id, "resolve"), { method: "POST", body: { by: "dashboard" }, signal }));
  const expire = (id) => act(`Silence ${id} expired.`, `expire silence ${id}`, () => api(`/api/v2/silence/${encodeURIComponent(id)}`, { method: "DELETE", signal }));
  const silence = async (alert, opener) => {
    const body = await dialog.ask(alert, opener);
    if (body) await act("Silence created.", "create the silence", () => api("/api/v2/silences", { method: "POST", body, signal }));
  };

  function drawStats(alerts, incidents, silences) {
    const firing = alerts.filter((a) => a.status.state === "active");
    const crit = firing.filter((a) => severityOf(a.labels).rank >= 3).length;
    const open = incidents.filter((i) => i.state === "open").length;
    const acked = incidents.filter((i) => i.state === "acknowledged").length;
    const active = silences.filter((s) => s.status.state === "active").length;
    clear(stats).append(
      el("div", { class: "panel stat" }, el("span", { class: "label", text: "Firing alerts" }), el("span", { class: "value", id: "count-firing", text: `${firing.length}` }), el("span", { class: "label", text: `${crit} critical · ${alerts.length - firing.length} muted` })),
      el("div", { class: "panel stat" }, el("span", { class: "label", text: "Open incidents" }), el("span", { class: "value", id: "count-open", text: `${open}` }), el("span", { class: "label", text: `${acked} acknowledged` })),
      el("div", { class: "panel stat" }, el("span", { class: "label", text: "Active silences" }), el("span", { class: "value", id: "count-silences", text: `${active}` })),
    );
  }

  function drawIncidents(incidents) {
    const shown = showResolved ? incidents : incidents.filter((i) => i.state !== "resolved");
    clear(incPanel).append(
      el("div", { class: "panel-head" },
        el("h2", { id: "h-incidents", text: showResolved ? "Incidents" : "Active incidents" }),
        el("a", { href: showResolved ? "/alerts" : "/alerts?resolved=1", "data-link": true, class: "small", text: showResolved ? "Active only" : "Include resolved" })));
    if (!shown.length) { incPanel.append(el("p", { class: "empty", text: "No incident is open." })); return; }
    const rows = shown.map((inc) => {
      const sev = incidentSeverity(inc);
      const actions = cell("Actions");
      if (inc.state === "open") actions.firstChild.append(el("button", { type: "button", "data-action": "ack", onclick: () => acknowledge(inc.id), "aria-label": `Acknowledge incident ${inc.title || inc.id}`, text: "Acknowledge" }));
      return el("tr", { "data-id": inc.id, "data-state": inc.state },
        cell("Severity", severityBadge({ severity: sev.severity === "none" ? "" : sev.severity })),
        cell("Incident", el("a", { href: `/incidents/${encodeURIComponent(inc.id)}`, "data-link": true, text: inc.title || inc.id })),
        cell("State", stateBadge(inc.state)),
        cell("Escalation", level(inc)),
        cell("Since", since(inc.openedAt)),
        cell("Alerts", `${Array.isArray(inc.alerts) ? inc.alerts.length : inc.alerts}`),
        actions);
    });
    incPanel.append(el("div", { class: "table-wrap" }, el("table", { id: "incidents-table", class: "stack" },
      el("thead", {}, el("tr", {}, ["Severity", "Incident", "State", "Escalation", "Since", "Alerts", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))));
  }

  async function drawDetail(id) {
    if (!id) { detail.hidden = true; return; }
    detail.hidden = false;
    let inc;
    try { inc = (await api(`/api/v1/incidents/${encodeURIComponent(id)}`, { signal })).data; }
    catch (e) { if (e.name === "AbortError") return; clear(detail).append(el("h2", { id: "h-detail", text: `Incident ${id}` }), el("p", { class: "error", text: e.message })); return; }
    const buttons = el("div", { class: "button-row" });
    if (inc.state === "open") buttons.append(el("button", { type: "button", class: "primary", "data-action": "ack", onclick: () => acknowledge(inc.id), text: "Acknowledge" }));
    if (inc.state !== "resolved") buttons.append(el("button", { type: "button", "data-action": "resolve", onclick: () => resolve(inc.id), text: "Resolve" }));
    buttons.append(el("a", { href: "/alerts", "data-link": true, class: "small", text: "Close" }));
    const esc = inc.escalation;
    const facts = el("dl", { class: "facts" },
      el("dt", { text: "State" }), el("dd", {}, stateBadge(inc.state)),
      el("dt", { text: "Opened" }), el("dd", { text: since(inc.openedAt) }),
      el("dt", { text: "Escalation" }), el("dd", {}, level(inc), esc && esc.nextAt && !esc.stopped ? ` · next level ${formatTime(esc.nextAt * 1000)}` : ""),
      inc.acknowledgedAt ? [el("dt", { text: "Acknowledged" }), el("dd", { text: `${formatTime(inc.acknowledgedAt * 1000)} by ${inc.acknowledgedBy || "someone"}` })] : null,
      inc.services && inc.services.length ? [el("dt", { text: "Services" }), el("dd", { text: inc.services.join(", ") })] : null,
      inc.rootCause ? [el("dt", { text: "Likely first" }), el("dd", { class: "mono", text: rootName(inc) })] : null);
    const members = el("ul", { class: "member-list" }, (inc.alerts || []).map((a) => el("li", {},
      severityBadge(a.labels), " ", stateBadge(a.status), " ", el("span", { class: "mono", text: seriesName({ __name__: a.labels.alertname || a.fingerprint, ...without(a.labels, "alertname") }) }))));
    const timeline = el("ol", { class: "timeline", id: "incident-timeline" }, (inc.timeline || []).slice().reverse().map((t) => el("li", { "data-kind": t.kind },
      el("time", { datetime: new Date(t.at * 1000).toISOString(), text: formatTime(t.at * 1000) }), " ",
      el("span", { class: `kind kind-${t.kind}`, text: t.kind }), " ", el("span", { text: t.text }))));
    clear(detail).append(
      el("div", { class: "panel-head" }, el("h2", { id: "h-detail", text: inc.title || `Incident ${inc.id}` }), buttons),
      facts,
      el("div", { class: "detail-cols" },
        el("div", {}, el("h3", { text: `Alerts (${(inc.alerts || []).length})` }), members),
        el("div", {}, el("h3", { text: "Timeline, newest first" }), timeline)));
    detail.dataset.state = inc.state;
  }

  function drawAlerts(alerts, incidents) {
    const byId = new Map(incidents.map((i) => [i.id, i]));
    clear(alertPanel).append(el("h2", { id: "h-alert-list", text: "Alerts" }));
    if (!alerts.length) { alertPanel.append(el("p", { class: "empty", text: "No alert is firing." })); return; }
    alerts.sort((a, b) => severityOf(b.labels).rank - severityOf(a.labels).rank || a.startsAt.localeCompare(b.startsAt));
    const rows = alerts.slice(0, 200).map((a) => {
      const inc = a.incident ? byId.get(a.incident) : null;
      const muted = a.status.silencedBy.length ? "silenced" : a.status.inhibitedBy.length ? "inhibited" : "firing";
      const name = a.labels.alertname || a.fingerprint;
      const btn = el("button", { type: "button", "data-action": "silence", "aria-label": `Silence ${name}`, text: "Silence…" });
      btn.addEventListener("click", () => silence(a, btn));
      return el("tr", { "data-fingerprint": a.fingerprint, "data-state": muted },
        cell("Severity", severityBadge(a.labels)),
        cell("Alert", el("strong", { text: name }), " ", el("span", { class: "muted small mono", text: seriesName(without(a.labels, "alertname", "severity")) }),
          a.annotations && (a.annotations.summary || a.annotations.description) ? el("div", { class: "small", text: a.annotations.summary || a.annotations.description }) : null),
        cell("State", stateBadge(muted)),
        cell("Since", since(Date.parse(a.startsAt) / 1000)),
        cell("Incident", inc ? [el("a", { href: `/incidents/${encodeURIComponent(inc.id)}`, "data-link": true, text: inc.state }), " ", level(inc)] : el("span", { class: "muted", text: "—" })),
        cell("Actions", muted === "silenced" ? null : btn));
    });
    alertPanel.append(el("div", { class: "table-wrap" }, el("table", { id: "alerts-table", class: "stack" },
      el("thead", {}, el("tr", {}, ["Severity", "Alert", "State", "Since", "Incident", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))));
    if (alerts.length > 200) alertPanel.append(el("p", { class: "small muted", text: `${alerts.length - 200} more not shown.` }));
  }

  function drawSilences(silences) {
    clear(silencePanel).append(el("h2", { id: "h-silences", text: "Silences" }));
    const shown = silences.filter((s) => s.status.state !== "expired" || Date.now() - Date.parse(s.endsAt) < 86400e3).slice(0, 100);
    if (!shown.length) { silencePanel.append(el("p", { class: "empty", text: "No silences." })); return; }
    const rows = shown.map((s) => el("tr", { "data-id": s.id, "data-state": s.status.state },
      cell("State", stateBadge(s.status.state, SILENCE_CLASS)),
      cell("Matchers", el("span", { class: "mono", text: s.matchers.map((m) => `${m.name}${m.isEqual === false ? "!" : ""}${m.isRegex ? "~" : "="}"${m.value}"`).join(", ") })),
      cell("Ends", formatTime(Date.parse(s.endsAt))),
      cell("Comment", `${s.comment || ""}${s.createdBy ? ` — ${s.createdBy}` : ""}`),
      cell("Actions", s.status.state === "expired" ? null : el("button", { type: "button", "data-action": "expire", "aria-label": `Expire silence ${s.id}`, onclick: () => expire(s.id), text: "Expire" }))));
    silencePanel.append(el("div", { class: "table-wrap" }, el("table", { id: "silences-table", class: "stack" },
      el("thead", {}, el("tr", {}, ["State", "Matchers", "Ends", "Comment", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))));
  }

  async function load() {
    try {
      state = await loadAll(signal, showResolved);
    } catch (e) {
      if (e.name === "AbortError") return;
      clear(root);
      root.append(el("p", { class: "error span-12", role: "alert", text: e.status === 503 ? `Alerting is off: ${e.message}` : `Cannot load alerts: ${e.message}` }));
      return;
    }
    // a focused button is redrawn: put the focus back on its successor after the redraw
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr[data-id], tr[data-fingerprint]");
    const focusKey = focused ? [focused.dataset.id || focused.dataset.fingerprint, document.activeElement.dataset.action] : null;
    drawStats(state.alerts, state.incidents, state.silences);
    drawIncidents(state.incidents);
    drawAlerts(state.alerts, state.incidents);
    drawSilences(state.silences);
    await drawDetail(selected);
    if (focusKey) {
      const again = root.querySelector(`tr[data-id="${CSS.escape(focusKey[0])}"] [data-action="${focusKey[1]}"], tr[data-fingerprint="${CSS.escape(focusKey[0])}"] [data-action="${focusKey[1]}"]`);
      if (again) again.focus();
    }
    root.dataset.loaded = "1";
    root.dataset.version = `${version}`;
  }

  let pending = null;
  const reload = () => { // coalesce bursts of stream events into one reload
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 150);
  };
  await load();
  live.subscribe(["alerts"], [], (msg) => {
    if (msg.type !== "alerts") return;
    version = msg.data.version;
    root.dataset.live = `${(+root.dataset.live || 0) + 1}`;
    reload();
  });
  const timer = setInterval(load, 30_000); // the "ago" texts, and a safety net if the stream drops
  return () => { clearInterval(timer); if (pending) clearTimeout(pending); live.unsubscribe(); dialog.node.remove(); };
}

function without(labels, ...names) {
  const out = { ...labels };
  for (const n of names) delete out[n];
  return out;
}

function rootName(inc) {
  const a = (inc.alerts || []).find((m) => m.fingerprint === inc.rootCause);
  return a ? (a.labels.alertname || a.fingerprint) : inc.rootCause;
}

/** The silence dialog: one checkbox per label of the alert (all ticked), a duration, a comment. */
function silenceDialog() {
  const form = el("form", { method: "dialog", id: "silence-form" });
  const node = el("dialog", { id: "silence-dialog", "aria-labelledby": "silence-title" }, form);
  let resolveAsk = null;
  let opener = null;
  const finish = (value) => {
    const r = resolveAsk;
    resolveAsk = null;
    if (node.open) node.close();
    if (opener && opener.isConnected) opener.focus();
    if (r) r(value);
  };
  node.addEventListener("close", () => finish(null));
  return {
    node,
    ask(alert, from) {
      opener = from;
      const labels = Object.entries(alert.labels).sort(([a], [b]) => a.localeCompare(b));
      const duration = el("select", { id: "silence-duration", name: "duration" }, DURATIONS.map(([v, t]) => el("option", { value: v, text: t, selected: v === "2h" })), el("option", { value: "custom", text: "Other…" }));
      const custom = el("input", { id: "silence-custom", name: "custom", placeholder: "e.g. 90m, 1h30m", hidden: true, "aria-label": "Other duration" });
      duration.addEventListener("change", () => { custom.hidden = duration.value !== "custom"; if (!custom.hidden) custom.focus(); });
      const comment = el("input", { id: "silence-comment", name: "comment", required: true, value: "silenced from the dashboard" });
      const by = el("input", { id: "silence-by", name: "by", value: sessionStorage.getItem("perfintel.user") || "dashboard", autocomplete: "username" });
      const error = el("p", { class: "error", role: "alert", id: "silence-error" });
      clear(form).append(
        el("h2", { id: "silence-title", text: `Silence ${alert.labels.alertname || "alert"}` }),
        el("fieldset", { class: "matchers" }, el("legend", { text: "Match alerts with these labels" }),
          labels.map(([k, v], i) => el("label", { class: "check mono", for: `silence-m${i}` },
            el("input", { type: "checkbox", id: `silence-m${i}`, name: "matcher", value: k, checked: true }), `${k}="${v}"`))),
        el("div", { class: "field" }, el("label", { for: "silence-duration", text: "For" }), duration, custom),
        el("div", { class: "field" }, el("label", { for: "silence-comment", text: "Comment" }), comment),
        el("div", { class: "field" }, el("label", { for: "silence-by", text: "Created by" }), by),
        error,
        el("div", { class: "actions" },
          el("button", { type: "button", value: "cancel", onclick: () => finish(null), text: "Cancel" }),
          el("button", { type: "submit", class: "primary", value: "ok", id: "silence-submit", text: "Create silence" })));
      form.onsubmit = (ev) => {
        ev.preventDefault();
        const names = [...form.querySelectorAll("input[name=matcher]:checked")].map((c) => c.value);
        if (!names.length) { error.textContent = "Tick at least one label."; return; }
        let seconds;
        try { seconds = parseDuration(duration.value === "custom" ? custom.value : duration.value); }
        catch (e) { error.textContent = e.message; custom.focus(); return; }
        if (!(seconds > 0)) { error.textContent = "The duration must be positive."; return; }
        sessionStorage.setItem("perfintel.user", by.value.trim());
        const now = Date.now();
        finish({
          matchers: names.map((n) => ({ name: n, value: alert.labels[n], isRegex: false, isEqual: true })),
          startsAt: new Date(now).toISOString(),
          endsAt: new Date(now + seconds * 1000).toISOString(),
          createdBy: by.value.trim() || "dashboard",
          comment: comment.value.trim(),
        });
      };
      return new Promise((resolve) => {
        resolveAsk = resolve;
        node.showModal();
        duration.focus();
      });
    },
  };
}
