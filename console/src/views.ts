// The console's views. Each mounts into an element, listens to Firestore, and returns its unsubscribe.
import {
  collection, doc, limit, onSnapshot, orderBy, query, where, type DocumentData, type Firestore,
  type QuerySnapshot,
} from "firebase/firestore";
import type { User } from "firebase/auth";

import { lineChart } from "./charts";
import { h, replace, table } from "./dom";
import { count, duration, ms, num, p, pct, usd, value, when } from "./format";

export interface Ctx {
  db: Firestore;
  call: (name: string, data: Record<string, unknown>) => Promise<Record<string, unknown>>;
  user: User;
}

export interface View {
  id: string;
  title: string;
  mount: (el: HTMLElement, ctx: Ctx) => () => void;
}

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const docs = (snap: QuerySnapshot<DocumentData>): Doc[] => snap.docs.map((d) => ({ _id: d.id, ...d.data() }));

function live(el: HTMLElement, text = "live"): HTMLElement {
  const badge = h("span", { class: "live", "aria-live": "polite" }, text);
  el.append(badge);
  return badge;
}

function failed(el: HTMLElement, what: string): (e: Error) => void {
  return (e) => replace(el, h("p", { class: "error", role: "alert" }, `Could not read ${what}: ${e.message}`));
}

// ------------------------------------------------------------------------------------------------ actions

/** A confirmation dialog that says what will change; resolves with the form's values, or null if cancelled. */
function confirmDialog(title: string, text: string, fields: HTMLElement[] = [], confirmLabel = "Confirm"):
  Promise<FormData | null> {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" },
      h("h2", { id: "dialog-title" }, title),
      h("p", {}, text),
      ...fields,
      h("div", { class: "buttons" },
        h("button", { type: "submit", value: "ok", class: "primary" }, confirmLabel),
        h("button", { type: "submit", value: "cancel", formnovalidate: true, class: "secondary" }, "Cancel")));
    const dialog = h("dialog", { "aria-labelledby": "dialog-title" }, form) as HTMLDialogElement;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      const data = new FormData(form as HTMLFormElement);
      dialog.remove();
      resolve(ok ? data : null);
    });
    dialog.showModal();
  });
}

/** Where the outcome of the last action is said, in plain words with its E_LEARN_* code when refused. */
function outcomeBox(): HTMLElement {
  return h("div", { class: "outcome", role: "status", "aria-live": "polite", id: "outcome" });
}

interface CallError { code?: string; message?: string; details?: { code?: string } }

async function act(out: HTMLElement, ctx: Ctx, name: string, data: Record<string, unknown>, done: string): Promise<void> {
  out.className = "outcome";
  out.setAttribute("role", "status");
  out.textContent = "Working…";
  const buttons = [...document.querySelectorAll<HTMLButtonElement>("main button")].filter((b) => !b.disabled);
  for (const b of buttons) b.disabled = true;  // one change at a time
  try {
    await ctx.call(name, data);
    out.className = "outcome ok";
    out.textContent = done;
  } catch (e) {
    const err = e as CallError;
    const code = err.details?.code ?? err.code ?? "error";
    out.className = "outcome error";
    out.setAttribute("role", "alert");
    out.textContent = `Refused: ${err.message ?? String(e)} (${code})`;
  } finally {
    for (const b of buttons) if (b.isConnected) b.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ components

const METRICS: [string, string, (x: number) => string][] = [
  ["avgReward", "Reward", (x) => num(x)],
  ["successRate", "Success rate", (x) => pct(x)],
  ["p95Latency", "p95 latency", (x) => ms(x)],
  ["avgCostUsd", "Cost per call", (x) => usd(x)],
];

function skillCard(card: Doc | undefined): HTMLElement {
  if (!card) return h("p", { class: "muted" }, "No skill card yet (the scoring schedule writes one each hour).");
  const list = (title: string, items: unknown): HTMLElement | null => {
    if (!Array.isArray(items) || items.length === 0) return null;
    const say = (x: Doc | string): string => {
      if (typeof x === "string") return x;
      if (typeof x.text === "string") return x.text;
      if (x.code !== undefined && x.count !== undefined) return `${x.code}: ${count(x.count)} (${pct(x.share)})`;
      return value(x);
    };
    return h("div", {}, h("h4", {}, title), h("ul", {}, items.map((x) => h("li", {}, say(x)))));
  };
  const trends = card.trends && typeof card.trends === "object" && !Array.isArray(card.trends)
    ? h("div", {}, h("h4", {}, "Trends"), h("ul", {}, Object.entries(card.trends as Record<string, Doc>).map(([period, t]) =>
      h("li", {}, `${period}: ${t.direction ?? "–"}${typeof t.slopePerDay === "number" ? `, ${num(t.slopePerDay)} per day (p ${p(t.p)})` : ""}`))))
    : null;
  const known = new Set(["strengths", "weaknesses", "failureModes", "failureModes7d", "trends"]);
  const rest = Object.entries(card).filter(([k, v]) => !known.has(k) && !k.startsWith("_") && typeof v !== "object");
  return h("div", { class: "card" },
    list("Strengths", card.strengths), list("Weaknesses", card.weaknesses),
    list("Failure modes", card.failureModes), trends,
    h("dl", {}, rest.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, k.toLowerCase().endsWith("at") || k === "ts" ? when(v) : value(v))])));
}

const components: View = {
  id: "components", title: "Components",
  mount(el, ctx) {
    let win = "24h";
    let selected: string | null = null;
    let stats: Doc[] = [];
    let card: Doc | undefined;
    let stopCard: (() => void) | null = null;
    const picker = h("fieldset", { class: "windows" }, h("legend", {}, "Window"),
      ...["1h", "24h", "7d"].map((w) => h("label", {},
        h("input", { type: "radio", name: "window", value: w, checked: w === win, onchange: () => { win = w; listen(); } }), ` ${w}`)));
    const body = h("div");
    el.append(h("h1", {}, "Components"), picker, body);
    const badge = live(el);
    const render = (): void => {
      const pseudo = (c: string): boolean => c.startsWith("router:") || c.startsWith("arm:") || c.startsWith("policy:");
      const rows = stats.filter((s) => !pseudo(String(s.component))).sort((a, b) => String(a.component).localeCompare(String(b.component)));
      const models = stats.filter((s) => String(s.component).startsWith("router:"));
      if (!selected && rows.length) selected = rows[0].component;
      const sel = stats.find((s) => s.component === selected);
      const pick = (c: string) => h("button", {
        type: "button", class: "link", "aria-pressed": c === selected ? "true" : "false",
        onclick: () => { selected = c; watchCard(); render(); },
      }, c);
      const line = (s: Doc) => [pick(s.component), count(s.n), num(s.avgReward), pct(s.successRate), ms(s.p95Latency), usd(s.avgCostUsd)];
      const head = ["Component", "Requests", "Reward", "Success rate", "p95 latency", "Cost per call"];
      replace(body,
        rows.length ? table(`Components, last ${win}`, head, rows.map(line), "stats")
          : h("p", { class: "muted" }, "No stats yet: the scoring schedule writes ops_stats every 5 minutes."),
        models.length ? table(`Router models, last ${win}`, ["Model", ...head.slice(1)], models.map(line), "stats") : null,
        sel ? h("section", { "aria-label": `${sel.component} over time` },
          h("h2", {}, `${sel.component} over the last ${win}`),
          h("p", { class: "muted" }, `Per ${sel.seriesLevel ?? "bucket"}; reward config ${sel.rewardVersion ?? "–"}; updated ${when(sel.ts)}`),
          h("div", { class: "charts" }, METRICS.map(([key, label, fmt]) => {
            const pts: Doc[] = Array.isArray(sel.series) ? sel.series : [];
            return lineChart(label, pts.map((x) => x.t), [{ label, values: pts.map((x) => (typeof x[key] === "number" ? x[key] : null)) }], fmt);
          })),
          h("h2", {}, `Skill card: ${sel.component}`), skillCard(card)) : null);
    };
    const watchCard = (): void => {
      if (stopCard) stopCard();
      card = undefined;
      if (!selected) return;
      stopCard = onSnapshot(doc(ctx.db, "ops_skill_cards", selected), (snap) => { card = snap.data(); render(); }, () => undefined);
    };
    let stop: (() => void) | null = null;
    const listen = (): void => {
      if (stop) stop();
      stop = onSnapshot(query(collection(ctx.db, "ops_stats"), where("window", "==", win)), (snap) => {
        stats = docs(snap);
        const first = selected === null;
        render();
        if (first && selected) watchCard();
        badge.textContent = `live · ${when(Date.now())}`;
      }, failed(body, "ops_stats"));
    };
    listen();
    return () => { if (stop) stop(); if (stopCard) stopCard(); };
  },
};

// ------------------------------------------------------------------------------------------------ policies

const ORDER: Record<string, number> = { active: 0, canary: 1, shadow: 2, draft: 3, archived: 4, rolled_back: 5, rejected: 6 };

function flatten(obj: unknown, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (obj && typeof obj === "object" && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
      if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flatten(v, `${prefix}${k}.`));
      else out[`${prefix}${k}`] = v;
    }
  }
  return out;
}

function paramsCell(params: unknown, active: Record<string, unknown> | null): HTMLElement {
  const flat = flatten(params);
  return h("ul", { class: "params" }, Object.entries(flat).map(([k, v]) => {
    const differs = active !== null && JSON.stringify(active[k]) !== JSON.stringify(v);
    const text = `${k}: ${value(v)}`;
    return h("li", {}, differs ? h("mark", { title: `active: ${value(active?.[k])}` }, text) : text);
  }));
}

const policies: View = {
  id: "policies", title: "Policies",
  mount(el, ctx) {
    const out = outcomeBox();
    const body = h("div");
    el.append(h("h1", {}, "Policies"), out, body);
    const badge = live(el);
    const stop = onSnapshot(collection(ctx.db, "ops_policies"), (snap) => {
      const byId = new Map<string, Doc[]>();
      for (const d of docs(snap)) byId.set(d.id, [...(byId.get(d.id) ?? []), d]);
      badge.textContent = `live · ${when(Date.now())}`;
      replace(body, ...[...byId.keys()].sort().map((id) => {
        const versions = (byId.get(id) ?? []).sort((a, b) => (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9)
          || String(b.version).localeCompare(String(a.version), undefined, { numeric: true }));
        const activeDoc = versions.find((v) => v.status === "active");
        const active = activeDoc ? flatten(activeDoc.params) : null;
        const actions = (v: Doc): HTMLElement => {
          const ref = { id, version: v.version };
          const btn = (label: string, onclick: () => void) =>
            h("button", { type: "button", "aria-label": `${label} ${id} ${v.version}`, onclick }, label);
          const list: HTMLElement[] = [];
          if (v.status === "draft" || v.status === "archived" || v.status === "rolled_back") {
            list.push(btn("Activate", async () => {
              const ok = await confirmDialog(`Activate ${id} ${v.version}?`,
                `${id} ${v.version} becomes the active version${activeDoc ? `; ${activeDoc.version} is archived` : ""}. Every component reads it within seconds.`,
                [], "Activate");
              if (ok) await act(out, ctx, "activatePolicy", ref, `${id} ${v.version} is active.`);
            }));
          }
          if (v.status === "draft") {
            list.push(btn("Start shadow", async () => {
              const ok = await confirmDialog(`Start a shadow of ${id} ${v.version}?`,
                `${v.version} is judged off-policy on the active version's logged decisions; no traffic changes.`, [], "Start shadow");
              if (ok) await act(out, ctx, "startShadow", ref, `Shadow of ${id} ${v.version} started.`);
            }));
          }
          if (v.status === "draft" || v.status === "shadow") {
            list.push(btn("Start canary", async () => {
              const field = h("label", {}, "Traffic to the canary ",
                h("select", { name: "split", "aria-label": "Canary split" },
                  ...[["canary5", "5 %"], ["canary10", "10 %"], ["canary20", "20 %"], ["ab", "50 % (A/B)"]].map(([val, label]) =>
                    h("option", { value: val, selected: val === "canary10" }, label))));
              const data = await confirmDialog(`Start a canary of ${id} ${v.version}?`,
                `The chosen share of traffic gets ${v.version}; the rest stays on ${activeDoc?.version ?? "the active version"}. It is promoted or rolled back by sequential tests.`,
                [field], "Start canary");
              if (data) await act(out, ctx, "startCanary", { ...ref, split: String(data.get("split")) }, `Canary of ${id} ${v.version} started.`);
            }));
          }
          if (v.status === "canary") {
            list.push(btn("Promote", async () => {
              const ok = await confirmDialog(`Promote ${id} ${v.version}?`,
                `${v.version} becomes the active version for all traffic; ${activeDoc?.version ?? "the champion"} is archived.`, [], "Promote");
              if (ok) await act(out, ctx, "promotePolicy", ref, `${id} ${v.version} promoted.`);
            }));
          }
          if (v.status === "shadow" || v.status === "canary") {
            list.push(btn("Reject", async () => {
              const field = h("label", {}, "Reason ",
                h("textarea", { name: "reason", required: true, maxlength: 1000, "aria-label": "Reason", rows: 2 }));
              const data = await confirmDialog(`Reject ${id} ${v.version}?`,
                `The ${v.status} ends and all traffic returns to ${activeDoc?.version ?? "the active version"}.`, [field], "Reject");
              if (data) await act(out, ctx, "rejectPolicy", { ...ref, reason: String(data.get("reason") ?? "") }, `${id} ${v.version} rejected.`);
            }));
          }
          return h("div", { class: "actions" }, list);
        };
        return h("section", { class: "policy", "aria-label": `Policy ${id}` },
          h("h2", {}, id, h("span", { class: "muted" }, activeDoc ? ` active ${activeDoc.version}` : " no active version")),
          h("button", {
            type: "button", "aria-label": `Roll back ${id}`,
            onclick: async () => {
              const ok = await confirmDialog(`Roll back ${id}?`,
                `${activeDoc?.version ?? "The active version"} is replaced by the version that was active before it.`, [], "Roll back");
              if (ok) await act(out, ctx, "rollbackPolicy", { id }, `${id} rolled back.`);
            },
          }, "Roll back"),
          table(`Versions of ${id} (differences from the active version marked)`,
            ["Version", "Status", "Kind", "Created", "Params", "Notes", "Actions"],
            versions.map((v) => [v.version, h("span", { class: `status s-${v.status}`, "data-version": v.version }, v.status),
              v.kind ?? "router", when(v.createdAt), paramsCell(v.params, v.status === "active" ? null : active),
              v.notes ?? "", actions(v)]), "policies"));
      }));
    }, failed(body, "ops_policies"));
    return stop;
  },
};

// ------------------------------------------------------------------------------------------------ rollouts

/** The difference challenger − champion with its interval, over the evaluations that measured one. */
function diffChart(evaluations: Doc[]): HTMLElement {
  const measured = evaluations.filter((x) => typeof x.diff === "number");
  const title = "Reward difference (challenger − champion) with its interval, per evaluation";
  if (!measured.length) return h("p", { class: "muted" }, `${title}: none yet, the arms are still collecting.`);
  return lineChart(title, measured.map((x) => x.ts ?? Number(x._id)), [
    { label: "difference", values: measured.map((x) => x.diff) },
    { label: "interval low", values: measured.map((x) => x.ciLow ?? null), dash: [4, 4], color: "#888" },
    { label: "interval high", values: measured.map((x) => x.ciHigh ?? null), dash: [4, 4], color: "#888" },
  ], num);
}

const rollouts: View = {
  id: "rollouts", title: "Rollouts",
  mount(el, ctx) {
    const body = h("div");
    el.append(h("h1", {}, "Rollouts"), body);
    const badge = live(el);
    const evals = new Map<string, Doc[]>();
    const stops = new Map<string, () => void>();
    let list: Doc[] = [];
    const render = (): void => {
      replace(body, list.length ? null : h("p", { class: "muted" }, "No shadow or canary has run yet."),
        ...list.map((r) => {
          const e: Doc = r.lastEvaluation ?? {};
          const series = evals.get(r._id) ?? [];
          const checks = Object.entries((e.checks ?? {}) as Record<string, Doc>).sort(([a], [b]) => a.localeCompare(b));
          return h("section", { class: "rollout", "aria-label": `Rollout ${r._id}` },
            h("h2", {}, `${r.id} ${r.version} vs ${r.champion}`, h("span", { class: `status s-${r.status}` }, ` ${r.stage} · ${r.status}`)),
            h("p", {}, `Split ${pct(r.split)} · started ${when(r.startedAt)}`),
            e.outcome ? table("Latest evaluation", ["Measure", "Value"], [
              ["Decision", `${e.outcome}: ${e.reason ?? ""}`],
              ["n champion / challenger", `${count(e.nChampion)} / ${count(e.nChallenger)}`],
              ["Mean reward champion / challenger", `${num(e.meanChampion)} / ${num(e.meanChallenger)}`],
              ["Difference (challenger − champion)", `${num(e.diff)} [${num(e.ciLow)}, ${num(e.ciHigh)}]`],
              ["Welch p", p(e.welchP)], ["Always-valid p (mSPRT)", p(e.msprtP)],
              ["SRM p", `${p(e.srmP)}${e.srm ? " · sample ratio mismatch" : ""}`],
              ...checks.map(([name, c]) => [name, `p ${p(c.p)} · ${c.breached ? "breached" : "ok"}${c.waived ? " (waived)" : ""}`]),
            ], "evaluation") : h("p", { class: "muted" }, "Not evaluated yet (evaluateRollouts runs every 10 minutes)."),
            diffChart(series));
        }));
    };
    const stop = onSnapshot(query(collection(ctx.db, "ops_rollouts"), orderBy("startedAt", "desc"), limit(10)), (snap) => {
      list = docs(snap);
      badge.textContent = `live · ${when(Date.now())}`;
      const ids = new Set(list.map((r) => r._id));
      for (const [id, unsubscribe] of stops) {
        if (!ids.has(id)) { unsubscribe(); stops.delete(id); evals.delete(id); }
      }
      for (const r of list) {
        if (stops.has(r._id)) continue;
        stops.set(r._id, onSnapshot(collection(ctx.db, "ops_rollouts", r._id, "evaluations"), (es) => {
          evals.set(r._id, docs(es).sort((a, b) => Number(a.ts ?? a._id) - Number(b.ts ?? b._id)));
          render();
        }, () => undefined));
      }
      render();
    }, failed(body, "ops_rollouts"));
    return () => { stop(); for (const s of stops.values()) s(); };
  },
};

// ------------------------------------------------------------------------------------------------ drift and alerts

function alertDetail(a: Doc): string {
  if (a.kind === "drift") return `${a.component} ${a.metric}: ${a.statistic ?? "test"} p ${p(a.p)}`;
  if (a.kind === "config") return `${a.path ?? "config"}${a.field ? ` (${a.field})` : ""}: ${a.message ?? ""} ${a.code ? `(${a.code})` : ""}`;
  if (a.kind === "item_failed") return `${a.job ?? "job"} · ${a.item ?? ""}: ${a.error ?? ""} ${a.count ? `×${count(a.count)}` : ""}`;
  if (a.kind === "srm") return `${a.id ?? ""} ${a.version ?? ""}: sample ratio mismatch, p ${p(a.srmP)}`;
  return a.reason ?? a.message ?? "";
}

const drift: View = {
  id: "drift", title: "Drift",
  mount(el, ctx) {
    const body = h("div");
    const alertsBody = h("div");
    el.append(h("h1", {}, "Drift"), body, h("h2", {}, "Alerts"), alertsBody);
    live(el);
    const s1 = onSnapshot(collection(ctx.db, "ops_drift"), (snap) => {
      const list = docs(snap).sort((a, b) => Number(Boolean(b.drifting)) - Number(Boolean(a.drifting)) || String(a._id).localeCompare(String(b._id)));
      replace(body, list.length ? table("Drift per component (evaluateRollouts tests each metric's recent window against its baseline)",
        ["Component", "Drifting", "Metrics", "Last change point", "Tuner's change test", "Checked"],
        list.map((d) => {
          const metrics = Object.entries((d.metrics ?? {}) as Record<string, Doc>).sort(([a], [b]) => a.localeCompare(b));
          const shift: Doc | undefined = d.tunerShift;
          return [d.component ?? d._id, h("span", { class: d.drifting ? "error" : "ok" }, d.drifting ? "yes" : "no"),
            h("ul", { class: "params" }, metrics.map(([name, m]) => h("li", {},
              m.drifting ? h("mark", {}, `${name}: drifting since ${when(m.since)} (p ${p(m.p)})`) : `${name}: p ${p(m.p)}`))),
            when(d.changedAt), !("tunerShift" in d) ? "–" : shift ? `shift from ${when(shift.start)}` : "no shift", when(d.updatedAt)];
        }), "drift")
        : h("p", { class: "muted" }, "No drift checks yet (evaluateRollouts runs them)."));
    }, failed(body, "ops_drift"));
    const s2 = onSnapshot(query(collection(ctx.db, "ops_alerts"), orderBy("ts", "desc"), limit(100)), (snap) => {
      const list = docs(snap);
      replace(alertsBody, list.length ? table("Alerts, newest first", ["When", "Kind", "What"],
        list.map((a) => [when(a.ts), a.kind ?? "–", alertDetail(a)]), "alerts")
        : h("p", { class: "muted" }, "No alerts."));
    }, failed(alertsBody, "ops_alerts"));
    return () => { s1(); s2(); };
  },
};

// ------------------------------------------------------------------------------------------------ audit

/** Links of each chain among the loaded entries: seq consecutive, prevHash = the previous entry's hash,
 *  and the head names the newest (a removed tail shows). The hashes themselves are recomputed by
 *  `opsloop audit verify` (JSON number formatting differs between Python and the browser). */
function chainStatus(entries: Doc[], heads: Doc[]): { chain: string; ok: boolean; text: string }[] {
  return heads.map((head) => {
    const chain = String(head._id);
    const mine = entries.filter((e) => e.chain === chain).sort((a, b) => a.seq - b.seq);
    const last = mine[mine.length - 1];
    if (!last) return { chain, ok: true, text: `${head.seq} entries, none among the newest shown: not checked here` };
    for (let i = 1; i < mine.length; i += 1) {
      if (mine[i].seq !== mine[i - 1].seq + 1) continue;
      if (mine[i].prevHash !== mine[i - 1].hash) {
        return { chain, ok: false, text: `broken at seq ${mine[i].seq}: its prevHash is not the hash of seq ${mine[i - 1].seq}` };
      }
    }
    if (last.seq < head.seq) return { chain, ok: false, text: `broken: the head names seq ${head.seq}, the newest entry is seq ${last.seq}` };
    if (last.seq > head.seq) return { chain, ok: false, text: `broken: entry seq ${last.seq} is past the head (${head.seq})` };
    if (last.hash !== head.hash) return { chain, ok: false, text: `broken: the head's hash is not the newest entry's (seq ${head.seq})` };
    return { chain, ok: true, text: `links consistent: ${head.seq} entries, the ${mine.length} shown checked` };
  });
}

const audit: View = {
  id: "audit", title: "Audit",
  mount(el, ctx) {
    const chainsBody = h("div");
    const body = h("div");
    el.append(h("h1", {}, "Audit trail"), h("h2", {}, "Hash chains"), chainsBody, h("h2", {}, "Newest entries"), body);
    const badge = live(el);
    let entries: Doc[] = [];
    let heads: Doc[] = [];
    const render = (): void => {
      const st = chainStatus(entries, heads);
      replace(chainsBody, st.length ? table("Chain status", ["Chain", "Status"], st.map((s) => [s.chain,
        h("span", { class: s.ok ? "ok" : "error" }, s.text)]), "chains") : h("p", { class: "muted" }, "No chains yet."));
      replace(body, table("Audit entries, newest first", ["When", "Actor", "Via", "Action", "Policy", "From → to", "Reason", "Chain · seq"],
        entries.map((a) => [when(a.ts), a.actorEmail ? `${a.actorEmail} (${a.actor})` : String(a.actor ?? "–"), a.via ?? "–",
          a.action ?? "–", a.id ?? "–", `${a.from ?? "–"} → ${a.to ?? "–"}`, a.reason ?? "", `${a.chain ?? "–"} · ${a.seq ?? "–"}`]), "audit"));
    };
    const s1 = onSnapshot(query(collection(ctx.db, "ops_audit"), orderBy("ts", "desc"), limit(100)), (snap) => {
      entries = docs(snap);
      badge.textContent = `live · ${when(Date.now())}`;
      render();
    }, failed(body, "ops_audit"));
    const s2 = onSnapshot(collection(ctx.db, "ops_audit_chains"), (snap) => { heads = docs(snap); render(); }, failed(chainsBody, "ops_audit_chains"));
    return () => { s1(); s2(); };
  },
};

// ------------------------------------------------------------------------------------------------ learning

const learning: View = {
  id: "learning", title: "Learning",
  mount(el, ctx) {
    const out = outcomeBox();
    const flagsBody = h("div");
    const body = h("div");
    el.append(h("h1", {}, "Learning"), h("h2", {}, "Flags"), out, flagsBody, h("h2", {}, "Is the loop learning?"), body);
    live(el);
    const s1 = onSnapshot(doc(ctx.db, "config", "flags"), (snap) => {
      const flags: Doc = (snap.data() ?? {}).learning ?? {};
      const enabled = h("input", { type: "checkbox", id: "flag-enabled", checked: flags.enabled !== false }) as HTMLInputElement;
      const auto = h("input", { type: "checkbox", id: "flag-auto", checked: flags.autoActivatePolicies === true }) as HTMLInputElement;
      replace(flagsBody, h("form", {
        class: "flags",
        onsubmit: async (ev: Event) => {
          ev.preventDefault();
          const next = { enabled: enabled.checked, autoActivatePolicies: auto.checked };
          const ok = await confirmDialog("Change the learning flags?",
            `Learning ${next.enabled ? "on" : "off (no draft, shadow, canary or promotion)"}; auto-activation ${next.autoActivatePolicies ? "on" : "off"}.`,
            [], "Save flags");
          if (ok) await act(out, ctx, "setLearningFlags", next, "Flags saved.");
        },
      },
        h("p", {}, `Now: learning ${flags.enabled === false ? "off" : "on"}, auto-activation ${flags.autoActivatePolicies ? "on" : "off"}.`),
        h("label", { for: "flag-enabled" }, enabled, " Learning enabled"),
        h("label", { for: "flag-auto" }, auto, " Auto-activate policies"),
        h("button", { type: "submit" }, "Save flags")));
    }, failed(flagsBody, "config/flags"));
    const s2 = onSnapshot(collection(ctx.db, "ops_learning"), (snap) => {
      const list = docs(snap);
      replace(body, list.length ? null : h("p", { class: "muted" }, "No learning records yet (evaluateRollouts refreshes them)."),
        ...list.map((l) => {
          const s: Doc = l.summary ?? {};
          const r: Doc = l.rates ?? {};
          return h("section", { "aria-label": `Learning of ${l.id}` },
            h("h3", {}, l.id),
            h("p", {}, `${count(s.changes)} changes, ${count(s.measured)} measured: ${count(s.improved)} improved, ${count(s.worsened)} worsened; mean effect ${num(s.meanDiff)}; median time to fix ${duration(s.medianTimeToFixMs)}; rollback rate ${pct(r.rollbackRate)}.`),
            table(`Changes of ${l.id}, newest first`, ["When", "Action", "By", "Version", "Effect on reward", "Final"],
              (l.changes ?? []).slice(0, 20).map((c: Doc) => [when(c.ts), c.action ?? "–", c.auto ? "loop" : String(c.actor ?? "–"),
                `${c.from ?? "–"} → ${c.to ?? "–"}`,
                c.effect && c.effect.diff !== null && c.effect.diff !== undefined
                  ? `${num(c.effect.diff)} [${num(c.effect.ciLow)}, ${num(c.effect.ciHigh)}]` : (c.note ?? "–"),
                c.effect?.final ? "yes" : "not yet"]), "learning"));
        }));
    }, failed(body, "ops_learning"));
    return () => { s1(); s2(); };
  },
};

// ------------------------------------------------------------------------------------------------ experiments

const experimentsView: View = {
  id: "experiments", title: "Experiments",
  mount(el, ctx) {
    const body = h("div");
    el.append(h("h1", {}, "Experiments"),
      h("p", { class: "muted" }, "Every canary that ended: what the tuner learns from (any policy kind)."), body);
    const badge = live(el);
    return onSnapshot(query(collection(ctx.db, "ops_experiments"), orderBy("endedAt", "desc"), limit(100)), (snap) => {
      const list = docs(snap);
      badge.textContent = `live · ${when(Date.now())}`;
      replace(body, list.length ? table("Ended canaries, newest first",
        ["Policy", "Kind", "Version vs champion", "Outcome", "Decided by", "n champion / challenger", "Difference [interval]", "Ended"],
        list.map((x) => [x.id, x.kind ?? "–", `${x.version} vs ${x.champion}`, x.outcome ?? "–", String(x.decidedBy ?? "–"),
          `${count(x.nChampion)} / ${count(x.nChallenger)}`, `${num(x.diff)} [${num(x.ciLow)}, ${num(x.ciHigh)}]`, when(x.endedAt)]),
        "experiments") : h("p", { class: "muted" }, "No canary has ended yet."));
    }, failed(body, "ops_experiments"));
  },
};

// ------------------------------------------------------------------------------------------------ events

const eventsView: View = {
  id: "events", title: "Events",
  mount(el, ctx) {
    const body = h("div");
    el.append(h("h1", {}, "Events"), h("p", { class: "muted" },
      "What deliverEvents sent to Pub/Sub and the webhook (config/events), is retrying, or gave up on."), body);
    const badge = live(el);
    return onSnapshot(query(collection(ctx.db, "ops_events"), orderBy("createdAt", "desc"), limit(100)), (snap) => {
      badge.textContent = `live · ${when(Date.now())}`;
      const list = docs(snap);
      replace(body, list.length ? table("Events, newest first", ["When", "Type", "What", "Status", "Sinks", "Attempts", "Last error"],
        list.map((x) => [when(x.event?.ts), String(x.event?.type ?? "–").replace(/^opsloop\./, ""), x.event?.summary ?? "–",
          h("span", { class: x.status === "dead" ? "error" : x.status === "delivered" ? "ok" : "" }, x.status ?? "–"),
          value(x.sinks), count(x.attempts), x.lastError ?? ""]), "events")
        : h("p", { class: "muted" }, "No events yet."));
    }, failed(body, "ops_events"));
  },
};

// ------------------------------------------------------------------------------------------------ config

const configView: View = {
  id: "config", title: "Config",
  mount(el, ctx) {
    const body = h("div");
    el.append(h("h1", {}, "Config"), h("p", { class: "muted" },
      "The loop's config documents as stored (reward terms, scoring, tuning, rollout gates, drift). ",
      "They change through the CLI (opsloop reward adopt, opsloop config) and are audited there."), body);
    live(el);
    return onSnapshot(collection(ctx.db, "config"), (snap) => {
      replace(body, ...docs(snap).sort((a, b) => a._id.localeCompare(b._id)).map((d) => {
        const flat = Object.entries(flatten(Object.fromEntries(Object.entries(d).filter(([k]) => k !== "_id"))));
        return table(`config/${d._id}`, ["Setting", "Value"], flat.map(([k, v]) => [k, value(v)]), "config");
      }));
    }, failed(body, "config"));
  },
};

export const VIEWS: View[] = [components, policies, rollouts, experimentsView, drift, eventsView, audit, learning,
  configView];
