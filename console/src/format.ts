// Numbers for people: 3 significant digits, percentages, milliseconds, dollars, local times.

const SIG3 = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

export function num(x: unknown): string {
  return typeof x === "number" && Number.isFinite(x) ? SIG3.format(x) : "–";
}

export function pct(x: unknown): string {
  return typeof x === "number" && Number.isFinite(x) ? `${SIG3.format(x * 100)} %` : "–";
}

export function ms(x: unknown): string {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  return Math.abs(x) >= 10_000 ? `${SIG3.format(x / 1000)} s` : `${SIG3.format(x)} ms`;
}

export function usd(x: unknown): string {
  return typeof x === "number" && Number.isFinite(x) ? `$${SIG3.format(x)}` : "–";
}

export function p(x: unknown): string {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  return x < 0.001 ? "< 0.001" : SIG3.format(x);
}

export function count(x: unknown): string {
  return typeof x === "number" && Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–";
}

export function when(ts: unknown): string {
  if (typeof ts !== "number" || !Number.isFinite(ts) || Math.abs(ts) > 8.64e15) return "–";
  const d = new Date(ts);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function duration(msValue: unknown): string {
  if (typeof msValue !== "number" || !Number.isFinite(msValue)) return "–";
  const min = msValue / 60_000;
  if (min < 1) return `${SIG3.format(msValue / 1000)} s`;
  if (min < 120) return `${SIG3.format(min)} min`;
  return `${SIG3.format(min / 60)} h`;
}

/** A value of a policy's params, short and readable. */
export function value(x: unknown): string {
  if (x === null || x === undefined) return "–";
  if (typeof x === "number") return num(x);
  if (typeof x === "string") return x;
  if (Array.isArray(x)) return x.map(value).join(", ");
  if (typeof x === "object") {
    return Object.entries(x as Record<string, unknown>).map(([k, v]) => `${k}: ${value(v)}`).join("; ");
  }
  return String(x);
}
