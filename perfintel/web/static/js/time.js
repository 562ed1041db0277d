// Times and durations, in one place: Prometheus durations (1h30m, 90s, float seconds),
// RFC 3339 or Unix seconds, and now / now-1h for the dashboard's URLs.
const UNITS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
const DURATION = /^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y))+$/;

export function parseDuration(text) {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s);
  if (!DURATION.test(s)) throw new Error(`not a duration: ${text}`);
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g)) total += parseFloat(m[1]) * UNITS[m[2]];
  return total;
}

/** Seconds since the epoch from now, now-1h, now+30m, Unix seconds or RFC 3339. */
export function parseTime(text, nowS = Date.now() / 1000) {
  const s = String(text).trim();
  if (s === "now" || s === "") return nowS;
  const rel = /^now([+-])(.+)$/.exec(s);
  if (rel) return nowS + (rel[1] === "-" ? -1 : 1) * parseDuration(rel[2]);
  if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s);
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw new Error(`not a time: ${text}`);
  return ms / 1000;
}

export function formatDuration(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

export function formatDays(days) {
  if (days === null || days === undefined) return "—";
  if (days < 1) return `${(days * 24).toFixed(1)} h`;
  return `${days.toFixed(1)} d`;
}

export function formatTime(ms) {
  const d = new Date(ms);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A step giving about `points` points over the range, at least 1 s, in whole seconds. */
export function stepFor(rangeS, points = 500) {
  return Math.max(1, Math.ceil(rangeS / points));
}

export const RANGES = [
  ["15m", "Last 15 minutes"], ["1h", "Last hour"], ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"], ["2d", "Last 2 days"], ["7d", "Last 7 days"],
];
