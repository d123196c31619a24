"""Load seed/ into Firestore: the emulator (FIRESTORE_EMULATOR_HOST) or a real project (ADC).

    python scripts/seed.py --emulator 127.0.0.1:8181          # the local emulator
    GOOGLE_CLOUD_PROJECT=my-proj python scripts/seed.py       # a real project, with gcloud ADC
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulator", help="HOST:PORT of a Firestore emulator (sets FIRESTORE_EMULATOR_HOST)")
    parser.add_argument("--project", help="project id (default: GOOGLE_CLOUD_PROJECT or demo-opsloop)")
    parser.add_argument("--seed-dir", type=Path, default=ROOT / "seed")
    parser.add_argument("--force", action="store_true", help="overwrite config documents that exist")
    args = parser.parse_args(argv)
    if args.emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = args.emulator
    if args.project:
        os.environ["GOOGLE_CLOUD_PROJECT"] = args.project

    from opsloop.domain.errors import OpsError
    from opsloop.services.seed import load_seed
    from opsloop.store.client import get_db, project_id
    from opsloop.store.firestore_store import FirestoreStore

    target = os.environ.get("FIRESTORE_EMULATOR_HOST") or "production Firestore"
    print(f"seeding project {project_id()} on {target}")
    try:
        for action in load_seed(FirestoreStore(get_db()), args.seed_dir, force=args.force):
            print(f"  {action.action:<11} {action.path}")
    except OpsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
