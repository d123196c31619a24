"""Late feedback (issue 12): metrics that arrive after their observation correct its reward exactly once.

Each scenario runs on the real emulator and on the in-memory store.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from opsloop.domain import windows
from opsloop.domain.errors import Conflict, InvalidArgument, NotFound
from opsloop.domain.stats import Summary, total
from opsloop.services import feedback, generations, scoring
from opsloop.services.record import record_batch
from opsloop.services.seed import load_seed
from tests.fakes import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
QUALITY = {"version": "1.0.0", "rules": [{"match": "router:*", "version": "quality-1", "terms": [
    {"name": "quality", "source": "metric:judge", "weight": 0.6, "direction": "higher",
     "range": {"min": 0, "max": 10}, "missing": "skip"},
    {"name": "latency", "source": "durationMs", "weight": 0.4, "direction": "lower", "bound": 1000}]}]}


@pytest.fixture(params=[pytest.param("firestore", marks=pytest.mark.emulator), "memory"])
def loop(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        store: Any = MemoryStore()
        load_seed(store, ROOT / "seed")
        store.configs.set("scoring", {"safetyMarginMs": 0})
    else:
        store = request.getfixturevalue("seeded")
    store.configs.set("reward_config", QUALITY, merge=False)
    return store


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def items(n: int, ts: int, judged: bool) -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "ts": ts, "component": "router:gpt-5", "outcome": "success",
             "durationMs": 100.0 + 10 * i, "costUsd": 0.01, **({"metrics": {"judge": i % 10}} if judged else {})}
            for i in range(n)]


def bucket(store: Any, ts: int) -> Summary:
    start = windows.bucket_start(ts, "1h")
    key = generations.current(store).read_key("router:gpt-5")
    return total(store.buckets.load_segments(key, windows.cover(start, start + windows.HOUR_MS)))


def test_feedback_after_scoring_corrects_reward_and_buckets_exactly_once(loop: Any) -> None:
    ts = windows.ms(now()) - 60_000
    record_batch(loop, {"observations": items(20, ts, judged=False)})
    scoring.score_observations(loop, now())
    before = loop.observations.rewards_for(["o3"])["o3"]
    assert before["missingTerms"] == ["quality"]
    fb = [{"id": f"f{i}", "observationId": f"o{i}", "metrics": {"judge": i % 10}} for i in range(20)]
    got = feedback.record_feedback(loop, {"feedback": fb})
    assert len(got.created) == 20 and got.duplicates == [] and got.corrected == 20
    after = loop.observations.rewards_for(["o3"])["o3"]  # corrected at once, in the recording transaction
    assert after["feedbackIds"] == ["f3"] and after["metrics"] == {"judge": 3}
    run = scoring.score_observations(loop, now())
    assert run.feedback == {}  # nothing left for the scorer
    assert "missingTerms" not in after and after["details"]["quality"] == pytest.approx(0.18)
    assert after["score"] != before["score"] and after["corrections"] == 1

    # the buckets now hold what scoring the judged observations from the start gives
    fresh = MemoryStore()
    load_seed(fresh, ROOT / "seed")
    fresh.configs.set("scoring", {"safetyMarginMs": 0})
    fresh.configs.set("reward_config", QUALITY, merge=False)
    record_batch(fresh, {"observations": items(20, ts, judged=True)})
    scoring.score_observations(fresh, now())
    got_b, want_b = bucket(loop, ts), bucket(fresh, ts)
    assert (got_b.n, got_b.successes) == (want_b.n, want_b.successes) == (20, 20)
    assert got_b.sum_reward == pytest.approx(want_b.sum_reward, abs=1e-9)
    assert got_b.sum_reward2 == pytest.approx(want_b.sum_reward2, abs=1e-9)
    for q in (0.1, 0.5, 0.9):
        assert got_b.reward_quantile(q) == pytest.approx(want_b.reward_quantile(q))
    assert got_b.versions == want_b.versions and got_b.failures == want_b.failures

    # a retried feedback id changes nothing, and a second run applies nothing again
    again = feedback.record_feedback(loop, {"feedback": fb[:3]})
    assert again.created == [] and again.duplicates == ["f0", "f1", "f2"]
    assert scoring.score_observations(loop, now()).feedback == {}
    assert bucket(loop, ts).sum_reward == pytest.approx(want_b.sum_reward, abs=1e-9)


def test_feedback_before_scoring_is_simply_there(loop: Any) -> None:
    ts = windows.ms(now()) - 60_000
    record_batch(loop, {"observations": items(5, ts, judged=False)})
    feedback.record_feedback(loop, {"observationId": "o4", "metrics": {"judge": 8}, "id": "early"})
    run = scoring.score_observations(loop, now())
    assert run.feedback == {"applied": 1}  # nothing to correct: scored with the metric
    reward = loop.observations.rewards_for(["o4"])["o4"]
    assert reward["details"]["quality"] == pytest.approx(0.48) and "corrections" not in reward
    assert bucket(loop, ts).n == 5


def test_bad_feedback_is_refused_and_nothing_is_written(loop: Any) -> None:
    ts = windows.ms(now()) - 60_000
    record_batch(loop, {"observations": items(2, ts, judged=False)})
    with pytest.raises(NotFound) as unknown:
        feedback.record_feedback(loop, {"feedback": [{"observationId": "o1", "metrics": {"judge": 1}},
                                                     {"observationId": "nope", "metrics": {"judge": 1}}]})
    assert unknown.value.code == "E_LEARN_NOT_FOUND" and unknown.value.details["observationId"] == "nope"
    for bad in ({"observationId": "o1", "metrics": {}}, {"observationId": "o1", "metrics": {"judge": "9"}},
                {"observationId": "o1", "metrics": {"Judge": 1}}, {"observationId": "o/1", "metrics": {"judge": 1}},
                {"feedback": [{"observationId": "o1", "metrics": {"judge": 1}, "id": "x"}] * 2}):
        with pytest.raises(InvalidArgument):
            feedback.record_feedback(loop, bad)
    assert loop.feedback.pending() == []
    stored = {i: d for page in loop.observations.pages(0, 2**62) for i, d in page}
    assert "metrics" not in stored["o1"] and "metrics" not in stored["o0"]
    later = windows.ms(now() + dt.timedelta(days=400))  # past the retention window
    with pytest.raises(Conflict) as expired:
        feedback.record_feedback(loop, {"observationId": "o1", "metrics": {"judge": 1}}, now_ms=later)
    assert expired.value.code == "E_LEARN_FEEDBACK_EXPIRED"
    assert loop.feedback.pending() == []


def test_two_items_for_one_observation_apply_in_order_and_an_old_reward_is_rescored_from_its_observation(
        loop: Any) -> None:
    ts = windows.ms(now()) - 60_000
    record_batch(loop, {"observations": items(4, ts, judged=False)})
    scoring.score_observations(loop, now())
    inputs = ("durationMs", "costUsd", "metrics", "tokensIn", "tokensOut", "errorCode")
    if isinstance(loop, MemoryStore):  # a reward written before rewards kept their inputs
        for key in inputs:
            loop.observations.rewards["o2"].pop(key, None)
    else:
        from google.cloud import firestore

        loop.db.collection("ops_rewards").document("o2").update({k: firestore.DELETE_FIELD for k in inputs})
    got = feedback.record_feedback(loop, {"feedback": [
        {"observationId": "o1", "metrics": {"judge": 2}, "id": "a"},
        {"observationId": "o1", "metrics": {"judge": 8}, "id": "b"},
        {"observationId": "o2", "metrics": {"judge": 5}, "id": "c"}]})
    assert got.corrected == 3 and got.duplicates == []
    rewards = loop.observations.rewards_for(["o1", "o2"])
    assert rewards["o1"]["details"]["quality"] == pytest.approx(0.48) and rewards["o1"]["feedbackIds"] == ["a", "b"]
    assert rewards["o1"]["corrections"] == 2 and rewards["o2"]["details"]["quality"] == pytest.approx(0.3)
    scoring.fold_all(loop)
    fresh = MemoryStore()
    load_seed(fresh, ROOT / "seed")
    fresh.configs.set("scoring", {"safetyMarginMs": 0})
    fresh.configs.set("reward_config", QUALITY, merge=False)
    judged = items(4, ts, judged=False)
    judged[1]["metrics"], judged[2]["metrics"] = {"judge": 8}, {"judge": 5}
    record_batch(fresh, {"observations": judged})
    scoring.score_observations(fresh, now())
    assert bucket(loop, ts).sum_reward == pytest.approx(bucket(fresh, ts).sum_reward, abs=1e-9)
    assert bucket(loop, ts).n == 4


def test_a_batch_of_500_spread_over_a_week_is_one_request_whose_deltas_are_split_to_fit(loop: Any) -> None:
    """500 corrections in 1,500 buckets: more than one delta document may hold or one fold may write."""
    now_ms = windows.ms(now()) - 60_000
    spread = [{**o, "id": f"w{i}", "ts": now_ms - i * 20 * 60_000, "component": f"router:m{i % 7}"}
              for i, o in enumerate(items(500, now_ms, judged=False))]
    record_batch(loop, {"observations": spread})
    scoring.score_observations(loop, now())
    got = feedback.record_feedback(loop, {"feedback": [
        {"observationId": f"w{i}", "metrics": {"judge": i % 11}} for i in range(500)]})
    assert got.corrected > 450  # (a judge of 0 on a call at the latency bound scores 0 either way)
    assert loop.buckets.pending() > 4  # the corrections, in parts
    scoring.fold_all(loop)
    fresh = MemoryStore()
    load_seed(fresh, ROOT / "seed")
    fresh.configs.set("scoring", {"safetyMarginMs": 0})
    fresh.configs.set("reward_config", QUALITY, merge=False)
    record_batch(fresh, {"observations": [{**o, "metrics": {"judge": i % 11}} for i, o in enumerate(spread)]})
    scoring.score_observations(fresh, now())
    end = windows.window_end(windows.ms(now()))
    for model in ("router:m0", "router:m3"):
        key = generations.current(loop).read_key(model)
        got_s = total(loop.buckets.load_segments(key, windows.cover(end - 8 * windows.DAY_MS, end)))
        want = total(fresh.buckets.load_segments(generations.current(fresh).read_key(model),
                                                 windows.cover(end - 8 * windows.DAY_MS, end)))
        assert got_s.n == want.n and got_s.sum_reward == pytest.approx(want.sum_reward, abs=1e-9)
