"""One reward version at a time: a changed reward config is backfilled over history, and every reader
(stats, canary arms, tuning) switches to it only when the backfill is done. On Firestore and on the fake."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest

from opsloop.domain import config as config_domain
from opsloop.domain import reward as reward_domain
from opsloop.domain import windows
from opsloop.domain.generations import Generations
from opsloop.domain.ingest import Cursor
from opsloop.domain.stats import total
from opsloop.services import feedback, generations, ports, scoring
from opsloop.services.record import record_batch
from opsloop.services.seed import load_seed
from opsloop.store import paths
from tests.fakes import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
QUALITY = {"rules": [{"match": "router:*", "version": "q-1", "terms": [
    {"name": "quality", "source": "metric:judge", "weight": 0.6, "direction": "higher",
     "range": {"min": 0, "max": 10}, "missing": "skip"},
    {"name": "latency", "source": "durationMs", "weight": 0.4, "direction": "lower", "bound": 1000}]}]}


@pytest.fixture(params=[pytest.param("firestore", marks=pytest.mark.emulator), "memory"])
def repos(request: pytest.FixtureRequest) -> ports.Store:
    if request.param == "memory":
        store: ports.Store = MemoryStore()
        load_seed(store, ROOT / "seed")
        store.configs.set("scoring", {"safetyMarginMs": 0})
        return store
    seeded: ports.Store = request.getfixturevalue("seeded")
    return seeded


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def observations(n: int, tag: str, arm: bool = False) -> list[dict[str, Any]]:
    rng, ts = random.Random(tag), windows.ms(now()) - 60_000
    out = []
    for i in range(n):
        obs: dict[str, Any] = {"id": f"{tag}-{i}", "ts": ts - rng.randrange(50 * 60_000),
                               "component": f"router:{('gpt-5', 'claude')[i % 2]}",
                               "outcome": "success" if rng.random() < 0.9 else "timeout",
                               "durationMs": rng.uniform(50, 900), "costUsd": 0.002}
        if i % 3:
            obs["metrics"] = {"judge": rng.randrange(11)}
        if arm:
            obs["policyVersion"] = "router-core@1.0.0"
            obs["arm"] = "champion"
        out.append(obs)
    return out


def record(store: ports.Store, docs: list[dict[str, Any]]) -> None:
    for i in range(0, len(docs), 500):
        record_batch(store, {"observations": docs[i : i + 500]})


def expected_mean(docs: list[dict[str, Any]], rules: reward_domain.RewardRules,
                  late: dict[str, dict[str, float]] | None = None) -> float:
    """The mean reward of ``docs`` computed directly, under ``rules`` (with late metrics merged in)."""
    scores = []
    for d in docs:
        metrics = {**d.get("metrics", {}), **(late or {}).get(d["id"], {})}
        scores.append(reward_domain.score(d["outcome"], d["durationMs"], d["costUsd"],
                                          rules.for_component(d["component"]), metrics=metrics).score)
    return sum(scores) / len(scores)


def bucket_total(store: ports.Store, key: str) -> Any:
    end = windows.window_end(windows.ms(now()))
    return total(store.buckets.load_segments(key, windows.cover(end - windows.DAY_MS, end)))


def both_models(store: ports.Store, generation: int) -> tuple[int, float]:
    parts = [bucket_total(store, Generations(read=generation, write=generation).read_key(f"router:{m}"))
             for m in ("gpt-5", "claude")]
    whole = total(parts)
    return whole.n, whole.mean_reward or 0.0


def stats_24h(store: ports.Store) -> dict[str, Any]:
    return {d["component"]: d for d in store.stats.all() if d["window"] == "24h"}


def score_without_backfill(store: ports.Store) -> scoring.ScoreRunResult:
    """A scoring run whose budget runs out right before its backfill step."""
    clock = [0.0]

    def checkpoint(name: str) -> None:
        if name == "before-backfill":
            clock[0] = 1e9

    return scoring.score_observations(store, now(), checkpoint=checkpoint, monotonic=lambda: clock[0])


def test_a_changed_config_is_backfilled_and_readers_switch_when_it_is_done(repos: ports.Store) -> None:
    old_rules = reward_domain.RewardRules()
    new_rules = config_domain.parse("reward_config", QUALITY)
    history = observations(150, "a", arm=True)
    record(repos, history)
    assert scoring.score_observations(repos, now()).scored == 150
    assert generations.status(repos)["readGeneration"] == 1

    repos.configs.set("reward_config", QUALITY, merge=False)
    later = observations(60, "b", arm=True)
    record(repos, later)
    run = score_without_backfill(repos)
    assert run.scored == 60 and run.backfill == 0 and run.generation == 1
    status = generations.status(repos)
    # still to read: the 150 behind the boundary and the 60 scored since (read in id order, then skipped)
    assert status["backfilling"] and status["remaining"] == 210 and status["percent"] == 0.0
    # readers stay on generation 1, kept whole meanwhile: every observation under the old formula
    stats = stats_24h(repos)
    assert {d["rewardVersion"] for d in stats.values()} == {"1.0.0"}
    assert sum(d["n"] for d in stats.values()) == 210
    n, mean = both_models(repos, 1)
    assert n == 210 and mean == pytest.approx(expected_mean(history + later, old_rules))
    assert both_models(repos, 2)[0] == 60  # the new generation holds only what was scored since the change

    # the backfill stops (a budget), crashes, and is rerun: each observation counted once
    ticks = iter(range(100))
    part = generations.backfill(repos, chunk_size=40, deadline=2, monotonic=lambda: float(next(ticks)))
    assert (part.scored, part.chunks, part.done, part.stopped) == (80, 2, False, "budget")
    assert generations.status(repos)["scored"] == 80 and generations.current(repos).read == 1
    assert both_models(repos, 2)[0] == 60 + 80  # its deltas folded before it returned

    def crash(n: int) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        generations.backfill(repos, chunk_size=40, progress=crash)
    assert generations.status(repos)["scored"] == 120  # the chunk before the crash is kept, whole
    rest = generations.backfill(repos, chunk_size=40)
    assert rest.done and rest.scored == 30 and generations.current(repos).read == 2
    assert repos.buckets.pending() == 0  # readers switched only once every delta was in the buckets

    n, mean = both_models(repos, 2)
    assert n == 210 and mean == pytest.approx(expected_mean(history + later, new_rules))
    # the canary's arm switched with them: whole, under the new formula
    arm = bucket_total(repos, Generations(read=2, write=2).read_key(paths.arm_key("router-core@1.0.0", "champion")))
    assert arm.n == 210 and arm.mean_reward == pytest.approx(mean)
    run = scoring.score_observations(repos, now())
    stats = stats_24h(repos)
    assert run.generation == 2 and {d["rewardVersion"] for d in stats.values()} == {"q-1"}
    assert {d["rewardGeneration"] for d in stats.values()} == {2}
    assert sum(d["n"] for d in stats.values()) == 210
    reward = repos.observations.rewards_for(["a-1"])["a-1"]
    assert reward["rewardVersion"] == "q-1" and set(reward["scores"]) == {"g1", "g2"}
    assert generations.backfill(repos).done  # nothing left: a no-op


def test_a_scoring_run_finishes_a_small_backfill_itself(repos: ports.Store) -> None:
    record(repos, observations(80, "c"))
    scoring.score_observations(repos, now())
    repos.configs.set("reward_config", QUALITY, merge=False)
    run = scoring.score_observations(repos, now())
    assert run.backfill == 80 and run.generation == 2
    assert {d["rewardVersion"] for d in stats_24h(repos).values()} == {"q-1"}
    repos.configs.set("reward_config", {}, merge=False)  # and back: a third generation, backfilled the same way
    run = scoring.score_observations(repos, now())
    assert run.backfill == 80 and run.generation == 3
    assert {d["rewardVersion"] for d in stats_24h(repos).values()} == {"1.0.0"}
    assert both_models(repos, 3)[0] == 80


def test_feedback_during_a_backfill_corrects_every_generation_it_reached(repos: ports.Store) -> None:
    history = observations(40, "d")
    record(repos, history)
    scoring.score_observations(repos, now())
    repos.configs.set("reward_config", QUALITY, merge=False)
    later = observations(40, "e")
    record(repos, later)
    score_without_backfill(repos)  # the change adopted; history not backfilled yet
    late = {"d-0": {"judge": 10.0}, "d-1": {"judge": 0.0}, "e-0": {"judge": 10.0}, "e-3": {"judge": 1.0}}
    got = feedback.record_feedback(repos, {"feedback": [{"observationId": k, "metrics": v} for k, v in late.items()]})
    # at once, in each generation it was counted in: e-* in both, d-* only in the old one, whose formula does
    # not read the judge (their scores there do not change: nothing to correct until the backfill reaches them)
    assert got.corrected == 2
    assert repos.observations.rewards_for(["e-0"])["e-0"]["scores"].keys() == {"g1", "g2"}
    scoring.fold_all(repos)
    # generation 1 (still read) holds the corrections under the old formula: latency/cost do not read judge
    assert both_models(repos, 1)[1] == pytest.approx(expected_mean(history + later, reward_domain.RewardRules()))
    assert generations.backfill(repos, chunk_size=15).done
    scoring.fold_all(repos)
    n, mean = both_models(repos, 2)
    assert n == 80 and mean == pytest.approx(expected_mean(history + later, config_domain.parse(
        "reward_config", QUALITY), late))


def test_a_store_scored_before_generations_is_adopted_and_backfilled(repos: ports.Store) -> None:
    rules = reward_domain.RewardRules()
    legacy = Generations(read=0, write=0, rules={0: rules})
    repos.generations.adopt(lambda _state, _cursor: legacy.to_doc())  # what the scorer did before generations
    record(repos, observations(50, "f"))
    scoring.score_observations(repos, now())
    assert both_models(repos, 0)[0] == 50  # unversioned bucket keys, as before
    if isinstance(repos, MemoryStore):
        repos.shared.generations = None
    else:
        repos.db.collection(paths.RUNS).document(paths.GENERATIONS_DOC).delete()  # type: ignore[attr-defined]
    run = scoring.score_observations(repos, now())
    assert run.backfill == 50 and run.generation == 1
    assert both_models(repos, 1) == pytest.approx(both_models(repos, 0))
    assert sum(d["n"] for d in stats_24h(repos).values()) == 50


def test_a_backfill_that_caught_up_but_crashed_before_the_switch_switches_on_the_next_run(
        repos: ports.Store) -> None:
    record(repos, observations(30, "g"))
    scoring.score_observations(repos, now())
    repos.configs.set("reward_config", QUALITY, merge=False)
    generations.adopt(repos, config_domain.parse("reward_config", QUALITY))

    def crash(n: int) -> None:
        if n == 30:
            raise RuntimeError("killed after the last chunk")

    with pytest.raises(RuntimeError):
        generations.backfill(repos, chunk_size=40, progress=crash)
    status = generations.status(repos)
    assert status["caughtUp"] and status["backfilling"] and status["readGeneration"] == 1  # not switched yet
    assert repos.buckets.pending() > 0  # its delta was never folded: readers must not see generation 2 yet
    again = generations.backfill(repos, chunk_size=40)
    assert again.done and again.scored == 0 and generations.current(repos).read == 2
    assert repos.buckets.pending() == 0 and both_models(repos, 2)[0] == 30


def test_a_chunk_scored_under_generations_that_changed_meanwhile_is_refused(repos: ports.Store) -> None:
    """The scorer's commit checks the live generations in its transaction, like the cursor."""
    record(repos, observations(5, "h"))
    scoring.score_observations(repos, now())
    expected = repos.observations.cursor()
    repos.configs.set("reward_config", QUALITY, merge=False)
    generations.adopt(repos, config_domain.parse("reward_config", QUALITY))  # another run adopted a change
    record(repos, observations(2, "i"))
    page = repos.observations.after(expected, now(), 10)
    new = Cursor(page[-1].received_at, page[-1].doc_id, {})
    assert not repos.observations.commit_chunk(expected, new, [], {}, "d1", live=(1,))
    assert repos.observations.cursor().same_position(expected)  # nothing written
    assert repos.observations.commit_chunk(expected, new, [], {}, "d2", live=(1, 2))


def test_a_backfill_begun_in_ingestion_order_starts_over_by_id(repos: ports.Store) -> None:
    """A version before keys walked the backfill in (receivedAt, id) order; its position means nothing in
    id order. The backfill starts over from the first id, checking each reward for the new generation's
    score (so what that version re-scored would not be counted again)."""
    later, earlier = observations(45, "z"), observations(45, "a")  # ingested z first: not the id order
    record(repos, later)
    record(repos, earlier)
    scoring.score_observations(repos, now())
    repos.configs.set("reward_config", QUALITY, merge=False)
    generations.adopt(repos, config_domain.parse("reward_config", QUALITY))
    first = repos.observations.after(Cursor(), now() + dt.timedelta(minutes=1), 1)[0]
    assert first.doc_id == "z-0"
    # what the version before left: ten z's behind it in ingestion order, no byName, no reward check
    position = {"receivedAt": first.received_at, "docId": "z-9"}
    repos.generations.adopt(lambda doc, _cursor: {**{k: v for k, v in (doc or {}).items() if k != "byName"},
                                                  "position": position, "checkRewards": False})
    rest = generations.backfill(repos, chunk_size=40)
    assert rest.done and rest.scored == 90 and generations.current(repos).read == 2
    n, mean = both_models(repos, 2)
    assert n == 90 and mean == pytest.approx(expected_mean(later + earlier,
                                                           config_domain.parse("reward_config", QUALITY)))
