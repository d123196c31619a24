"""Mergeable sufficient statistics of a set of scored observations.

A ``Summary`` holds counts, sums and sums of squares plus a DDSketch of latencies (relative accuracy
0.5 %, so any quantile it reports is within 1 % of an exact one). Summaries add: the summary of a
union is the sum of the summaries, which is what lets hourly and daily buckets merge into windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchPB
from ddsketch.pb.proto import DDSketchProto

SKETCH_RELATIVE_ACCURACY = 0.005


def _empty_sketch() -> DDSketch:
    return DDSketch(SKETCH_RELATIVE_ACCURACY)


def sketch_to_bytes(sketch: DDSketch) -> bytes:
    return bytes(DDSketchProto.to_proto(sketch).SerializeToString())  # type: ignore[no-untyped-call]


def sketch_from_bytes(data: bytes) -> DDSketch:
    if not data:
        return _empty_sketch()
    pb = DDSketchPB()
    pb.ParseFromString(data)
    sketch: DDSketch = DDSketchProto.from_proto(pb)  # type: ignore[no-untyped-call]
    expected = _empty_sketch()
    if not expected._mergeable(sketch):
        raise ValueError(
            f"stored sketch has gamma {pb.mapping.gamma!r}, expected one of relative accuracy "
            f"{SKETCH_RELATIVE_ACCURACY!r}"
        )
    return sketch


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of scored observations; ``a + b`` is the summary of both sets."""

    n: int = 0
    successes: int = 0
    sum_reward: float = 0.0
    sum_reward2: float = 0.0
    sum_cost: float = 0.0
    sum_latency: float = 0.0
    latency: DDSketch = field(default_factory=_empty_sketch, compare=False)

    @classmethod
    def of(cls, *, reward: float, success: bool, cost_usd: float, duration_ms: float) -> Summary:
        """The summary of a single scored observation."""
        for name, value in (("reward", reward), ("cost_usd", cost_usd), ("duration_ms", duration_ms)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        sketch = _empty_sketch()
        sketch.add(float(duration_ms))
        return cls(
            n=1,
            successes=int(success),
            sum_reward=reward,
            sum_reward2=reward * reward,
            sum_cost=cost_usd,
            sum_latency=float(duration_ms),
            latency=sketch,
        )

    def __add__(self, other: Summary) -> Summary:
        if not isinstance(other, Summary):
            return NotImplemented
        merged = _empty_sketch()
        merged.merge(self.latency)
        merged.merge(other.latency)
        return Summary(
            n=self.n + other.n,
            successes=self.successes + other.successes,
            sum_reward=self.sum_reward + other.sum_reward,
            sum_reward2=self.sum_reward2 + other.sum_reward2,
            sum_cost=self.sum_cost + other.sum_cost,
            sum_latency=self.sum_latency + other.sum_latency,
            latency=merged,
        )

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def mean_reward(self) -> float | None:
        return self.sum_reward / self.n if self.n else None

    @property
    def reward_variance(self) -> float | None:
        """Unbiased sample variance of the reward; None below two samples."""
        if self.n < 2:
            return None
        var = (self.sum_reward2 - self.sum_reward * self.sum_reward / self.n) / (self.n - 1)
        return max(var, 0.0)

    @property
    def mean_cost(self) -> float | None:
        return self.sum_cost / self.n if self.n else None

    def latency_quantile(self, q: float) -> float | None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self.n == 0:
            return None
        value = self.latency.get_quantile_value(q)
        return None if value is None else float(value)

    def to_doc(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "successes": self.successes,
            "sumReward": self.sum_reward,
            "sumReward2": self.sum_reward2,
            "sumCost": self.sum_cost,
            "sumLatency": self.sum_latency,
            "latencySketch": sketch_to_bytes(self.latency),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Summary:
        return cls(
            n=int(doc.get("n", 0)),
            successes=int(doc.get("successes", 0)),
            sum_reward=float(doc.get("sumReward", 0.0)),
            sum_reward2=float(doc.get("sumReward2", 0.0)),
            sum_cost=float(doc.get("sumCost", 0.0)),
            sum_latency=float(doc.get("sumLatency", 0.0)),
            latency=sketch_from_bytes(bytes(doc.get("latencySketch") or b"")),
        )


def total(summaries: list[Summary]) -> Summary:
    """Sum of many summaries, merging sketches in place (one allocation, not one per add)."""
    sketch = _empty_sketch()
    acc = [0, 0, 0.0, 0.0, 0.0, 0.0]
    for s in summaries:
        sketch.merge(s.latency)
        acc[0] += s.n
        acc[1] += s.successes
        acc[2] += s.sum_reward
        acc[3] += s.sum_reward2
        acc[4] += s.sum_cost
        acc[5] += s.sum_latency
    return Summary(int(acc[0]), int(acc[1]), acc[2], acc[3], acc[4], acc[5], sketch)


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def window_stats(summary: Summary) -> dict[str, Any]:
    """The public numbers of an ``ops_stats`` document for one window."""
    var = summary.reward_variance
    return {
        "n": summary.n,
        "successRate": _r(summary.success_rate, 6),
        "p50Latency": _r(summary.latency_quantile(0.5), 3),
        "p95Latency": _r(summary.latency_quantile(0.95), 3),
        "avgCostUsd": _r(summary.mean_cost, 8),
        "avgReward": _r(summary.mean_reward, 6),
        "rewardStd": None if var is None else round(math.sqrt(var), 6),
    }
