"""The delta payload: a chunk's bucket summaries survive encoding exactly, sketches included."""

from __future__ import annotations

import pytest

from opsloop.domain.stats import Summary, total
from opsloop.store.buckets import decode_deltas, encode_deltas


def test_bucket_summaries_round_trip_through_the_payload() -> None:
    parts = [Summary.of(reward=0.1 * i, success=i % 3 != 0, cost_usd=0.001 * i, duration_ms=50.0 + 7 * i,
                        propensity=0.5 if i % 2 else None, weight=1.0 + i % 4, failure=f"E{i % 5}",
                        version="p@1.0.0") for i in range(1, 40)]
    deltas = {"a~5m~0": ({"component": "a", "level": "5m", "start": 0}, total(parts)),
              "b~1h~0": ({"component": "b", "level": "1h", "start": 0}, parts[0])}
    payload = encode_deltas(deltas)
    back = decode_deltas({"payload": payload})
    assert set(back) == set(deltas)
    for bid, (ident, summary) in deltas.items():
        assert back[bid][0] == ident
        assert back[bid][1].to_doc() == summary.to_doc()  # every sum, label and sketch byte
        # a sketch read back answers in a mapping rebuilt from its stored gamma: equal to ~1e-13
        assert back[bid][1].latency_quantile(0.95) == pytest.approx(summary.latency_quantile(0.95), rel=1e-12)


def test_the_payload_is_smaller_than_the_summaries_it_carries() -> None:
    one = Summary.of(reward=0.5, success=True, cost_usd=0.01, duration_ms=120.0)
    deltas = {f"c{i}~5m~0": ({"component": f"c{i}", "level": "5m", "start": 0}, one) for i in range(200)}
    raw = sum(len(repr(s.to_doc())) for _, s in deltas.values())
    assert len(encode_deltas(deltas)) < raw / 4
