// The client-side router: pages render into <main> without full reloads; keyboard shortcuts.
import { live } from "./live.js";
import * as alerts from "./pages/alerts.js";
import * as capacity from "./pages/capacity.js";
import * as explore from "./pages/explore.js";
import * as overview from "./pages/overview.js";
import * as series from "./pages/series.js";

const ROUTES = { "/": ["overview", overview, "Overview"], "/explore": ["explore", explore, "Explore"], "/series": ["explore", series, "Series"], "/capacity": ["capacity", capacity, "Capacity"], "/alerts": ["alerts", alerts, "Alerts"] };
// /incidents/<id>: the link notifications carry (the alerts page with that incident open)
const routeOf = (path) => ROUTES[path.startsWith("/incidents/") ? "/alerts" : path] || ROUTES["/"];
const main = document.getElementById("main");
let cleanup = null;
let controller = null;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show();
}

async function show() {
  if (controller) controller.abort();
  if (cleanup) { try { cleanup(); } catch { /* a page's cleanup must not stop the next */ } cleanup = null; }
  controller = new AbortController();
  const [nav, page, title] = routeOf(location.pathname);
  document.title = `${title} · perfintel`;
  for (const a of document.querySelectorAll("nav a[data-page]")) {
    if (a.dataset.page === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.innerHTML = "";
  main.dataset.page = title.toLowerCase();
  delete main.dataset.ready;
  const params = new URLSearchParams(location.search);
  const mine = controller;
  try {
    const done = await page.render(main, { signal: controller.signal, params, navigate });
    if (mine === controller) cleanup = done; else if (done) done();
  } catch (e) {
    if (e.name !== "AbortError") main.append(Object.assign(document.createElement("p"), { className: "error", role: "alert", textContent: e.message }));
  }
  if (mine === controller) main.dataset.ready = "1";
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
  main.focus();
});
window.addEventListener("popstate", show);

let pendingG = false;
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (t.matches && t.matches("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
  if (document.querySelector("dialog[open]")) return;
  if (pendingG) {
    pendingG = false;
    const to = { o: "/", e: "/explore", c: "/capacity", a: "/alerts" }[e.key];
    if (to) { e.preventDefault(); navigate(to); main.focus(); }
    return;
  }
  if (e.key === "g") { pendingG = true; setTimeout(() => { pendingG = false; }, 1200); }
  else if (e.key === "/") {
    e.preventDefault();
    if (location.pathname !== "/explore") navigate("/explore");
    requestAnimationFrame(() => document.getElementById("query")?.focus());
  } else if (e.key === "?") { e.preventDefault(); document.getElementById("help-dialog").showModal(); }
});
document.getElementById("help-button").addEventListener("click", () => document.getElementById("help-dialog").showModal());

// the header says whether the server is reachable on every page, not only on those that subscribe
live.connect();
show();
