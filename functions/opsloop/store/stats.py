"""``ops_stats``: one document per component and window, and ``ops_skill_cards``."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..domain import windows
from . import paths
from .tx import run_transaction
from .util import int_or_none, now_ms, snap_dict


class FirestoreStatsRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def write(self, docs: dict[str, dict[str, Any]], schedule_ms: int, now: int | None = None) -> int:
        """Write each stats document unless ``windows.keeps_newer`` says the stored one wins; return how many."""
        col = self.db.collection(paths.STATS)
        refs = {sid: col.document(sid) for sid in docs}
        clock = now_ms() if now is None else now

        def work(txn: firestore.Transaction) -> int:
            written = 0
            snaps = {s.id: s for s in self.db.get_all(list(refs.values()), transaction=txn)}
            for sid, data in docs.items():
                snap = snaps.get(sid)
                stored = int_or_none(snap_dict(snap).get("ts")) if snap is not None else None
                if windows.keeps_newer(stored, schedule_ms, clock):
                    continue
                txn.set(refs[sid], data)
                written += 1
            return written

        return run_transaction(self.db, work)

    def all(self, component: str | None = None) -> list[dict[str, Any]]:
        q: Any = self.db.collection(paths.STATS)
        if component is not None:
            q = q.where(filter=FieldFilter("component", "==", component))
        return [s.to_dict() or {} for s in q.stream()]

    def for_window(self, components: list[str], window: str) -> dict[str, dict[str, Any]]:
        """Component -> its stats document for ``window`` (absent ones left out)."""
        refs = [self.db.collection(paths.STATS).document(paths.stats_id(c, window)) for c in components]
        out = {}
        for snap in self.db.get_all(refs):
            if snap.exists:
                d = snap.to_dict() or {}
                out[str(d.get("component"))] = d
        return out


class FirestoreCardRepo:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def refreshed_for(self) -> int | None:
        """The schedule time the cards were last refreshed for (as stored; None if never)."""
        snap = self.db.collection(paths.RUNS).document(paths.SKILL_CARDS_RUN_DOC).get()
        return int_or_none(snap_dict(snap).get("scheduleMs"))

    def write(self, cards: dict[str, dict[str, Any]], schedule_ms: int) -> int:
        """Write cards (in batches) and then the marker of the schedule time they were computed for."""
        col = self.db.collection(paths.SKILL_CARDS)
        items = list(cards.items())
        for i in range(0, len(items), 400):
            batch = self.db.batch()
            for card_id, doc in items[i : i + 400]:
                batch.set(col.document(card_id), doc)
            batch.commit()
        self.db.collection(paths.RUNS).document(paths.SKILL_CARDS_RUN_DOC).set(
            {"scheduleMs": schedule_ms, "cards": len(items), "updatedAt": now_ms()})
        return len(items)

    def get(self, card_id: str) -> dict[str, Any] | None:
        snap = self.db.collection(paths.SKILL_CARDS).document(card_id).get()
        return snap.to_dict() if snap.exists else None

    def all(self) -> list[dict[str, Any]]:
        return [s.to_dict() or {} for s in self.db.collection(paths.SKILL_CARDS).stream()]
