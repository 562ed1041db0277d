// Every data call goes through here: bearer token from sessionStorage, a sign-in dialog on 401.
const KEY = "perfintel.token";

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

let asking = null;

function askForToken(message) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").textContent = message || "";
  asking = new Promise((resolve) => {
    const done = () => {
      form.removeEventListener("submit", done);
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      asking = null;
      resolve();
    };
    form.addEventListener("submit", done);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", params = null, body = null, signal = null } = {}) {
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) q.append(k, v);
    url += (url.includes("?") ? "&" : "?") + q.toString();
  }
  for (let attempt = 0; attempt < 4; attempt++) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== null) headers["Content-Type"] = "application/json";
    const r = await fetch(url, { method, headers, body: body === null ? null : JSON.stringify(body), signal });
    if (r.status === 401) {
      await askForToken(t ? "That token was not accepted." : "");
      continue;
    }
    let doc = null;
    try { doc = await r.json(); } catch { doc = null; }
    if (!r.ok) throw new ApiError(r.status, (doc && doc.error) || `HTTP ${r.status}`);
    return doc;
  }
  throw new ApiError(401, "not signed in");
}

export function streamUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const t = token();
  return `${proto}//${location.host}/api/v1/performance/stream${t ? `?token=${encodeURIComponent(t)}` : ""}`;
}
