"""``opsloop report``: one self-contained HTML page, charts embedded as PNG data URIs.

Every chart carries ``data-points`` (how many values it plots), and the page marks itself with
``data-charts-loaded`` once its images decode, so a headless browser can check it rendered with data.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from typing import Any

from ..services.report import ReportData
from .render import flatten, when

METRICS: tuple[tuple[str, str, float], ...] = (
    ("reward", "mean reward", 1.0),
    ("successRate", "success rate", 1.0),
    ("p95Latency", "p95 latency (ms)", 1.0),
    ("costUsd", "mean cost (USD)", 1.0),
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d8dde6;padding-bottom:4px}
.sub{color:#5b6577}table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #d8dde6;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
.diff{background:#fff4d6}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #d8dde6;padding:6px}figcaption{font-size:12px;color:#5b6577}
.card{background:#fff;border:1px solid #d8dde6;padding:8px 12px;margin:8px 0;max-width:900px}
.good{color:#1a7f37}.bad{color:#c62828}.empty{color:#8a93a3;font-style:italic}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.chart'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-charts-loaded', String(ok));
  document.body.setAttribute('data-charts-total', String(imgs.length));
});
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str, points: int) -> str:
    return (f'<img class="chart" alt="{html.escape(alt)}" data-points="{points}" '
            f'src="data:image/png;base64,{b64}">')


def _e(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, sort_keys=True))
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="n">{_e(c)}</td>' if isinstance(c, int | float) and not isinstance(c, bool)
                        else f"<td>{_e(c)}</td>" for c in r)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metric_charts(data: ReportData) -> list[tuple[str, str, int]]:
    """One chart per metric, a line per component: (title, png base64, points plotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = []
    for key, title, _ in METRICS:
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        points = 0
        for s in data.series:
            xs = [float(mdates.date2num(dt.datetime.fromtimestamp(p["start"] / 1000, dt.UTC)))  # type: ignore[no-untyped-call]
                  for p in s.points if p[key] is not None]
            ys = [p[key] for p in s.points if p[key] is not None]
            if xs:
                ax.plot(xs, ys, marker=".", linewidth=1.2, label=s.component)
                points += len(ys)
        ax.set_title(f"{title} per {data.series[0].level if data.series else '1h'} bucket", fontsize=10)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if points:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        fig.autofmt_xdate()
        out.append((title, _png(fig), points))
        plt.close(fig)
    return out


def evaluation_chart(rollout: dict[str, Any]) -> tuple[str, int] | None:
    """Reward difference (challenger - champion) with its 95 % interval at each evaluation."""
    evals = [e for e in rollout.get("evaluations") or [] if e.get("diff") is not None]
    if not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    xs = list(range(1, len(evals) + 1))
    diffs = [float(e["diff"]) for e in evals]
    lows = [float(e["ciLow"]) if e.get("ciLow") is not None else d for e, d in zip(evals, diffs, strict=True)]
    highs = [float(e["ciHigh"]) if e.get("ciHigh") is not None else d for e, d in zip(evals, diffs, strict=True)]
    ax.errorbar(xs, diffs, yerr=[[d - lo for d, lo in zip(diffs, lows, strict=True)],
                                 [hi - d for d, hi in zip(diffs, highs, strict=True)]], fmt="o", capsize=4)
    ax.axhline(0.0, color="#888", linewidth=0.8)
    ax.set_xlabel("evaluation", fontsize=8)
    ax.set_ylabel("reward diff", fontsize=8)
    ax.set_title(f"{rollout.get('id')}@{rollout.get('version')} vs {rollout.get('champion')}: "
                 "challenger - champion, 95% CI", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    b64 = _png(fig)
    plt.close(fig)
    return b64, len(evals)


def _policies_html(data: ReportData) -> str:
    parts = []
    for p in data.policies:
        active = p.get("active") or {}
        cands = p.get("candidates") or []
        names = [f"active {active.get('version', '-')}"] + [f"{c.get('status')} {c.get('version')}" for c in cands]
        flat = [flatten(active.get("params") or {})] + [flatten(c.get("params") or {}) for c in cands]
        keys = sorted(set().union(*flat)) if flat else []
        rows, classes = [], []
        for k in keys:
            values = [f.get(k) for f in flat]
            rows.append([k, *values])
            classes.append("diff" if any(v != values[0] for v in values[1:]) else "")
        parts.append(f"<h3>{_e(p.get('id'))}</h3>" + _table(["param", *names], rows, classes))
    return "".join(parts) or '<p class="empty">no policies</p>'


def _rollouts_html(data: ReportData) -> str:
    parts = []
    for r in data.rollouts:
        last = r.get("lastEvaluation") or {}
        parts.append(f"<h3>{_e(r.get('id'))}@{_e(r.get('version'))} — {_e(r.get('stage'))}, {_e(r.get('status'))}"
                     f", split {_e(r.get('split'))}, champion {_e(r.get('champion'))}</h3>")
        rows = [[when(e.get("ts")), e.get("outcome"), e.get("nChampion"), e.get("nChallenger"), e.get("diff"),
                 e.get("ciLow"), e.get("ciHigh"), e.get("welchP"), e.get("lookP"), e.get("msprtP"), e.get("srmP"),
                 e.get("reason")]
                for e in r.get("evaluations") or []]
        parts.append(_table(["time", "outcome", "n champion", "n challenger", "diff", "CI low", "CI high",
                             "Welch p", "always-valid p (this look)", "running min", "SRM p", "reason"], rows))
        checks = last.get("checks") or {}
        if checks:  # the guardrails' evidence, like the reward test's: statistic, always-valid p, threshold
            parts.append(_table(["check (latest)", "statistic", "threshold", "always-valid p", "level", "breached"],
                                [[name, c.get("statistic"), c.get("threshold"), c.get("p"), c.get("alpha"),
                                  c.get("breached")] for name, c in sorted(checks.items())],
                                ["diff" if c.get("breached") else "" for _, c in sorted(checks.items())]))
        chart = evaluation_chart(r)
        if chart is not None:
            parts.append(f"<figure>{_img(chart[0], 'rollout evaluations', chart[1])}"
                         f"<figcaption>latest: {_e(last.get('outcome'))}</figcaption></figure>")
    return "".join(parts) or '<p class="empty">no rollouts yet</p>'


def _experiments_html(data: ReportData) -> str:
    """Every canary that ended: what the challenger changed, each arm's reward, the outcome."""
    rows = []
    for e in data.experiments:
        champion, params = flatten(e.get("championParams") or {}), flatten(e.get("params") or {})
        changed = ", ".join(f"{k} {champion.get(k)!r} → {v!r}" for k, v in sorted(params.items())
                            if champion.get(k) != v)
        rows.append([e.get("id"), f"{e.get('champion')} → {e.get('version')}", e.get("outcome"), when(e.get("endedAt")),
                     e.get("nChampion"), e.get("nChallenger"), e.get("meanChampion"), e.get("meanChallenger"),
                     e.get("diff"), e.get("ciLow"), e.get("ciHigh"), changed or "–", e.get("decidedBy")])
    if not rows:
        return '<p class="empty">no experiments yet (a canary records one when it ends)</p>'
    return _table(["policy", "versions", "outcome", "ended", "n champion", "n challenger", "reward champion",
                   "reward challenger", "diff", "CI low", "CI high", "changed", "decided by"], rows)


LEARNING_CHARTS = 6  # changes charted per policy, newest first


def learning_chart(policy_id: str, change: dict[str, Any]) -> tuple[str, str, int] | None:
    """Reward per 5-minute bucket around one change (minutes from it), both matched windows shaded."""
    series = change.get("series") or []
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = int(change["ts"])
    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    xs = [(int(p["start"]) + 150_000 - ts) / 60_000 for p in series]  # bucket midpoints
    ax.plot(xs, [float(p["reward"]) for p in series], marker=".", linewidth=1.2)
    spans = ((change.get("before") or (ts, ts), "#c9d6ea"), (change.get("after") or (ts, ts), "#cfe8d4"))
    for (lo, hi), colour in spans:
        ax.axvspan((int(lo) - ts) / 60_000, (int(hi) - ts) / 60_000, color=colour, alpha=0.6, linewidth=0)
    ax.axvline(0.0, color="#c62828", linewidth=1.0)
    effect = change.get("effect") or {}
    diff, lo_ci, hi_ci = effect.get("diff"), effect.get("ciLow"), effect.get("ciHigh")
    title = f"{policy_id}: {change.get('action')} {change.get('from')} → {change.get('to')}"
    if diff is not None:
        title += f", {diff:+.3f}" + ("" if lo_ci is None or hi_ci is None else f" [{lo_ci:+.3f}, {hi_ci:+.3f}]")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(f"minutes from the change ({when(ts)} UTC)", fontsize=7)
    ax.set_ylabel("mean reward", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    b64 = _png(fig)
    plt.close(fig)
    return title, b64, len(series)


def _learning_html(data: ReportData) -> str:
    """Per policy: the decision rates, then a chart of the reward around each recent change."""
    parts = []
    for doc in sorted(data.learning, key=lambda d: str(d.get("id"))):
        r, sm = doc.get("rates") or {}, doc.get("summary") or {}
        rows = [[doc.get("id"), sm.get("changes"), sm.get("improved"), sm.get("worsened"), sm.get("meanDiff"),
                 r.get("rollbackRate"), r.get("draftsPerDay"), r.get("autoActivationRate"), r.get("manualOverrides"),
                 sm.get("medianTimeToFixMs")]]
        parts.append(_table(["policy", "changes", "improved", "worsened", "mean diff", "rollback rate", "drafts/day",
                             "auto-activation rate", "manual overrides", "median time to fix (ms)"], rows))
        charts = [c for c in (learning_chart(str(doc.get("id")), ch)
                              for ch in (doc.get("changes") or [])[:LEARNING_CHARTS]) if c is not None]
        parts.append('<div class="grid">' + "".join(
            f"<figure>{_img(b64, t, n)}<figcaption>{html.escape(t)}: {n} points</figcaption></figure>"
            for t, b64, n in charts) + "</div>")
    return "".join(parts) or '<p class="empty">no learning records yet (evaluateRollouts writes them)</p>'


def _cards_html(data: ReportData) -> str:
    parts = []
    for c in sorted(data.cards, key=lambda c: (str(c.get("kind")), str(c.get("component")))):
        body = []
        if c.get("kind") == "router":
            best = c.get("bestModel")
            body.append(f"best model: <b>{_e(best['model'])}</b> reward {best['reward']:.3f} "
                        f"(95% CI {best['ci'][0]:.3f}..{best['ci'][1]:.3f})" if best else "best model: not enough data")
            body.append(f"version in use: {_e(c.get('activeVersion'))}")
        else:
            body += [f'<span class="good">+ {_e(s["text"])}</span>' for s in c.get("strengths") or []]
            body += [f'<span class="bad">− {_e(w["text"])}</span>' for w in c.get("weaknesses") or []]
            modes = ", ".join(f"{_e(m['code'])} ×{m['count']}" for m in c.get("failureModes7d") or [])
            body.append(f"failure modes (7d): {modes or 'none'}")
            trends = c.get("trends") or {}
            body.append("reward trend: " + ", ".join(f"{k} {_e(t.get('direction'))}" for k, t in trends.items()))
            if not c.get("judged"):
                body.append(f'<span class="empty">{_e(c.get("reason"))}</span>')
        parts.append(f'<div class="card"><b>{_e(c.get("component"))}</b><br>' + "<br>".join(body) + "</div>")
    return "".join(parts) or '<p class="empty">no skill cards yet (they refresh hourly with scoring)</p>'


def render(data: ReportData, title: str = "opsloop report") -> str:
    charts = metric_charts(data)
    figures = "".join(f"<figure>{_img(b64, t, n)}<figcaption>{html.escape(t)}: {n} points</figcaption></figure>"
                      for t, b64, n in charts)
    stats_rows = [[s.get("component"), s.get("window"), s.get("n"), s.get("successRate"), s.get("p50Latency"),
                   s.get("p95Latency"), s.get("avgCostUsd"), s.get("avgReward")] for s in data.stats]
    audit_rows = [[when(a.get("ts")), a.get("actor"), a.get("action"), a.get("id"), a.get("from"), a.get("to"),
                   a.get("chain"), a.get("seq")] for a in data.audit]
    alert_rows = [[when(a.get("ts")), a.get("component"), a.get("metric"), a.get("statistic"), a.get("p")]
                  for a in data.alerts]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body data-charts-loaded="0">
<h1>{html.escape(title)}</h1>
<p class="sub">{data.hours} h ending {when(data.end_ms)} UTC · {len(data.series)} components</p>
<h2>Over time</h2><div class="grid">{figures}</div>
<h2>Current stats</h2>{_table(["component", "window", "n", "success rate", "p50 ms", "p95 ms", "avg cost $",
                                "avg reward"], stats_rows)}
<h2>Skill cards</h2>{_cards_html(data)}
<h2>Policies: active vs draft / shadow / canary</h2>{_policies_html(data)}
<h2>Rollout evaluations</h2>{_rollouts_html(data)}
<h2>Experiments</h2>{_experiments_html(data)}
<h2>Learning: the reward around each change</h2>{_learning_html(data)}
<h2>Drift alerts</h2>{_table(["time", "component", "metric", "statistic", "p"], alert_rows)}
<h2>Audit trail</h2>{_table(["time", "actor", "action", "policy", "from", "to", "chain", "seq"], audit_rows)}
<script>{SCRIPT}</script>
</body></html>
"""
