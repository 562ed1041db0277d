// Small shared formatting and DOM helpers.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function num(v, digits = 3) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e12) return `${(v / 1e12).toPrecision(digits)} T`;
  if (a >= 1e9) return `${(v / 1e9).toPrecision(digits)} G`;
  if (a >= 1e6) return `${(v / 1e6).toPrecision(digits)} M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(digits)} k`;
  if (a === 0) return "0";
  return Number(v.toPrecision(digits)).toString();
}

export function bytes(v) {
  if (v === null || v === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function pct(v) {
  return v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)} %`;
}

export function seriesName(labels) {
  const name = labels.__name__ || "";
  const rest = Object.entries(labels).filter(([k]) => k !== "__name__").map(([k, v]) => `${k}="${v}"`);
  return rest.length ? `${name}{${rest.join(", ")}}` : name;
}

export function selectorOf(labels) {
  const name = labels.__name__ || "";
  const rest = Object.entries(labels).filter(([k]) => k !== "__name__")
    .map(([k, v]) => `${k}="${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`);
  return `${name}{${rest.join(",")}}`;
}

export function statusClass(status) {
  return `status-${status}`;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}
