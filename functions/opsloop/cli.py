"""``opsloop``: the operator's command line, pointed at the emulator or a real project.

Exit codes scripts can rely on: 0 ok, 1 a check failed (e.g. a broken audit chain), 2 bad usage or
input, 3 the environment is not ready (no emulator, no credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3


def _store() -> Any:
    from .store.client import get_db
    from .store.firestore_store import FirestoreStore

    return FirestoreStore(get_db())


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from .services.audit import verify_audit_chain

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
    entries = _store().audit_log(limit=args.limit, policy_id=args.policy)
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return EXIT_OK
    for a in entries:
        print(f"{a.get('ts')}  {a.get('chain', '-'):<24} #{a.get('seq', '-'):<4} {a.get('actor'):<18} "
              f"{a.get('action'):<16} {a.get('from')} -> {a.get('to')}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulator", metavar="HOST:PORT",
                        help="use the Firestore emulator there (default: $FIRESTORE_EMULATOR_HOST, else production)")
    parser.add_argument("--project", help="project id (default: $GOOGLE_CLOUD_PROJECT or demo-opsloop)")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check every hash link; exit 1 at the first broken one")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_cmd_audit_verify)
    log = audit.add_parser("log", help="newest entries first")
    log.add_argument("--policy", help="only this policy id")
    log.add_argument("--limit", type=int, default=50)
    log.add_argument("--json", action="store_true")
    log.set_defaults(func=_cmd_audit_log)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.emulator
    if args.project:
        os.environ["GOOGLE_CLOUD_PROJECT"] = args.project
    try:
        return int(args.func(args))
    except Exception as exc:  # the CLI's edge: say what went wrong in one line, with the right exit code
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        from .domain.errors import OpsError

        if isinstance(exc, OpsError):
            print(f"error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            print("error: no Google credentials; run `gcloud auth application-default login` or pass "
                  "--emulator HOST:PORT", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if isinstance(exc, gexc.ServiceUnavailable | gexc.RetryError):
            where = os.environ.get("FIRESTORE_EMULATOR_HOST") or "Firestore"
            print(f"error: cannot reach {where} ({type(exc).__name__}); is the emulator running?", file=sys.stderr)
            return EXIT_ENVIRONMENT
        raise


if __name__ == "__main__":
    sys.exit(main())
