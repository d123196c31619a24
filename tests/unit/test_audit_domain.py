"""Sealing and verifying hash chains (pure)."""

from __future__ import annotations

import hashlib
import json

import pytest

from opsloop.domain.audit import GENESIS, ChainHead, canonical, digest, provenance, seal, verify


def build(n: int) -> tuple[list[tuple[str, dict]], ChainHead]:
    head = ChainHead()
    out = []
    for i in range(n):
        entry, head = seal({"ts": 1000 + i, "actor": "a", "action": "activate", "evidence": {"p": 0.01 * i}},
                           "policy:x", head)
        out.append((f"d{i}", entry))
    return out, head


def test_hash_is_sha256_of_the_canonical_encoding() -> None:
    entry, head = seal({"b": 1, "a": [1.5, None, "é"]}, "c", ChainHead())
    body = {k: v for k, v in entry.items() if k != "hash"}
    assert canonical(body) == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert entry["hash"] == hashlib.sha256(canonical(body)).hexdigest() == head.hash
    assert (entry["seq"], entry["prevHash"], entry["chain"]) == (1, GENESIS, "c")
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_intact_chain_verifies_and_empty_chain_needs_empty_head() -> None:
    entries, head = build(5)
    assert verify("policy:x", entries, head) is None
    assert verify("policy:x", [], ChainHead()) is None
    assert verify("policy:x", entries, None) is not None


@pytest.mark.parametrize("index", range(5))
def test_any_changed_field_breaks_at_that_entry(index: int) -> None:
    entries, head = build(5)
    doc_id, entry = entries[index]
    entries[index] = (doc_id, {**entry, "actor": "mallory"})
    broken = verify("policy:x", entries, head)
    assert broken is not None and broken.seq == index + 1 and broken.doc_id == doc_id


def test_removed_reordered_and_truncated_entries_are_found() -> None:
    entries, head = build(5)
    assert verify("policy:x", entries[:2] + entries[3:], head).seq == 4  # type: ignore[union-attr]
    swapped = [entries[0], entries[2], entries[1], *entries[3:]]
    assert verify("policy:x", swapped, head).seq == 3  # type: ignore[union-attr]
    assert "removed" in verify("policy:x", entries[:-1], head).problem  # type: ignore[union-attr]


def test_sealing_refuses_a_hash_and_nan_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        seal({"hash": "x"}, "c", ChainHead())
    with pytest.raises(ValueError):
        canonical({"p": float("nan")})


def test_provenance_names_the_client_of_every_entry_sealed_inside_it_and_is_hashed() -> None:
    with provenance(via="admin-ui", actorEmail="a@example.com", unused=None):
        inside, head = seal({"actor": "uid-1", "action": "activate"}, "policy:p", ChainHead())
        own, _ = seal({"actor": "uid-1", "action": "x", "via": "cli"}, "policy:p", head)
    outside, _ = seal({"actor": "uid-1", "action": "activate"}, "policy:p", ChainHead())
    assert inside["via"] == "admin-ui" and inside["actorEmail"] == "a@example.com" and "unused" not in inside
    assert own["via"] == "cli"  # the entry's own field wins
    assert "via" not in outside and "actorEmail" not in outside
    assert inside["hash"] != outside["hash"]
    assert verify("policy:p", [("1", inside), ("2", own)], ChainHead(2, own["hash"])) is None
