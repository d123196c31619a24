"""Deterministic SHA-256 traffic splitting (domain/routing.py)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from opsloop.domain.routing import (
    MAX_SPLIT,
    SPLIT_PRESETS,
    ArmChoice,
    assign,
    pick_weighted,
    unit_hash,
    validate_split,
)

ROOT = Path(__file__).resolve().parents[2]
IDS_100K = [f"req-{i}" for i in range(100_000)]

_CHILD = """
import json, sys
from opsloop.domain.routing import assign, pick_weighted, unit_hash
ids = [f"req-{i}" for i in range(200)]
print(json.dumps({
    "hash": hash("req-0"),
    "arms": [assign(r, "rollout-7", "1.0.0", "2.0.0", 0.2).arm for r in ids],
    "units": [unit_hash("rollout-7", r) for r in ids],
    "picks": [pick_weighted(r, "tune", {"a": 0.6, "b": 0.3, "c": 0.1})[0] for r in ids],
}))
"""


def _in_subprocess(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def test_same_request_id_lands_on_the_same_arm_in_every_process() -> None:
    ids = [f"req-{i}" for i in range(200)]
    here = {
        "arms": [assign(r, "rollout-7", "1.0.0", "2.0.0", 0.2).arm for r in ids],
        "units": [unit_hash("rollout-7", r) for r in ids],
        "picks": [pick_weighted(r, "tune", {"a": 0.6, "b": 0.3, "c": 0.1})[0] for r in ids],
    }
    one, two = _in_subprocess("1"), _in_subprocess("12345")
    assert one["hash"] != two["hash"]  # the Python hash really differs between the two processes ...
    for child in (one, two):  # ... and the assignment does not
        assert child["arms"] == here["arms"]
        assert child["units"] == here["units"]
        assert child["picks"] == here["picks"]
    assert 0 < here["arms"].count("challenger") < 200


def test_unit_hash_is_the_first_8_bytes_of_sha256() -> None:
    digest = hashlib.sha256(b"salt:req-1").digest()
    assert unit_hash("salt", "req-1") == int.from_bytes(digest[:8], "big") / 2**64
    u = [unit_hash("s", r) for r in IDS_100K[:2000]]
    assert all(0.0 <= x < 1.0 for x in u)
    assert len(set(u)) == len(u)


def test_assignment_is_stable_across_calls() -> None:
    for r in IDS_100K[:500]:
        assert assign(r, "r1", "1.0.0", "2.0.0", 0.1) == assign(r, "r1", "1.0.0", "2.0.0", 0.1)


@pytest.mark.parametrize("split", [0.05, 0.1, 0.2, 0.5])
def test_challenger_share_matches_the_split(split: float) -> None:
    choices = [assign(r, "rollout-42", "1.0.0", "2.0.0", split) for r in IDS_100K]
    share = sum(c.arm == "challenger" for c in choices) / len(choices)
    assert abs(share - split) < 0.01
    for c in choices:
        if c.arm == "challenger":
            assert (c.version, c.propensity) == ("2.0.0", split)
        else:
            assert (c.version, c.propensity) == ("1.0.0", pytest.approx(1.0 - split))


def test_a_larger_split_keeps_every_earlier_challenger() -> None:
    # ramping 5 % -> 20 % only adds users to the challenger; nobody flips back
    small = {r for r in IDS_100K[:20_000] if assign(r, "r1", "a", "b", 0.05).arm == "challenger"}
    large = {r for r in IDS_100K[:20_000] if assign(r, "r1", "a", "b", 0.2).arm == "challenger"}
    assert small < large


@pytest.mark.parametrize(("challenger", "split"), [(None, 0.2), ("2.0.0", 0.0), ("2.0.0", -0.1)])
def test_no_challenger_or_zero_split_is_all_champion(challenger: str | None, split: float) -> None:
    # the champion's version with propensity 1; arm None: no canary runs, the request is in no experiment
    for r in IDS_100K[:1000]:
        assert assign(r, "r1", "1.0.0", challenger, split) == ArmChoice(None, "1.0.0", 1.0)


def test_empty_request_id_is_rejected() -> None:
    with pytest.raises(ValueError):
        assign("", "r1", "1.0.0", "2.0.0", 0.1)


def test_a_different_salt_reshuffles_the_challengers() -> None:
    ids = IDS_100K[:20_000]
    a = {r for r in ids if assign(r, "rollout-1", "1", "2", 0.1).arm == "challenger"}
    b = {r for r in ids if assign(r, "rollout-2", "1", "2", 0.1).arm == "challenger"}
    assert a != b
    # independent draws: the overlap is about 0.1 * 0.1 of the ids, not 0.1
    overlap = len(a & b) / len(ids)
    assert overlap == pytest.approx(0.01, abs=0.004)
    assert abs(len(b) / len(ids) - 0.1) < 0.01


def test_pick_weighted_frequencies_and_propensities() -> None:
    weights = {"a": 0.6, "b": 0.3, "c": 0.1}
    counts: Counter[str] = Counter()
    for r in IDS_100K:
        key, propensity = pick_weighted(r, "tune-3", weights)
        counts[key] += 1
        assert propensity == pytest.approx(weights[key])
    for key, w in weights.items():
        assert abs(counts[key] / len(IDS_100K) - w) < 0.01


def test_pick_weighted_normalises_and_skips_non_positive_weights() -> None:
    weights = {"x": 3.0, "y": 1.0, "z": 0.0, "w": -2.0}
    counts: Counter[str] = Counter()
    for r in IDS_100K[:40_000]:
        key, propensity = pick_weighted(r, "s", weights)
        counts[key] += 1
        assert propensity == {"x": 0.75, "y": 0.25}[key]
    assert set(counts) == {"x", "y"}
    assert abs(counts["x"] / 40_000 - 0.75) < 0.01
    assert pick_weighted("req-1", "s", {"only": 2.0}) == ("only", 1.0)


def test_pick_weighted_does_not_depend_on_dict_order() -> None:
    w1 = {"a": 0.6, "b": 0.3, "c": 0.1}
    w2 = {"c": 0.1, "a": 0.6, "b": 0.3}
    for r in IDS_100K[:2000]:
        (k1, p1), (k2, p2) = pick_weighted(r, "s", w1), pick_weighted(r, "s", w2)
        assert k1 == k2
        assert p1 == pytest.approx(p2, rel=1e-12)  # the total is summed in dict order: equal up to an ulp


@pytest.mark.parametrize("weights", [{}, {"a": 0.0}, {"a": -1.0, "b": 0.0}])
def test_pick_weighted_needs_a_positive_total(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        pick_weighted("req-1", "s", weights)


@pytest.mark.parametrize("split", [0.05, 0.1, 0.5, 1 / 3])
def test_validate_split_accepts(split: float) -> None:
    assert validate_split(split) == split
    assert isinstance(validate_split(split), float)


@pytest.mark.parametrize("split", [0, 0.0, -0.1, 0.51, 1, 1.0, math.nan, math.inf, -math.inf, True, False, "0.1",
                                   None])
def test_validate_split_rejects(split: object) -> None:
    with pytest.raises(ValueError):
        validate_split(split)  # type: ignore[arg-type]


def test_split_presets() -> None:
    assert SPLIT_PRESETS["shadow"] == 0.0
    for name, split in SPLIT_PRESETS.items():
        if name != "shadow":
            assert validate_split(split) == split
    assert max(SPLIT_PRESETS.values()) == MAX_SPLIT
