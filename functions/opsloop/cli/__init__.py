"""``opsloop``: the operator's command line, pointed at the emulator or a real project.

Exit codes scripts can rely on:
  0  ok
  1  a check failed (a broken audit chain)
  2  bad usage or input (unknown policy or version, malformed argument)
  3  the environment is not ready (no emulator, no credentials, functions unreachable)
  4  refused (a lifecycle rule or gate said no, learning disabled, not an admin)
  5  contention outlived every retry (safe to run again)
  6  an unexpected error (a bug: rerun with OPSLOOP_DEBUG=1 for the traceback and report it)
Errors print one line with the learning-domain code, e.g. ``error [E_LEARN_NOT_FOUND]: ...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ..services.ports import Store

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_REFUSED, EXIT_CONFLICT, EXIT_INTERNAL = range(7)


class CliError(Exception):
    """An error the CLI reports in one line with its exit code."""

    def __init__(self, message: str, exit_code: int, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.exit_code, self.code = message, exit_code, code


# Callable error status (the protocol's) and our exception classes -> exit code.
_STATUS_EXIT = {"INVALID_ARGUMENT": EXIT_USAGE, "NOT_FOUND": EXIT_USAGE, "FAILED_PRECONDITION": EXIT_REFUSED,
                "PERMISSION_DENIED": EXIT_REFUSED, "UNAUTHENTICATED": EXIT_REFUSED, "ABORTED": EXIT_CONFLICT}


def _exit_for(exc: Exception) -> int:
    from ..domain import errors

    for cls, code in ((errors.InvalidArgument, EXIT_USAGE), (errors.NotFound, EXIT_USAGE),
                      (errors.Conflict, EXIT_CONFLICT)):
        if isinstance(exc, cls):
            return code
    return EXIT_REFUSED


def _check_reachable() -> None:
    """Fail fast (instead of the client's long retries) when the emulator named is not listening."""
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if not host:
        return
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name or "127.0.0.1", int(port)), timeout=2):
            return
    except (OSError, ValueError):
        raise CliError(f"no Firestore emulator at {host}; start one with `python scripts/emulator.py start` "
                       "(or pass --emulator HOST:PORT)", EXIT_ENVIRONMENT) from None


def _check_id(value: str, what: str) -> str:
    """Ids become document ids: a '/' would address another collection (and Firestore refuses it)."""
    if not value or "/" in value:
        raise CliError(f"{what} must be a non-empty id without '/', got {value!r}", EXIT_USAGE,
                       "E_LEARN_INVALID_ARGUMENT")
    return value


def _store() -> Store:
    from ..store.client import get_db
    from ..store.firestore_store import FirestoreStore

    _check_reachable()
    return FirestoreStore(get_db())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or f"cli:{getpass.getuser()}")


def _schedule_time(args: argparse.Namespace) -> dt.datetime:
    if getattr(args, "at", None) is None:  # an empty --at (an unset shell variable) is refused, not 'now'
        return dt.datetime.now(dt.UTC)
    from ..services.export import parse_time

    return dt.datetime.fromtimestamp(parse_time(args.at, "at") / 1000, dt.UTC)


def _out_file(text: str) -> Path:
    """``--out`` as a file path; a trailing separator means a directory, which Path would silently drop."""
    if not text.strip() or text.endswith(("/", os.sep)):
        what = "is empty" if not text.strip() else "names a directory"
        raise CliError(f"--out {text!r} {what}; name the file to write", EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT")
    return Path(text)


# ------------------------------------------------------------------------------------------ status
def _cmd_status(args: argparse.Namespace) -> int:
    from .render import card_text, stats_table

    store = _store()
    if args.component:
        _check_id(args.component, "--component")
        stats = store.stats.all(args.component)
        card = store.cards.get(args.component)
        if card is None and not stats:
            raise CliError(f"no stats or skill card for component {args.component!r} (scored yet? a router "
                           f"policy's card is 'policy~<id>')", EXIT_USAGE, "E_LEARN_NOT_FOUND")
        if args.json:
            _print_json({"stats": stats, "card": card})
            return EXIT_OK
        if stats:
            print(stats_table(stats))
        print()
        print(card_text(card) if card else "no skill card yet (cards refresh hourly with scoring; "
                                           "`opsloop score --cards` refreshes now)")
        return EXIT_OK
    stats = [s for s in store.stats.all() if args.window in (None, s.get("window"))]
    if args.json:
        _print_json(stats)
    elif not stats:
        print("no stats yet: record observations, then `opsloop score`")
    else:
        print(stats_table(stats))
    return EXIT_OK


def _cmd_shards(args: argparse.Namespace) -> int:
    from ..services import shards as shard_service

    info = shard_service.describe(_store(), dt.datetime.now(dt.UTC))
    if args.json:
        _print_json(info)
        return EXIT_OK
    if not info["adopted"]:
        print(f"no layout adopted yet (the first scoring run adopts config/scoring.shards = {info['configured']})")
    else:
        print(f"shards: {info['current']} since {info['since']} (config asks for {info['configured']})")
        for d in info["draining"]:
            print(f"draining: {d['shards']} until {d['until']}" + ("  (unkeyed, of versions before keys)"
                                                                 if d["shards"] == 0 else ""))
        print(f"legacy observations: {info['legacy']}")
    for key, n in info["waiting"].items():
        print(f"  {key:>6}  {n} waiting")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- policies
def _split_ref(ref: str) -> tuple[str, str | None]:
    policy_id, _, version = ref.partition("@")
    _check_id(policy_id, "policy id")
    if version:
        _check_id(version, "version")
    return policy_id, version or None


def _version_or_active(store: Store, policy_id: str, version: str | None) -> dict[str, Any]:
    if version is None:
        active = store.policies.head(policy_id).active
        if active is None:
            if not store.policies.versions(policy_id):
                raise CliError(f"unknown policy {policy_id!r}", EXIT_USAGE, "E_LEARN_NOT_FOUND")
            raise CliError(f"policy {policy_id} has no active version; name one as {policy_id}@VERSION",
                           EXIT_USAGE, "E_LEARN_NOT_FOUND")
        version = active
    doc = store.policies.policy(policy_id, version)
    if doc is None:
        known = sorted(str(d.get("version")) for d in store.policies.versions(policy_id))
        hint = f"; known versions: {', '.join(known)}" if known else "; no such policy"
        raise CliError(f"unknown policy version {policy_id}@{version}{hint}", EXIT_USAGE, "E_LEARN_NOT_FOUND")
    return dict(doc)


def _semver_key(text: str) -> tuple[int, ...]:
    from ..domain.semver import Version

    try:
        v = Version.parse(text)
    except ValueError:
        return (-1,)
    return (v.major, v.minor, v.patch)


def _cmd_policies_list(args: argparse.Namespace) -> int:
    from .render import table, when

    store = _store()
    docs = store.policies.versions(args.id) if args.id else store.policies.all()
    if args.id and not docs:
        raise CliError(f"unknown policy {args.id!r}", EXIT_USAGE, "E_LEARN_NOT_FOUND")
    if args.status:
        docs = [d for d in docs if d.get("status") == args.status]
    docs.sort(key=lambda d: (str(d.get("id")), _semver_key(str(d.get("version")))))
    if args.json:
        _print_json(docs)
        return EXIT_OK
    if not docs:
        print(f"no {args.status} versions" if args.status else "no policies (run `opsloop seed`)")
        return EXIT_OK
    print(table([[d.get("id"), d.get("version"), d.get("status"), d.get("createdBy"), when(d.get("createdAt")),
                  d.get("notes") or ""] for d in docs],
                ["policy", "version", "status", "created by", "created", "notes"]))
    return EXIT_OK


def _cmd_experiments_list(args: argparse.Namespace) -> int:
    from ..services import experiments
    from .render import table, when

    docs = experiments.experiments(_store(), args.id, limit=args.limit)
    if args.json:
        _print_json(docs)
        return EXIT_OK
    if not docs:
        print("no experiments yet (a canary records one when it ends)")
        return EXIT_OK

    def num(x: Any, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    changed = [", ".join(f"{k}={v}" for k, v in sorted((d.get("params") or {}).items())
                         if (d.get("championParams") or {}).get(k) != v) for d in docs]
    print(table([[d.get("id"), f"{d.get('champion')} → {d.get('version')}", d.get("outcome"), when(d.get("endedAt")),
                  f"{d.get('nChampion', 0)}/{d.get('nChallenger', 0)}", num(d.get("diff"), "+.4f"),
                  f"[{num(d.get('ciLow'), '+.4f')}, {num(d.get('ciHigh'), '+.4f')}]", c or "–"]
                 for d, c in zip(docs, changed, strict=True)],
                ["policy", "versions", "outcome", "ended", "n champion/challenger", "diff", "95% CI",
                 "changed params"]))
    return EXIT_OK


def _cmd_experiments_show(args: argparse.Namespace) -> int:
    from ..services import experiments

    store = _store()
    experiments.sync(store)
    doc = experiments.experiment(store, args.experiment_id)
    if doc is None:
        raise CliError(f"unknown experiment {args.experiment_id!r} (see `opsloop experiments list`)", EXIT_USAGE,
                       "E_LEARN_NOT_FOUND")
    _print_json(doc)
    return EXIT_OK


def _cmd_learning(args: argparse.Namespace) -> int:
    from ..services import learning
    from .render import num, table, when

    store = _store()
    if args.policy is not None and not store.policies.versions(args.policy):
        raise CliError(f"unknown policy {args.policy!r} (see `opsloop policies list`)", EXIT_USAGE,
                       "E_LEARN_NOT_FOUND")
    only = None if args.policy is None else {args.policy}
    if args.refresh:
        docs = learning.refresh(store, only=only)
    else:
        docs = sorted((d for d in store.learning.all() if only is None or d.get("id") in only),
                      key=lambda d: str(d.get("id")))
    if args.json:
        _print_json(docs)
        return EXIT_OK
    if not docs:
        print("no learning records yet (evaluateRollouts writes them; or run `opsloop learning --refresh`)")
        return EXIT_OK

    def minutes(x: Any) -> str:
        return "-" if x is None else f"{x / 60_000:.0f} min"

    for doc in docs:
        r, sm = doc.get("rates") or {}, doc.get("summary") or {}
        print(f"{doc.get('id')}: {sm.get('changes', 0)} changes, {sm.get('improved', 0)} improved the reward, "
              f"{sm.get('worsened', 0)} worsened it (95 % intervals clear of 0); mean change "
              f"{num(sm.get('meanDiff'), '+.4f')}; median time from a detected change to its fix "
              f"{minutes(sm.get('medianTimeToFixMs'))}")
        days = r.get("periodDays")
        period = (f"{num(days, '.1f')} days" if not isinstance(days, int | float) or days >= 1
                  else f"{days * 24:.1f} hours")
        print(f"  over {period}: rollback rate {num(r.get('rollbackRate'), '.0%')}, "
              f"{num(r.get('draftsPerDay'), '.1f')} drafts/day, auto-activation rate "
              f"{num(r.get('autoActivationRate'), '.0%')}, {r.get('manualOverrides', 0)} manual overrides")
        rows = []
        for c in (doc.get("changes") or [])[: args.limit]:
            e = c.get("effect") or {}
            rows.append([when(c.get("ts")), c.get("action"), "loop" if c.get("auto") else c.get("actor"),
                         f"{c.get('from')} → {c.get('to')}", minutes(c.get("windowMs")),
                         f"{num(e.get('beforeMean'), '.4f')} (n {e.get('beforeN', 0)})",
                         f"{num(e.get('afterMean'), '.4f')} (n {e.get('afterN', 0)})", num(e.get("diff"), "+.4f"),
                         f"[{num(e.get('ciLow'), '+.4f')}, {num(e.get('ciHigh'), '+.4f')}]",
                         "final" if e.get("final") else ("pending" if e else c.get("note", "-")),
                         minutes(c.get("timeToFixMs"))])
        if rows:
            print(table(rows, ["when", "change", "by", "versions", "window", "reward before", "after", "diff",
                               "95% CI", "", "time to fix"]))
    return EXIT_OK


def _cmd_policies_show(args: argparse.Namespace) -> int:
    policy_id, version = _split_ref(args.ref)
    doc = _version_or_active(_store(), policy_id, version)
    _print_json(doc)
    return EXIT_OK


def _cmd_policies_diff(args: argparse.Namespace) -> int:
    from .render import params_diff

    store = _store()
    policy_id, version = _split_ref(args.ref)
    if version is None:
        raise CliError("name the version to compare: policies diff ID@VERSION [--against VERSION]", EXIT_USAGE,
                       "E_LEARN_INVALID_ARGUMENT")
    right = _version_or_active(store, policy_id, version)
    left = _version_or_active(store, policy_id, args.against)
    text, changed = params_diff(left, right, f"{left['version']} ({left.get('status')})",
                                f"{right['version']} ({right.get('status')})")
    if args.json:
        _print_json({"left": left["version"], "right": right["version"], "changed": changed})
    else:
        print(text)
        print(f"\n{len(changed)} param(s) differ")
    return EXIT_OK


# ------------------------------------------------------------------------------- activate/rollback
def _call(base_url: str, name: str, token: str, data: dict[str, Any]) -> dict[str, Any]:
    """Invoke a callable over its HTTP protocol; errors become CliError with the callable's code."""
    req = urllib.request.Request(f"{base_url.rstrip('/')}/{name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return dict(json.loads(resp.read()).get("result") or {})
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read()).get("error") or {}
        except ValueError:
            err = {}
        status = str(err.get("status") or "INTERNAL")
        code = (err.get("details") or {}).get("code")
        raise CliError(f"{name}: {status}: {err.get('message') or exc.reason}",
                       _STATUS_EXIT.get(status, EXIT_ENVIRONMENT), code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the functions at {base_url} ({exc})", EXIT_ENVIRONMENT) from None


def _change(args: argparse.Namespace, name: str, data: dict[str, Any]) -> dict[str, Any]:
    if args.url:
        token = args.token or os.environ.get("OPSLOOP_ID_TOKEN")
        if not token:
            raise CliError("--url needs an admin ID token: --token TOKEN or $OPSLOOP_ID_TOKEN", EXIT_ENVIRONMENT)
        return _call(args.url, name, token, data)
    from ..services import policies

    store = _store()
    if name == "activatePolicy":
        return policies.activate(store, data["id"], data["version"], actor=_actor(args)).to_dict()
    return policies.rollback(store, data["id"], data.get("version"), actor=_actor(args)).to_dict()


def _validated(policy_id: str, version: str | None, version_required: bool) -> dict[str, Any]:
    from ..services.policies import parse_ref

    data: dict[str, Any] = {"id": policy_id}
    if version is not None:
        data["version"] = version
    pid, ver = parse_ref(data, version_required=version_required)
    return {"id": pid, **({"version": ver} if ver is not None else {})}


def _report_change(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
    elif result.get("changed"):
        print(f"{result.get('id')}: active {result.get('previous')} -> {result.get('active')}")
    else:
        print(f"{result.get('id')}: {result.get('active')} is already active; nothing changed")


def _cmd_activate(args: argparse.Namespace) -> int:
    policy_id, version = _split_ref(args.ref)
    version = version or args.version
    _report_change(_change(args, "activatePolicy", _validated(policy_id, version, True)), args.json)
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    policy_id, version = _split_ref(args.ref)
    version = version or args.version
    _report_change(_change(args, "rollbackPolicy", _validated(policy_id, version, False)), args.json)
    return EXIT_OK


# ------------------------------------------------------------------------------------- score/tune
def _no_bar(args: argparse.Namespace) -> bool | None:
    """tqdm's ``disable``: off with --quiet, on with --progress, else only on a terminal (None)."""
    if args.quiet:
        return True
    return False if args.progress else None


def _cmd_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..domain import config as config_domain
    from ..services import config as config_service
    from ..services import scoring
    from ..services import shards as shard_service

    at = _schedule_time(args)  # bad input is refused before the environment is touched
    store = _store()
    settings = config_service.load(store, (config_domain.SCORING,)).scoring
    upper = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=settings.safety_margin_ms)
    backlog = shard_service.waiting(store, upper)
    with tqdm(total=backlog, unit="obs", desc="scoring", disable=_no_bar(args), file=sys.stderr) as bar:
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            bar.update(n - done)
            done = n

        result = scoring.score_observations(store, at, progress=progress, refresh_cards=args.cards)
    if not result.lease_acquired:
        raise CliError("another scoring run holds the lease; try again when it finishes", EXIT_CONFLICT,
                       "E_LEARN_CONFLICT")
    summary = {"scored": result.scored, "invalid": result.invalid, "chunks": result.chunks,
               "statsWritten": result.stats_written, "cardsWritten": result.cards_written,
               "scheduleTime": at.isoformat(timespec="seconds")}
    if args.json:
        _print_json(summary)
    else:
        print(f"scored {result.scored} (invalid {result.invalid}) in {result.chunks} chunks; "
              f"{result.stats_written} stats and {result.cards_written} skill cards written")
    return EXIT_OK


def _cmd_tune(args: argparse.Namespace) -> int:
    from ..services import tuning

    at = _schedule_time(args)
    result = tuning.auto_tune(_store(), at)
    outcomes = [o.__dict__ for o in result.outcomes]
    if args.json:
        _print_json({"enabled": result.enabled, "outcomes": outcomes})
        return EXIT_OK
    if not result.enabled:
        raise CliError("learning is disabled (config/flags learning.enabled = false): nothing drafted",
                       EXIT_REFUSED, "E_LEARN_DISABLED")
    for o in outcomes:
        print("  " + ", ".join(f"{k}={v}" for k, v in o.items() if v not in (None, {}, [])))
    if not outcomes:
        print("no active policy to tune")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- seed
def _cmd_seed(args: argparse.Namespace) -> int:
    from ..services.seed import load_seed

    seed_dir = Path(args.dir)
    if not seed_dir.is_dir():
        raise CliError(f"no seed directory at {seed_dir} (pass --dir)", EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT")
    for action in load_seed(_store(), seed_dir, force=args.force):
        print(f"  {action.action:<11} {action.path}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------- reward
def _print_generations(status: dict[str, Any]) -> None:
    versions = ", ".join(f"{p} {v}" for p, v in status["readVersions"].items())
    print(f"readers read reward generation {status['readGeneration']} ({versions})")
    if status["backfilling"]:
        versions = ", ".join(f"{p} {v}" for p, v in status["writeVersions"].items())
        print(f"backfilling generation {status['writeGeneration']} ({versions}): {status['scored']} re-scored, "
              f"about {status['remaining']} to go ({status['percent']} %)")


def _cmd_reward_backfill(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..services import config as config_service
    from ..services import generations

    store = _store()
    if args.status:
        status = generations.status(store)
        if args.json:
            _print_json(status)
        else:
            _print_generations(status)
        return EXIT_OK
    loaded = config_service.load(store, ("reward_config", "scoring"))
    gens = generations.adopt(store, loaded.reward_rules)  # a change not yet seen by a scoring run starts here
    before = generations.status(store)
    with tqdm(total=before.get("remaining"), unit="obs", desc="backfill", disable=_no_bar(args),
              file=sys.stderr) as bar:
        done = [0]

        def progress(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        result = generations.backfill(store, chunk_size=args.chunk, expire_days=loaded.scoring.retention_days,
                                      progress=progress)
    after = generations.status(store)
    if args.json:
        _print_json({"scored": result.scored, "chunks": result.chunks, "done": result.done,
                     "stopped": result.stopped, **after})
        return EXIT_OK
    if gens.backfilling or result.scored:
        print(f"re-scored {result.scored} observations in {result.chunks} chunk(s)")
    elif result.done:
        print("nothing to backfill")
    if result.stopped == "superseded":
        print("stopped: the reward config changed again meanwhile; run it again for the newest one")
    _print_generations(after)
    return EXIT_OK


def _cmd_reward_whatif(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..services import whatif

    try:
        proposal = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read --config {args.config}: {exc.strerror}", EXIT_USAGE,
                       "E_LEARN_INVALID_ARGUMENT") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"--config {args.config} is not JSON: {exc}", EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT") from None
    whatif.parse_proposal(proposal)  # a bad proposal is answered before Firestore is reached
    store = _store()
    with tqdm(unit="obs", desc="re-scoring", disable=_no_bar(args), file=sys.stderr) as bar:

        def progress(n: int) -> None:
            bar.update(n)

        result = whatif.what_if(store, proposal, days=args.days, progress=progress)
    if args.json:
        _print_json(result.to_dict())
        return EXIT_OK
    print(f"{result.observations} observations of the last {args.days} day(s), re-scored; nothing written")
    print(f"  {'component':<32} {'n':>8} {'before':>8} {'after':>8}  versions")
    for c in result.components:
        before = "-" if c.before is None else f"{c.before:.4f}"
        after = "-" if c.after is None else f"{c.after:.4f}"
        missing = f"  (missing: {', '.join(f'{t} x{k}' for t, k in c.missing.items())})" if c.missing else ""
        print(f"  {c.component:<32} {c.n:>8} {before:>8} {after:>8}  {c.version_before} -> {c.version_after}"
              f"{missing}")
    for p in result.policies:
        print(f"policy {p.policy_id}:")
        print(f"  ranking today:    {', '.join(f'{m} {r:.3f}' for m, r in p.ranking_before) or '-'}")
        print(f"  ranking proposed: {', '.join(f'{m} {r:.3f}' for m, r in p.ranking_after) or '-'}")
        for label, draft in (("draft today:   ", p.draft_before), ("draft proposed:", p.draft_after)):
            text = "no change called for" if draft is None else ", ".join(f"{m} {w:.3f}" for m, w in draft.items())
            print(f"  {label}  {text}")
    for w in result.warnings:
        print(f"warning: {w}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------- export
def _exported(args: argparse.Namespace, got: Any, text: str) -> int:
    """What an export wrote: its manifest as JSON with ``--json``, else ``text``."""
    if args.json:
        _print_json({"file": str(got.path), "manifest": str(got.manifest_path), **got.manifest})
    else:
        print(text)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..services.export import check_out, export_dataset, export_experiments, export_learning, parse_time

    if args.learning:
        if args.components is not None or args.experiments or args.since is not None or args.until is not None:
            raise CliError("--learning exports every policy's record: no --components, --experiments, --since or "
                           "--until", EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT")
        got = export_learning(_store(), _out_file(args.out))
        return _exported(args, got, f"wrote {got.manifest['rows']} policy changes of {len(got.manifest['policies'])} "
                                    f"policies to {got.path} (manifest {got.manifest_path})")
    if args.experiments:
        if args.components is not None:
            raise CliError("--components does not apply to --experiments", EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT")
        out = _out_file(args.out)
        got = export_experiments(_store(), out, None if args.since is None else parse_time(args.since, "since"),
                                 None if args.until is None else parse_time(args.until, "until"))
        return _exported(args, got, f"wrote {got.manifest['rows']} experiments to {got.path} (manifest "
                                    f"{got.manifest_path}); outcomes {got.manifest['outcomes'] or 'none'}")
    if args.since is None:
        raise CliError("--since is required (the observations' event time to start from)", EXIT_USAGE,
                       "E_LEARN_INVALID_ARGUMENT")
    since = parse_time(args.since, "since")
    until = (int(dt.datetime.now(dt.UTC).timestamp() * 1000) if args.until is None
             else parse_time(args.until, "until"))
    components = None
    if args.components is not None:
        components = [c.strip() for c in args.components.split(",") if c.strip()]
        if not components:
            raise CliError("--components names no component (comma-separated, e.g. router:gpt-5,router:gemini)",
                           EXIT_USAGE, "E_LEARN_INVALID_ARGUMENT")
    out = _out_file(args.out)
    check_out(out)  # export_dataset checks again; this answers bad input before Firestore is reached
    store = _store()
    with tqdm(unit="rows", desc="exporting", disable=_no_bar(args), file=sys.stderr) as bar:

        def progress(n: int) -> None:
            bar.update(n)

        result = export_dataset(store, out, since, until, components, page_size=args.page_size,
                                progress=progress)
    m = result.manifest
    if args.json:
        _print_json({"file": str(result.path), "manifest": str(result.manifest_path), **m})
    else:
        print(f"wrote {m['rows']} rows to {result.path} (manifest {result.manifest_path}); "
              f"content sha256 {m['contentSha256'][:16]}…, reward versions {m['rewardVersions'] or 'none'}, "
              f"{m['unscored']} not scored yet")
    return EXIT_OK


# ----------------------------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    from ..services.report import gather
    from .report_html import render

    end = _schedule_time(args)
    out = _out_file(args.out)
    if out.is_dir():
        raise CliError(f"--out {args.out!r} is a directory; name the HTML file to write", EXIT_USAGE,
                       "E_LEARN_INVALID_ARGUMENT")
    data = gather(_store(), int(end.timestamp() * 1000), hours=args.hours)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        tmp.write_text(render(data), encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    points = sum(len(s.points) for s in data.series)
    print(f"wrote {out.resolve()} ({len(data.series)} components, {points} points, "
          f"{len(data.rollouts)} rollouts, {len(data.audit)} audit entries)")
    return EXIT_OK


# ------------------------------------------------------------------------------------------ audit
def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from ..services.audit import verify_audit_chain

    report = verify_audit_chain(_store())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for chain, n in sorted(report.chains.items()):
            print(f"  {chain:<32} {n:>6} entries")
        for b in report.breaks:
            print(f"BROKEN {b['chain']} at seq {b['seq']} (entry {b['docId']}): {b['problem']}")
        for p in report.policies:
            print(f"BROKEN {p['policy']}: {p['problem']}")
        print("audit chain intact" if report.ok else "audit chain BROKEN")
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _cmd_audit_log(args: argparse.Namespace) -> int:
    from .render import table, when

    entries = _store().audit.log(limit=args.limit, policy_id=args.policy)
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return EXIT_OK
    print(table([[when(a.get("ts")), a.get("chain", "-"), a.get("seq", "-"), a.get("actor"), a.get("action"),
                  a.get("id"), json.dumps(a.get("from")) if isinstance(a.get("from"), dict) else a.get("from"),
                  json.dumps(a.get("to")) if isinstance(a.get("to"), dict) else a.get("to")] for a in entries],
                ["time", "chain", "seq", "actor", "action", "id", "from", "to"]))
    return EXIT_OK


# ----------------------------------------------------------------------------------------- parser
MAX_HOURS = 24 * 90
MAX_ROWS = 1_000_000  # --page-size, --limit: Firestore takes a query limit up to 2**31 - 1


def _positive(maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number in 1..maximum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be in 1..{maximum}, got {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line with a code, like every other error (still exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error [E_LEARN_INVALID_ARGUMENT]: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="opsloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulator", metavar="HOST:PORT",
                        help="use the Firestore emulator there (default: $FIRESTORE_EMULATOR_HOST, else production)")
    parser.add_argument("--project", help="project id (default: $GOOGLE_CLOUD_PROJECT or demo-opsloop)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, func: Any, help_: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = cmd("status", _cmd_status, "stats per component x window; with --component, its skill card")
    p.add_argument("--component", help="one component (or policy~ID for a router policy's card)")
    p.add_argument("--window", choices=["1h", "24h", "7d"], help="only this window")
    p.add_argument("--json", action="store_true")

    p = cmd("shards", _cmd_shards, "the scoring shards: the layout in use, those draining, observations "
            "waiting per key, the migration of observations from versions before keys")
    p.add_argument("--json", action="store_true")

    policies = sub.add_parser("policies", help="policy versions: list, show, diff").add_subparsers(
        dest="policies_command", required=True, metavar="SUBCOMMAND")
    p = cmd("list", _cmd_policies_list, "every version (of one policy with --id)", policies)
    p.add_argument("--id", help="only this policy")
    p.add_argument("--status", choices=["draft", "shadow", "canary", "active", "archived", "rejected",
                                        "rolled_back"])
    p.add_argument("--json", action="store_true")
    p = cmd("show", _cmd_policies_show, "one version as JSON (ID for the active one, or ID@VERSION)", policies)
    p.add_argument("ref", metavar="ID[@VERSION]")
    p = cmd("diff", _cmd_policies_diff, "a version's params beside the active version's (or --against)", policies)
    p.add_argument("ref", metavar="ID@VERSION")
    p.add_argument("--against", metavar="VERSION", help="compare with this version instead of the active one")
    p.add_argument("--json", action="store_true")

    exps = sub.add_parser("experiments", help="ended canaries: what each tried and how it ended").add_subparsers(
        dest="experiments_command", required=True, metavar="SUBCOMMAND")
    p = cmd("list", _cmd_experiments_list, "newest first (of one policy with --id)", exps)
    p.add_argument("--id", help="only this policy")
    p.add_argument("--limit", type=_positive(MAX_ROWS), default=50)
    p.add_argument("--json", action="store_true")
    p = cmd("show", _cmd_experiments_show, "one experiment as JSON", exps)
    p.add_argument("experiment_id", metavar="EXPERIMENT_ID")

    for name, func, help_ in (("activate", _cmd_activate, "make a version the active one"),
                              ("rollback", _cmd_rollback, "re-activate a version, or the previous active one")):
        p = cmd(name, func, help_ + " (direct with admin credentials, or through the callable with --url)")
        p.add_argument("ref", metavar="ID[@VERSION]")
        p.add_argument("version", nargs="?", help="the version (or give ID@VERSION)")
        p.add_argument("--url", help="base URL of the deployed/served functions: call the callable instead")
        p.add_argument("--token", help="admin ID token for --url (default: $OPSLOOP_ID_TOKEN)")
        p.add_argument("--actor", help="audit actor for direct changes (default: cli:$USER)")
        p.add_argument("--json", action="store_true")

    p = cmd("score", _cmd_score, "run scoreObservations now, with a progress bar over the backlog")
    p.add_argument("--at", help="schedule time (ISO or ms; default now)")
    p.add_argument("--cards", action="store_true", help="refresh skill cards even if not due this hour")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    p.add_argument("--json", action="store_true")
    p = cmd("tune", _cmd_tune, "run autoTunePolicies now")
    p.add_argument("--at", help="schedule time (ISO or ms; default now)")
    p.add_argument("--json", action="store_true")

    reward = sub.add_parser("reward", help="the reward formula: whatif, backfill").add_subparsers(
        dest="reward_command", required=True, metavar="SUBCOMMAND")
    p = cmd("backfill", _cmd_reward_backfill, "re-score history under a changed reward config now (resumable)",
            reward)
    p.add_argument("--status", action="store_true", help="only show which generation readers use, and progress")
    p.add_argument("--chunk", type=_positive(400), default=400, help="observations per commit (default 400)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    p.add_argument("--json", action="store_true")
    p = cmd("whatif", _cmd_reward_whatif, "re-score stored history under a proposed reward config (writes nothing)",
            reward)
    p.add_argument("--config", required=True, help="the proposed config/reward_config as a JSON file")
    p.add_argument("--days", type=_positive(90), default=7, help="how many days of history (default 7, at most 90)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    p.add_argument("--json", action="store_true")

    p = cmd("seed", _cmd_seed, "load seed/ (configs and initial policies); idempotent")
    p.add_argument("--dir", default="seed", help="seed directory (default: ./seed)")
    p.add_argument("--force", action="store_true", help="overwrite config documents that exist")

    p = cmd("learning", _cmd_learning, "what each policy change did to the reward, and the loop's decision rates")
    p.add_argument("--policy", help="one policy id (default all)")
    p.add_argument("--refresh", action="store_true", help="recompute (and store) the records now")
    p.add_argument("--limit", type=_positive(50), default=20, help="changes shown per policy (default 20)")
    p.add_argument("--json", action="store_true")

    p = cmd("export", _cmd_export, "observations joined with rewards to Parquet, with a manifest")
    p.add_argument("--since", help="event time from (ISO date/time or ms), inclusive; required for observations")
    p.add_argument("--until", help="event time to (exclusive; default now)")
    p.add_argument("--components", help="comma-separated components (default all)")
    p.add_argument("--experiments", action="store_true",
                   help="the experiment registry instead (ended in [--since, --until) when given)")
    p.add_argument("--learning", action="store_true",
                   help="every policy change's effect on the reward instead (ops_learning; see `opsloop learning`)")
    p.add_argument("--out", default="opsloop-export.parquet", help="Parquet file (manifest beside it)")
    p.add_argument("--page-size", type=_positive(MAX_ROWS), default=5000, help="rows per read and per row group")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    p.add_argument("--json", action="store_true")

    p = cmd("report", _cmd_report, "a self-contained HTML report with charts")
    p.add_argument("--out", default="opsloop-report.html")
    p.add_argument("--hours", type=_positive(MAX_HOURS), default=48,
                   help=f"how far back the charts go (default 48, at most {MAX_HOURS})")
    p.add_argument("--at", help="end of the charts (ISO or ms; default now)")

    audit = sub.add_parser("audit", help="the audit trail: log, verify").add_subparsers(
        dest="audit_command", required=True, metavar="SUBCOMMAND")
    p = cmd("verify", _cmd_audit_verify, "check every hash link; exit 1 at the first broken one", audit)
    p.add_argument("--json", action="store_true")
    p = cmd("log", _cmd_audit_log, "newest entries first", audit)
    p.add_argument("--policy", help="only this policy id")
    p.add_argument("--limit", type=_positive(MAX_ROWS), default=50)
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.emulator
    if args.project:  # both: the client reads GCLOUD_PROJECT first
        os.environ["GCLOUD_PROJECT"] = os.environ["GOOGLE_CLOUD_PROJECT"] = args.project
    try:
        return int(args.func(args))
    except Exception as exc:  # the CLI's edge: say what went wrong in one line, with the right exit code
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        from ..domain.errors import OpsError

        if isinstance(exc, CliError):
            tag = f" [{exc.code}]" if exc.code else ""
            print(f"error{tag}: {exc.message}", file=sys.stderr)
            return exc.exit_code
        if isinstance(exc, OpsError):
            print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
            return _exit_for(exc)
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            print("error: no Google credentials; run `gcloud auth application-default login` or pass "
                  "--emulator HOST:PORT", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(exc, gexc.ServiceUnavailable | gexc.RetryError):
            where = os.environ.get("FIRESTORE_EMULATOR_HOST") or "Firestore"
            print(f"error: cannot reach {where} ({type(exc).__name__}); is the emulator running?", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(exc, gexc.GoogleAPICallError):  # IAM, a missing index in production, quota
            print(f"error: Firestore refused: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(exc, ImportError):
            print(f"error: {exc}; the CLI needs its extras: pip install -e '.[cli]'", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if os.environ.get("OPSLOOP_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with OPSLOOP_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
