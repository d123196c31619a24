"""Plain-text rendering for the terminal: tables, a policy diff, a skill card."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any


def when(ms: Any) -> str:
    """A stored ms time as UTC date and minute; the raw number when no date can show it (NaN, year 10000)."""
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return "-"
    try:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, ValueError, OSError):  # a document written around validation must not stop a listing
        return f"{ms!r} ms"


def num(value: Any, fmt: str) -> str:
    if value is None or isinstance(value, bool):
        return "-"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Columns padded to their widest cell; numbers (strings that look numeric) right-aligned."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def numeric(text: str) -> bool:
        return text.replace(".", "", 1).replace("-", "", 1).replace("%", "").replace("$", "").strip().isdigit()

    lines = []
    for j, r in enumerate(cells):
        parts = [c.rjust(w) if j and numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


WINDOW_ORDER = {"1h": 0, "24h": 1, "7d": 2}


def stats_table(stats: list[dict[str, Any]]) -> str:
    rows = []
    for s in sorted(stats, key=lambda d: (str(d.get("component")), WINDOW_ORDER.get(str(d.get("window")), 9))):
        rows.append([s.get("component"), s.get("window"), num(s.get("n"), "d"),
                     num(None if s.get("successRate") is None else 100 * s["successRate"], ".1f") + "%",
                     num(s.get("p50Latency"), ".0f"), num(s.get("p95Latency"), ".0f"),
                     num(s.get("avgCostUsd"), ".4f"), num(s.get("avgReward"), ".3f"), when(s.get("ts"))])
    return table(rows, ["component", "window", "n", "success", "p50 ms", "p95 ms", "cost $", "reward", "as of"])


def flatten(params: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay whole (shown as JSON)."""
    if not isinstance(params, dict):
        return {prefix: params}
    out: dict[str, Any] = {}
    for key in sorted(params):
        path = f"{prefix}.{key}" if prefix else str(key)
        value = params[key]
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def params_diff(left: dict[str, Any], right: dict[str, Any], left_name: str,
                right_name: str) -> tuple[str, dict[str, list[Any]]]:
    """Params side by side (flattened); returns the table and the keys that differ -> [left, right]."""
    a, b = flatten(left.get("params") or {}), flatten(right.get("params") or {})
    rows, changed = [], {}
    for key in sorted(set(a) | set(b)):
        differs = a.get(key) != b.get(key)
        if differs:
            changed[key] = [a.get(key), b.get(key)]
        rows.append(["*" if differs else " ", key, _cell(a.get(key)), _cell(b.get(key))])
    return table(rows, [" ", "param", left_name, right_name]), changed


def card_text(card: dict[str, Any]) -> str:
    lines = [f"skill card: {card.get('component')}  ({card.get('kind')}, basis {card.get('basis')}, "
             f"as of {when(card.get('ts'))})"]
    if not card.get("judged"):
        lines.append(f"  not judged: {card.get('reason')}")
    if card.get("kind") == "router":
        best = card.get("bestModel")
        if best:
            lines.append(f"  best model: {best['model']}  reward {best['reward']:.3f} "
                         f"(95% CI {best['ci'][0]:.3f}..{best['ci'][1]:.3f}, n={best['n']})"
                         + ("  clear winner" if best.get("clearWinner") else "  not clearly better than the next"))
            for r in best.get("ranking", [])[1:]:
                lines.append(f"    then {r['model']}: {r['reward']:.3f} ({r['ci'][0]:.3f}..{r['ci'][1]:.3f})")
        lines.append(f"  policy version in use: {card.get('activeVersion')}"
                     + (f"; {card['rollout']['stage']} of {card['rollout']['version']} at split "
                        f"{card['rollout']['split']}" if card.get("rollout") else ""))
        lines.append("  weights: " + ", ".join(f"{m} {w:.3f}" for m, w in (card.get("weights") or {}).items()))
        return "\n".join(lines)
    for title, key in (("strengths", "strengths"), ("weaknesses", "weaknesses")):
        items = card.get(key) or []
        lines.append(f"  {title}:" + (" none" if not items else ""))
        lines.extend(f"    + {i['text']}" if key == "strengths" else f"    - {i['text']}" for i in items)
    for title, key in (("failure modes (24h)", "failureModes"), ("failure modes (7d)", "failureModes7d")):
        modes = card.get(key) or []
        lines.append(f"  {title}: " + (", ".join(f"{m['code']} x{m['count']} ({100 * m['share']:.0f}%)"
                                                 for m in modes) or "none"))
    for name, t in sorted((card.get("trends") or {}).items(), key=lambda kv: int(kv[0].rstrip("d"))):
        slope = t.get("slopePerDay")
        lines.append(f"  reward trend {name}: {t.get('direction')}"
                     + ("" if slope is None else f" ({slope:+.4f}/day, p={t.get('p')}, {t.get('points')} days)")
                     + ("" if t.get("reward") is None else f", mean {t['reward']:.3f}"))
    versions = card.get("policyVersions") or []
    lines.append("  policy versions seen: " + (", ".join(f"{v['version']} ({100 * v['share']:.0f}%)"
                                                         for v in versions) or "none"))
    gov = card.get("governedBy")
    if gov:
        lines.append(f"  governed by {gov['policy']}@{gov['activeVersion']} (weight {gov['weight']:.3f})")
    return "\n".join(lines)
