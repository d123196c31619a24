"""Dataset export: observations joined with their rewards, to Parquet, with a manifest.

Offline analysis and training start from a reproducible snapshot: rows come in (ts, id) order, a page
at a time (one Parquet row group per page, so memory holds one page however many rows there are), and
the manifest records the row count, the time range, the reward versions and a content hash over the
rows' canonical JSON, which is the same for the same data whatever Parquet writer wrote the file.
The file appears under its final name only once it is complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import InvalidArgument
from . import shards as shard_service
from .ports import Store

MANIFEST_VERSION = 1

# (column, pyarrow type name); the order is the file's column order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "string"), ("ts", "int64"), ("component", "string"), ("outcome", "string"),
    ("durationMs", "float64"), ("tokensIn", "int64"), ("tokensOut", "int64"), ("costUsd", "float64"),
    ("policyVersion", "string"), ("arm", "string"), ("propensity", "float64"), ("weight", "float64"),
    ("errorCode", "string"), ("meta", "string"), ("receivedAt", "int64"),
    ("scored", "bool"), ("reward", "float64"), ("rewardVersion", "string"), ("rewardInvalid", "bool"),
    ("successBoost", "float64"), ("latencyPenalty", "float64"), ("costPenalty", "float64"),
    ("errorPenalty", "float64"),
)


@dataclass
class ExportResult:
    path: Path
    manifest_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def _ms(value: Any) -> int | None:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return None if value is None else int(value)


def _coerce(value: Any, kind: str) -> Any:
    """The column's type, or None: a document written around validation must not stop the export."""
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind == "bool":
        return bool(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == "int64":  # a fractional ms time keeps its whole ms; NaN/inf have no integer
        return int(value) if math.isfinite(value) else None
    return float(value)


def row(obs_id: str, obs: dict[str, Any], reward: dict[str, Any] | None) -> dict[str, Any]:
    """One exported row: the observation's fields and its reward (None where it is not scored yet)."""
    raw = _raw_row(obs_id, obs, reward)
    return {name: _coerce(raw[name], kind) for name, kind in COLUMNS}


def _raw_row(obs_id: str, obs: dict[str, Any], reward: dict[str, Any] | None) -> dict[str, Any]:
    details = (reward or {}).get("details") or {}
    meta = obs.get("meta")
    return {
        "id": obs_id, "ts": obs.get("ts"), "component": obs.get("component"), "outcome": obs.get("outcome"),
        "durationMs": obs.get("durationMs"), "tokensIn": obs.get("tokensIn"), "tokensOut": obs.get("tokensOut"),
        "costUsd": obs.get("costUsd"), "policyVersion": obs.get("policyVersion"), "arm": obs.get("arm"),
        "propensity": obs.get("propensity"), "weight": obs.get("weight"), "errorCode": obs.get("errorCode"),
        # default=str: a client may store a timestamp or bytes inside meta
        "meta": None if meta is None else json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str),
        "receivedAt": _ms(obs.get("receivedAt")),
        "scored": reward is not None, "reward": (reward or {}).get("score"),
        "rewardVersion": (reward or {}).get("rewardVersion"), "rewardInvalid": bool((reward or {}).get("invalid")),
        "successBoost": details.get("successBoost"), "latencyPenalty": details.get("latencyPenalty"),
        "costPenalty": details.get("costPenalty"), "errorPenalty": details.get("errorPenalty"),
    }


# Times the CLI takes (--since/--until/--at): from the epoch (no observation is older) to 9999-01-01, which
# leaves a datetime room for every window and bucket added to it.
EARLIEST_TIME_MS = 0
LATEST_TIME_MS = 253_370_764_800_000  # 9999-01-01T00:00Z
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII only: str.isdigit() also passes '²', which int() refuses


def parse_time(value: str, name: str) -> int:
    """ms since epoch from an ISO date/time (UTC unless it says otherwise) or an integer of ms.

    Anything else, or a time outside [1970-01-01, 9999-01-01), is InvalidArgument naming ``--name``.
    """
    text = value.strip()
    if _MS_TEXT.fullmatch(text):
        digits = text.lstrip("+-").lstrip("0")
        # more digits than LATEST_TIME_MS has is out of range; int() of thousands of digits would even raise
        ms = int(text) if len(digits) <= len(str(LATEST_TIME_MS)) else None
    else:
        try:
            t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(f"--{name} must be an ISO date/time (2026-11-30 or 2026-11-30T12:00Z) or whole "
                                  f"ms since epoch, got {value!r}", {"field": name}) from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        ms = (t - _EPOCH) // dt.timedelta(milliseconds=1)  # exact, and floored: 1969's last µs is not 0
    if ms is None or not EARLIEST_TIME_MS <= ms < LATEST_TIME_MS:
        raise InvalidArgument(f"--{name} is out of range: {value.strip()[:40]!r} is not between 1970-01-01 and "
                              f"9999-01-01 (UTC), i.e. {EARLIEST_TIME_MS}..{LATEST_TIME_MS - 1} ms",
                              {"field": name})
    return ms


def _rows(store: Store, since_ms: int, until_ms: int, components: list[str] | None,
          page_size: int) -> Iterator[list[dict[str, Any]]]:
    """Pages of joined rows in (ts, id) order; with components, one ordered stream per component merged."""
    def joined(pages: Iterator[list[tuple[str, dict[str, Any]]]]) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
        """Each row with its sort key: the stored (ts, id), as the queries order them."""
        for page in pages:
            rewards = store.observations.rewards_for([i for i, _ in page])
            yield [((d.get("ts"), i), row(i, d, rewards.get(i))) for i, d in page]

    keys = shard_service.stored_keys(store)  # observations are read key by key (see domain/shards)
    if not components:
        for keyed in joined(store.observations.pages(since_ms, until_ms, None, page_size, keys)):
            yield [r for _, r in keyed]
        return

    def flat(comp: str) -> Iterator[tuple[Any, dict[str, Any]]]:
        for keyed in joined(store.observations.pages(since_ms, until_ms, comp, page_size, keys)):
            yield from keyed

    merged = heapq.merge(*(flat(c) for c in components), key=lambda kr: kr[0])
    page: list[dict[str, Any]] = []
    for _, r in merged:
        page.append(r)
        if len(page) == page_size:
            yield page
            page = []
    if page:
        yield page


def check_out(out: Path) -> None:
    """Refuse, before anything is written, an ``--out`` that cannot become a file beside its manifest."""
    paths = [out, _manifest_path(out)] if out.name else [out]  # a name-less path ('.', '/') is a directory
    for path in paths:
        if path.is_dir():
            raise InvalidArgument(f"--out {str(out)!r}: {str(path)!r} is a directory; name the Parquet file to "
                                  f"write (e.g. {str(out / 'ds.parquet')!r})", {"field": "out"})
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist (create it first)"
        raise InvalidArgument(f"--out {str(out)!r}: the directory {str(out.parent)!r} {what}", {"field": "out"})


def _manifest_path(out: Path) -> Path:
    return out.with_name(out.name + ".manifest.json")


def export_dataset(
    store: Store,
    out: Path,
    since_ms: int,
    until_ms: int,
    components: list[str] | None = None,
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write ``out`` (Parquet) and ``out`` + ``.manifest.json``; returns both paths and the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if until_ms <= since_ms:
        raise InvalidArgument(f"--until must be after --since (got {since_ms} .. {until_ms})", {"field": "until"})
    if page_size < 1:
        raise InvalidArgument(f"page size must be >= 1, got {page_size!r}", {"field": "page_size"})
    comps = sorted(set(components)) if components else None
    schema = pa.schema([(name, getattr(pa, "bool_" if kind == "bool" else kind)()) for name, kind in COLUMNS])
    out = Path(out)
    check_out(out)
    manifest_path = _manifest_path(out)
    tmp = out.with_name(f".{out.name}.partial")
    manifest_tmp = out.with_name(f".{manifest_path.name}.partial")
    content = hashlib.sha256()
    rows = unscored = invalid = row_groups = 0
    ts_min: int | None = None
    ts_max: int | None = None
    versions: dict[str, int] = {}
    per_component: dict[str, int] = {}
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for page in _rows(store, since_ms, until_ms, comps, page_size):
                for r in page:
                    content.update(json.dumps(r, sort_keys=True, separators=(",", ":")).encode())
                    content.update(b"\n")
                    if r["scored"]:
                        key = str(r["rewardVersion"])
                        versions[key] = versions.get(key, 0) + 1
                        invalid += int(r["rewardInvalid"])
                    else:
                        unscored += 1
                    per_component[str(r["component"])] = per_component.get(str(r["component"]), 0) + 1
                ts_min = page[0]["ts"] if ts_min is None else ts_min
                ts_max = page[-1]["ts"]
                writer.write_table(pa.Table.from_pylist(page, schema=schema))
                rows += len(page)
                row_groups += 1
                if progress is not None:
                    progress(len(page))
            if rows == 0:
                writer.write_table(pa.Table.from_pylist([], schema=schema))
        manifest = {
            "manifestVersion": MANIFEST_VERSION,
            "file": out.name,
            "format": "parquet",
            "rows": rows,
            "rowGroups": row_groups,
            "requested": {"since": since_ms, "until": until_ms, "components": comps},
            "timeRange": {"tsMin": ts_min, "tsMax": ts_max},
            "components": dict(sorted(per_component.items())),
            "rewardVersions": dict(sorted(versions.items())),
            "unscored": unscored,
            "invalid": invalid,
            "order": ["ts", "id"],
            "columns": [{"name": n, "type": t} for n, t in COLUMNS],
            "contentSha256": content.hexdigest(),
        }
        _publish(tmp, out, manifest, manifest_tmp, manifest_path)
    except BaseException:  # nothing half-written stays behind, whatever failed
        tmp.unlink(missing_ok=True)
        manifest_tmp.unlink(missing_ok=True)
        raise
    return ExportResult(out, manifest_path, manifest)


def _publish(tmp: Path, out: Path, manifest: dict[str, Any], manifest_tmp: Path, manifest_path: Path) -> None:
    """Seal the finished file's hash into its manifest, then put both under their final names."""
    file_hash = hashlib.sha256()
    with open(tmp, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            file_hash.update(block)
    manifest.update(fileSha256=file_hash.hexdigest(), createdAt=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_path.unlink(missing_ok=True)  # never an older export's manifest beside the new file
    os.replace(tmp, out)
    os.replace(manifest_tmp, manifest_path)


# The experiment registry's columns; params as canonical JSON (their keys differ from policy to policy).
EXPERIMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experimentId", "string"), ("id", "string"), ("kind", "string"), ("version", "string"),
    ("champion", "string"), ("outcome", "string"), ("decidedBy", "string"), ("split", "float64"),
    ("startedAt", "int64"), ("endedAt", "int64"), ("nChampion", "int64"), ("nChallenger", "int64"),
    ("meanChampion", "float64"), ("meanChallenger", "float64"), ("diff", "float64"), ("ciLow", "float64"),
    ("ciHigh", "float64"), ("params", "string"), ("championParams", "string"), ("reason", "string"),
)


def experiment_row(doc: dict[str, Any]) -> dict[str, Any]:
    raw = {**doc, "params": json.dumps(doc.get("params") or {}, sort_keys=True),
           "championParams": json.dumps(doc.get("championParams") or {}, sort_keys=True)}
    return {name: _coerce(raw.get(name), kind) for name, kind in EXPERIMENT_COLUMNS}


def export_experiments(store: Store, out: Path, since_ms: int | None = None,
                       until_ms: int | None = None) -> ExportResult:
    """``ops_experiments`` (ended in [since, until) when given) to Parquet, oldest first, with a manifest."""
    from . import experiments

    out = Path(out)
    check_out(out)
    docs = [d for d in experiments.experiments(store, limit=1_000_000)
            if (since_ms is None or int(d.get("endedAt") or 0) >= since_ms)
            and (until_ms is None or int(d.get("endedAt") or 0) < until_ms)]
    rows = [experiment_row(d) for d in sorted(docs, key=lambda d: (d.get("endedAt") or 0, str(d.get("experimentId"))))]
    return _write_rows(out, "experiments", rows, EXPERIMENT_COLUMNS, {
        "requested": {"since": since_ms, "until": until_ms}, "order": ["endedAt", "experimentId"],
        "outcomes": {o: sum(r["outcome"] == o for r in rows) for o in sorted({str(r["outcome"]) for r in rows})}})


LEARNING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("policyId", "string"), ("auditId", "string"), ("ts", "int64"), ("action", "string"), ("actor", "string"),
    ("auto", "bool"), ("from", "string"), ("to", "string"), ("windowMs", "int64"), ("beforeN", "int64"),
    ("beforeMean", "float64"), ("afterN", "int64"), ("afterMean", "float64"), ("diff", "float64"),
    ("ciLow", "float64"), ("ciHigh", "float64"), ("final", "bool"), ("timeToFixMs", "int64"),
)


def learning_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per change of a policy's ``ops_learning`` record, oldest first."""
    rows = []
    for change in reversed(doc.get("changes") or []):
        raw = {**change, **(change.get("effect") or {}), "policyId": doc.get("id")}
        rows.append({name: _coerce(raw.get(name), kind) for name, kind in LEARNING_COLUMNS})
    return rows


def export_learning(store: Store, out: Path) -> ExportResult:
    """Every change of every policy's learning record (``ops_learning``) to Parquet, with a manifest."""
    out = Path(out)
    check_out(out)
    docs = sorted(store.learning.all(), key=lambda d: str(d.get("id")))
    rows = [row for d in docs for row in learning_rows(d)]
    policies = {str(d.get("id")): {"rates": d.get("rates"), "summary": d.get("summary")} for d in docs}
    return _write_rows(out, "learning", rows, LEARNING_COLUMNS, {"order": ["policyId", "ts"], "policies": policies})


def _write_rows(out: Path, dataset: str, rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...],
                extra: dict[str, Any]) -> ExportResult:
    """``rows`` to Parquet at ``out`` and its manifest beside it, both published only once written whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, "bool_" if kind == "bool" else kind)()) for name, kind in columns])
    manifest_path = _manifest_path(out)
    tmp, manifest_tmp = out.with_name(f".{out.name}.partial"), out.with_name(f".{manifest_path.name}.partial")
    content = hashlib.sha256("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n"
                                     for r in rows).encode())
    manifest: dict[str, Any] = {
        "manifestVersion": MANIFEST_VERSION, "file": out.name, "format": "parquet", "dataset": dataset,
        "rows": len(rows), **extra,
        "columns": [{"name": n, "type": t} for n, t in columns], "contentSha256": content.hexdigest(),
    }
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, compression="zstd")
        _publish(tmp, out, manifest, manifest_tmp, manifest_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        manifest_tmp.unlink(missing_ok=True)
        raise
    return ExportResult(out, manifest_path, manifest)
