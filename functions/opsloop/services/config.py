"""Reading ``config/*`` once per run: a bad document never stops the loop, and never opens the kill switch.

``load`` reads every config document in one batched read and parses each (``domain/config.py``). A
document that does not parse is reported (an ``ops_alerts`` entry per distinct problem, and the run's
``configErrors``) and replaced by its last good version (kept in ``ops_runs/config-good`` whenever a
document parses and differs from it), else by the defaults. ``config/flags`` is the exception: a bad
kill switch means learning is off, whatever it said before.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
import weakref
from typing import Any

from ..domain import audit as audit_domain
from ..domain import config as config_domain
from ..domain.config import ConfigInvalid, Settings
from ..domain.windows import ms
from . import alerts
from .ports import Store

log = logging.getLogger("opsloop.config")


def load(store: Store, names: tuple[str, ...] = config_domain.NAMES) -> Settings:
    """Every named config document, parsed; problems are alerted and recorded in ``Settings.problems``."""
    raw = store.configs.get_many(names)
    settings = Settings()
    problems: list[tuple[str, str]] = []
    for name in names:
        stored = raw["docs"].get(name)
        doc = stored
        if name == config_domain.ROLLOUT and os.environ.get("LEARN_MIN_SAMPLES"):
            doc = _min_samples_from_env(doc)
        try:
            value = config_domain.parse(name, doc)
        except ConfigInvalid as exc:
            value = _fallback(name, raw["good"].get(name))
            problems.append((str(exc.details.get("path")), exc.message))
            report(store, exc, stored)
        else:
            if stored is not None and raw["good"].get(name) != stored:
                alerts.quietly(functools.partial(store.configs.save_good, name, stored), f"keep config/{name}")
        settings = settings.replace(name, value)
    return Settings(**{**settings.__dict__, "problems": tuple(problems)})


def _min_samples_from_env(doc: Any) -> Any:
    """``LEARN_MIN_SAMPLES`` stands in for a ``config/rollout.minSamples`` that is not set."""
    if not isinstance(doc, dict) and doc is not None:
        return doc
    doc = dict(doc or {})
    if "minSamples" not in doc:
        text = os.environ["LEARN_MIN_SAMPLES"].strip()
        doc["minSamples"] = int(text) if text.isdigit() else text  # a non-number is reported as invalid
    return doc


def _fallback(name: str, good: Any) -> Any:
    if name == config_domain.FLAGS:
        return config_domain.FLAGS_OFF  # fail closed: an unreadable kill switch stops learning
    try:
        return config_domain.parse(name, good)  # None (never a good one) gives the defaults
    except ConfigInvalid:  # a last good copy from an older, laxer version of the loop
        return config_domain.defaults(name)


def report(store: Store, exc: ConfigInvalid, doc: Any) -> None:
    """Log the problem and raise one ``ops_alerts`` entry per distinct (document, content)."""
    path = str(exc.details.get("path"))
    log.error("config document invalid: %s (%s)", exc.message, exc.code)
    try:
        digest = audit_domain.digest(doc if isinstance(doc, dict) else {"value": repr(doc)})
    except (TypeError, ValueError):  # content the hash cannot take (e.g. NaN): alert on its repr
        digest = audit_domain.digest({"value": repr(doc)})
    alert = {"kind": "config", "code": exc.code, "path": path, "field": exc.details.get("field"),
             "message": exc.message[:1000], "ts": ms(dt.datetime.now(dt.UTC))}
    alert_id = f"config~{path.split('/')[-1]}~{digest[:16]}"
    alerts.quietly(lambda: store.alerts.raise_once(alert_id, alert), "raise the alert")


# Ingestion reads one setting (retention) on every request: a per-process copy, refreshed every 5 minutes
# (OPSLOOP_CONFIG_CACHE_S overrides it; the tests serve the functions with 0).
CACHE_TTL_S = float(os.environ.get("OPSLOOP_CONFIG_CACHE_S", "300"))
_cache: weakref.WeakKeyDictionary[Store, dict[str, tuple[float, Any]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def cached(store: Store, name: str, ttl_s: float = CACHE_TTL_S) -> Any:
    """``load``'s settings of one document, read at most once per ``ttl_s`` per process and store."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(store, {}).get(name)
    if hit is not None and now - hit[0] < ttl_s:
        return hit[1]
    value = getattr(load(store, (name,)), _ATTRS[name])
    with _cache_lock:
        _cache.setdefault(store, {})[name] = (now, value)
    return value


_ATTRS = {config_domain.SCORING: "scoring", config_domain.FLAGS: "flags", config_domain.REWARD: "reward"}
