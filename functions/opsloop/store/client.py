"""The Firestore client and firebase_admin app, created lazily and once per process."""

from __future__ import annotations

import os
import threading

from google.cloud import firestore

DEFAULT_PROJECT = "demo-opsloop"
_lock = threading.Lock()
_db: firestore.Client | None = None


def project_id() -> str:
    """The project: GCLOUD_PROJECT / GOOGLE_CLOUD_PROJECT, else the emulator-only demo project."""
    return os.environ.get("GCLOUD_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT


def get_db() -> firestore.Client:
    """The process-wide client; honours FIRESTORE_EMULATOR_HOST like every Google client."""
    global _db
    with _lock:
        if _db is None:
            _db = firestore.Client(project=project_id())
        return _db


def ensure_firebase_app() -> None:
    """Initialise the default firebase_admin app (cheap: credentials load lazily)."""
    import firebase_admin

    with _lock:
        if not firebase_admin._apps:
            firebase_admin.initialize_app(options={"projectId": project_id()})


def reset_for_tests() -> None:
    global _db
    with _lock:
        _db = None
