"""Mergeable sufficient statistics of a set of scored observations.

A ``Summary`` holds counts, sums and sums of squares plus a DDSketch of latencies (relative accuracy
0.5 %, so any quantile it reports is within 1 % of an exact one). Summaries add: the summary of a
union is the sum of the summaries, which is what lets hourly and daily buckets merge into windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchPB
from ddsketch.pb.ddsketch_pb2 import Store as StorePB
from ddsketch.pb.proto import KeyMappingProto
from ddsketch.store import DenseStore

SKETCH_RELATIVE_ACCURACY = 0.005


def _empty_sketch() -> BaseDDSketch:
    return DDSketch(SKETCH_RELATIVE_ACCURACY)


def _negated_sketch(sketch: BaseDDSketch) -> BaseDDSketch:
    return sketch_from_bytes(sketch_to_bytes(_scaled(sketch, -1.0)))


def _scaled(sketch: BaseDDSketch, factor: float) -> BaseDDSketch:
    out = _empty_sketch()
    out._copy(sketch)
    for store in (out._store, out._negative_store):
        store.bins = [c * factor for c in store.bins]
        store.count *= factor
    out._zero_count *= factor
    out._count *= factor
    out._sum *= factor
    return out


def _compact(store: DenseStore) -> StorePB:
    """The store's non-zero bins, as a contiguous run or, when sparse, as a key -> count map.

    DenseStore pads its bins in chunks of 128 and a few values far apart span many empty bins; both
    would otherwise be stored as 8-byte zeros.
    """
    nonzero = [(i, c) for i, c in enumerate(store.bins) if c]
    if not nonzero:
        return StorePB()
    first, last = nonzero[0][0], nonzero[-1][0]
    if len(nonzero) * 3 < last - first + 1:  # a map entry costs about three contiguous slots
        return StorePB(binCounts={store.offset + i: c for i, c in nonzero})
    return StorePB(contiguousBinCounts=store.bins[first : last + 1], contiguousBinIndexOffset=store.offset + first)


def _dense(pb: StorePB) -> DenseStore:
    """A DenseStore holding ``pb``'s bins, built in one step (the library adds bin by bin, ~100x slower)."""
    bins: dict[int, float] = {k: float(c) for k, c in pb.binCounts.items() if c}
    for i, c in enumerate(pb.contiguousBinCounts):
        if c:
            key = pb.contiguousBinIndexOffset + i
            bins[key] = bins.get(key, 0.0) + float(c)
    store = DenseStore()
    if not bins:
        return store
    low, high = min(bins), max(bins)
    dense = [0.0] * (high - low + 1)
    for key, c in bins.items():
        dense[key - low] = c
    store.bins = dense
    store.offset = store.min_key = low
    store.max_key = high
    store.count = float(sum(dense))
    return store


def sketch_to_bytes(sketch: BaseDDSketch) -> bytes:
    pb = DDSketchPB(
        mapping=KeyMappingProto.to_proto(sketch._mapping),  # type: ignore[no-untyped-call]
        positiveValues=_compact(sketch._store),
        negativeValues=_compact(sketch._negative_store),
        zeroCount=sketch._zero_count,
    )
    return bytes(pb.SerializeToString())


def sketch_from_bytes(data: bytes) -> BaseDDSketch:
    if not data:
        return _empty_sketch()
    pb = DDSketchPB()
    pb.ParseFromString(data)
    sketch = BaseDDSketch(
        mapping=KeyMappingProto.from_proto(pb.mapping),  # type: ignore[no-untyped-call]
        store=_dense(pb.positiveValues),
        negative_store=_dense(pb.negativeValues),
        zero_count=pb.zeroCount,
    )
    expected = _empty_sketch()
    if not expected._mergeable(sketch):
        raise ValueError(
            f"stored sketch has gamma {pb.mapping.gamma!r}, expected one of relative accuracy "
            f"{SKETCH_RELATIVE_ACCURACY!r}"
        )
    return sketch


# Numeric fields of a Summary and their names in Firestore documents. All of them add.
_FIELDS: dict[str, str] = {
    "n": "n",
    "successes": "successes",
    "sum_reward": "sumReward",
    "sum_reward2": "sumReward2",
    "sum_cost": "sumCost",
    "sum_latency": "sumLatency",
    # Off-policy sums over observations that logged the propensity p of their action (w = 1/p):
    "n_p": "nP",
    "sum_w": "sumW",
    "sum_w2": "sumW2",
    "sum_rw": "sumRW",
    "sum_r2w2": "sumR2W2",
    "sum_rw2": "sumRW2",
    # Sampling: an observation kept with probability 1/w stands for w observations. The sums above are
    # weighted; these are the total weight, the weighted successes and the logged decisions' weight.
    "weight": "weight",
    "w_successes": "wSuccesses",
    "w_p": "wP",
    # Weighted sum of squared costs, over the n_c2 observations scored since it was kept (a canary's cost
    # guardrail needs the cost's variance; buckets from before lack it, and the variance is then unknown).
    "sum_cost2": "sumCost2",
    "n_c2": "nCost2",
}
_INT_FIELDS = frozenset({"n", "successes", "n_p", "n_c2"})
# Labelled counts (failure modes, policy versions) keep their heaviest keys; the rest add up under OTHER.
MAX_LABELS = 24
OTHER = "(other)"
Labels = tuple[tuple[str, float], ...]


def merge_labels(parts: Iterable[Labels], limit: int = MAX_LABELS) -> Labels:
    """Sum labelled weights; beyond ``limit`` keys the lightest are pooled under OTHER (sorted, stable)."""
    acc: dict[str, float] = {}
    for part in parts:
        for key, w in part:
            acc[key] = acc.get(key, 0.0) + w
    acc = {k: w for k, w in acc.items() if abs(w) > 1e-9}  # a corrected label that cancelled out is gone
    if len(acc) > limit:
        ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = dict(ranked[: limit - 1])
        pooled = sum(w for _, w in ranked[limit - 1 :])
        kept[OTHER] = kept.get(OTHER, 0.0) + pooled
        acc = kept
    return tuple(sorted(acc.items()))


def _labels_doc(labels: Labels) -> list[dict[str, Any]]:
    # a list of maps, not a map: an error code is client text and may not be a valid Firestore field name
    return [{"k": k, "n": w} for k, w in labels]


def _labels_from(items: Any) -> Labels:
    return tuple(sorted((str(e["k"]), float(e["n"])) for e in items or [] if isinstance(e, dict) and "k" in e))


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of scored observations; ``a + b`` is the summary of both sets."""

    n: int = 0
    successes: int = 0
    sum_reward: float = 0.0
    sum_reward2: float = 0.0
    sum_cost: float = 0.0
    sum_latency: float = 0.0
    latency: BaseDDSketch = field(default_factory=_empty_sketch, compare=False)
    reward: BaseDDSketch = field(default_factory=_empty_sketch, compare=False)
    n_p: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_rw: float = 0.0
    sum_r2w2: float = 0.0
    sum_rw2: float = 0.0
    weight: float = 0.0
    w_successes: float = 0.0
    w_p: float = 0.0
    sum_cost2: float = 0.0
    n_c2: int = 0
    # weighted counts of non-successes by errorCode (else by outcome), and of observations by policyVersion
    failures: Labels = ()
    versions: Labels = ()

    @classmethod
    def of(
        cls, *, reward: float, success: bool, cost_usd: float, duration_ms: float, propensity: float | None = None,
        weight: float = 1.0, failure: str | None = None, version: str | None = None,
    ) -> Summary:
        """The summary of a single scored observation that stands for ``weight`` observations."""
        if not (math.isfinite(weight) and weight >= 1.0):
            raise ValueError(f"weight must be a finite number >= 1, got {weight!r}")
        for name, value in (("reward", reward), ("cost_usd", cost_usd), ("duration_ms", duration_ms)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if propensity is not None and not (math.isfinite(propensity) and 0.0 < propensity <= 1.0):
            raise ValueError(f"propensity must be in (0, 1], got {propensity!r}")
        k = float(weight)
        latency = _empty_sketch()
        latency.add(float(duration_ms), k)
        reward_sketch = _empty_sketch()
        reward_sketch.add(float(reward), k)
        off_policy: dict[str, Any] = {}
        if propensity is not None:
            w = 1.0 / propensity
            off_policy = {"n_p": 1, "w_p": k, "sum_w": k * w, "sum_w2": k * w * w, "sum_rw": k * reward * w,
                          "sum_r2w2": k * (reward * w) ** 2, "sum_rw2": k * reward * w * w}
        return cls(
            n=1,
            successes=int(success),
            sum_reward=k * reward,
            sum_reward2=k * reward * reward,
            sum_cost=k * cost_usd,
            sum_cost2=k * cost_usd * cost_usd,
            n_c2=1,
            sum_latency=k * float(duration_ms),
            latency=latency,
            reward=reward_sketch,
            weight=k,
            w_successes=k * int(success),
            failures=((failure, k),) if failure and not success else (),
            versions=((version, k),) if version else (),
            **off_policy,
        )

    def negated(self) -> Summary:
        """The summary that, added to a sum holding this one, takes it out again (sketch bins included).

        A correction travels as two parts, this and the replacement, added one after the other: the parts
        summed first would be a sketch of count 0, which a merge skips.
        """
        return Summary(latency=_negated_sketch(self.latency), reward=_negated_sketch(self.reward),
                       failures=tuple((k, -w) for k, w in self.failures),
                       versions=tuple((k, -w) for k, w in self.versions),
                       **{attr: -getattr(self, attr) for attr in _FIELDS})

    def finite(self) -> bool:
        """Whether every sum is a finite number (an overflow to inf would poison every later sum)."""
        return all(math.isfinite(v) for v in (
            self.sum_reward, self.sum_reward2, self.sum_cost, self.sum_latency, self.sum_w, self.sum_w2,
            self.sum_rw, self.sum_r2w2, self.sum_rw2, self.weight, self.w_successes, self.w_p, self.sum_cost2))

    def __add__(self, other: Summary) -> Summary:
        if not isinstance(other, Summary):
            return NotImplemented
        return total([self, other])

    @property
    def estimated_count(self) -> float:
        """How many observations these stand for (the sampled-away ones included)."""
        return self.weight if self.weight > 0 else float(self.n)  # unweighted summaries weigh 1 each

    @property
    def success_rate(self) -> float | None:
        if not self.n:
            return None
        return (self.w_successes if self.weight > 0 else self.successes) / self.estimated_count

    @property
    def mean_reward(self) -> float | None:
        return self.sum_reward / self.estimated_count if self.n else None

    @property
    def reward_variance(self) -> float | None:
        """Variance of the reward (weighted, with Bessel's correction on the samples); None below two."""
        if self.n < 2:
            return None
        w = self.estimated_count
        var = (self.sum_reward2 - self.sum_reward * self.sum_reward / w) / w * self.n / (self.n - 1)
        return max(var, 0.0)

    @property
    def mean_cost(self) -> float | None:
        return self.sum_cost / self.estimated_count if self.n else None

    @property
    def cost_variance(self) -> float | None:
        """Variance of the cost (as ``reward_variance``); None below two, or when some buckets lack Σcost²."""
        if self.n < 2 or self.n_c2 != self.n:
            return None
        w = self.estimated_count
        var = (self.sum_cost2 - self.sum_cost * self.sum_cost / w) / w * self.n / (self.n - 1)
        return max(var, 0.0)

    def latency_quantile(self, q: float) -> float | None:
        return _quantile(self.latency, q, self.n)

    def reward_quantile(self, q: float) -> float | None:
        return _quantile(self.reward, q, self.n)

    def log_latency_moments(self) -> tuple[float, float] | None:
        """Mean and variance of ln(latency in ms), latencies under 1 ms counted as 1 ms (from the sketch:
        each bin's value is within its relative accuracy, so each log within ~0.005)."""
        return log_moments(self.latency)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {key: getattr(self, attr) for attr, key in _FIELDS.items()}
        doc["latencySketch"] = sketch_to_bytes(self.latency)
        doc["rewardSketch"] = sketch_to_bytes(self.reward)
        doc["failures"] = _labels_doc(self.failures)
        doc["versions"] = _labels_doc(self.versions)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Summary:
        values: dict[str, Any] = {
            attr: (int if attr in _INT_FIELDS else float)(doc.get(key, 0)) for attr, key in _FIELDS.items()
        }
        if "weight" not in doc:  # written before sampling weights existed: every observation weighed 1
            values.update(weight=float(values["n"]), w_successes=float(values["successes"]),
                          w_p=float(values["n_p"]))
        return cls(
            latency=sketch_from_bytes(bytes(doc.get("latencySketch") or b"")),
            reward=sketch_from_bytes(bytes(doc.get("rewardSketch") or b"")),
            failures=_labels_from(doc.get("failures")),
            versions=_labels_from(doc.get("versions")),
            **values,
        )


def _quantile(sketch: BaseDDSketch, q: float, n: int) -> float | None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q!r}")
    if n == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else float(value)


def log_moments(sketch: BaseDDSketch) -> tuple[float, float] | None:
    """Mean and variance of ln(max(x, 1)) over a sketch's values (zero and negative values count as 1)."""
    store, mapping = sketch._store, sketch._mapping
    n = s1 = s2 = 0.0
    for i, count in enumerate(store.bins):
        if count:
            x = math.log(max(float(mapping.value(store.offset + i)), 1.0))
            n, s1, s2 = n + count, s1 + count * x, s2 + count * x * x
    n += sketch._zero_count + sketch._negative_store.count
    if n < 2:
        return None
    mean = s1 / n
    return mean, max((s2 - s1 * mean) / (n - 1), 0.0)



Deltas = dict[str, tuple[dict[str, Any], Summary]]  # bucket id -> (identity fields, summary to add to it)

def total(summaries: list[Summary]) -> Summary:
    """Sum of many summaries, merging sketches in place (one allocation, not one per add)."""
    latency, reward = _empty_sketch(), _empty_sketch()
    acc: dict[str, Any] = {attr: (0 if attr in _INT_FIELDS else 0.0) for attr in _FIELDS}
    for s in summaries:
        latency.merge(s.latency)
        reward.merge(s.reward)
        for attr in _FIELDS:
            acc[attr] += getattr(s, attr)
    return Summary(latency=latency, reward=reward, failures=merge_labels(s.failures for s in summaries),
                   versions=merge_labels(s.versions for s in summaries), **acc)


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def window_stats(summary: Summary) -> dict[str, Any]:
    """The public numbers of an ``ops_stats`` document for one window."""
    var = summary.reward_variance
    return {
        "n": round(summary.estimated_count),
        "samples": summary.n,
        "successRate": _r(summary.success_rate, 6),
        "p50Latency": _r(summary.latency_quantile(0.5), 3),
        "p95Latency": _r(summary.latency_quantile(0.95), 3),
        "avgCostUsd": _r(summary.mean_cost, 8),
        "avgReward": _r(summary.mean_reward, 6),
        "rewardStd": None if var is None else round(math.sqrt(var), 6),
        "rewardP50": _r(summary.reward_quantile(0.5), 6),  # from the reward sketch (relative accuracy 1 %)
        "rewardP95": _r(summary.reward_quantile(0.95), 6),
    }
