// PromQL autocomplete from the Prometheus API: metric names, label names, label values.
import { api } from "./api.js";
import { el } from "./format.js";

const cache = new Map();
async function cached(path) {
  if (!cache.has(path)) cache.set(path, api(path).then((d) => d.data || []).catch(() => []));
  return cache.get(path);
}

/** What the cursor is in: {kind: metric|label|value, prefix, label?, start}. */
export function contextAt(text, pos) {
  const before = text.slice(0, pos);
  const open = before.lastIndexOf("{");
  const close = before.lastIndexOf("}");
  if (open > close) {
    const inner = before.slice(open + 1);
    const value = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(inner);
    if (value) return { kind: "value", label: value[1], prefix: value[3], start: pos - value[3].length };
    const label = /(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(inner);
    if (label) { const p = label[1] || ""; return { kind: "label", prefix: p, start: pos - p.length }; }
    return null;
  }
  const word = /([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before);
  const p = word ? word[1] : "";
  return { kind: "metric", prefix: p, start: pos - p.length };
}

export async function suggestions(ctx) {
  if (!ctx) return [];
  let items;
  if (ctx.kind === "metric") items = await cached("/api/v1/label/__name__/values");
  else if (ctx.kind === "label") items = (await cached("/api/v1/labels")).filter((n) => n !== "__name__");
  else items = await cached(`/api/v1/label/${encodeURIComponent(ctx.label)}/values`);
  const p = ctx.prefix.toLowerCase();
  const starts = items.filter((i) => i.toLowerCase().startsWith(p));
  const contains = p ? items.filter((i) => !i.toLowerCase().startsWith(p) && i.toLowerCase().includes(p)) : [];
  return [...starts, ...contains].slice(0, 50);
}

/** Wire a combobox: `input` (textarea) gets a listbox of suggestions as one types. */
export function attach(input, onRun) {
  const list = el("ul", { class: "listbox", role: "listbox", id: `${input.id}-list`, hidden: true, "aria-label": "Suggestions" });
  input.after(list);
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");
  let items = [];
  let active = -1;
  let ctx = null;
  let seq = 0;
  const close = () => { list.hidden = true; input.setAttribute("aria-expanded", "false"); input.removeAttribute("aria-activedescendant"); active = -1; };
  const show = () => {
    list.innerHTML = "";
    items.forEach((text, i) => {
      const li = el("li", { role: "option", id: `${list.id}-${i}`, "aria-selected": i === active ? "true" : "false" }, text, el("span", { class: "kind", text: ctx.kind }));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(i); });
      list.append(li);
    });
    list.hidden = items.length === 0;
    input.setAttribute("aria-expanded", items.length ? "true" : "false");
    if (active >= 0) { input.setAttribute("aria-activedescendant", `${list.id}-${active}`); list.children[active]?.scrollIntoView({ block: "nearest" }); }
  };
  const pick = (i) => {
    const v = input.value;
    const text = items[i];
    const end = ctx.start + ctx.prefix.length;
    input.value = v.slice(0, ctx.start) + text + v.slice(end);
    const pos = ctx.start + text.length;
    input.setSelectionRange(pos, pos);
    close();
    input.focus();
  };
  const update = async () => {
    const my = ++seq;
    ctx = contextAt(input.value, input.selectionStart);
    const found = await suggestions(ctx);
    if (my !== seq) return;
    items = found.filter((s) => !(ctx && s === ctx.prefix));
    active = -1;
    show();
  };
  input.addEventListener("input", update);
  input.addEventListener("focus", update);
  input.addEventListener("blur", () => setTimeout(close, 100));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); close(); onRun(); return; }
    if (list.hidden) { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); onRun(); } return; }
    if (e.key === "ArrowDown") { e.preventDefault(); active = (active + 1) % items.length; show(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); active = (active - 1 + items.length) % items.length; show(); }
    else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { e.preventDefault(); pick(active); }
    else if (e.key === "Enter") { e.preventDefault(); close(); onRun(); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
  });
}
