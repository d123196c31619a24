"""The policy lifecycle (domain/policy.py): activation, rollback, shadow, canary, promote, reject.

Every ``plan_*`` takes ``status_of``: version -> its status, or None when the version does not exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from opsloop.domain.errors import FailedPrecondition, InvalidArgument, NotFound, OpsError
from opsloop.domain.policy import (
    HISTORY_LIMIT,
    Head,
    Rollout,
    plan_activate,
    plan_canary_rollback,
    plan_conclude,
    plan_promote,
    plan_reject,
    plan_rollback,
    plan_start_canary,
    plan_start_experiment,
    plan_start_shadow,
)

PID = "router-core"
T0 = 1_700_000_000_000


def statuses(**by_version: str) -> Callable[[str], str | None]:
    """A ``status_of`` over versions given as v1_0_0="active" (underscores stand for dots)."""
    table = {k.lstrip("v").replace("_", "."): v for k, v in by_version.items()}
    return table.get


def everything_exists(version: str) -> str | None:
    return "archived"


def nothing_exists(version: str) -> str | None:
    return None


SHADOW = Rollout("r1", "2.0.0", "1.0.0", "shadow", 0.0, T0)
CANARY = Rollout("r1", "2.0.0", "1.0.0", "canary", 0.1, T0, T0 + 3_600_000)


def in_shadow() -> tuple[Head, Callable[[str], str | None]]:
    return (Head(PID, active="1.0.0", history=("0.9.0",), seq=3, rollout=SHADOW),
            statuses(v0_9_0="archived", v1_0_0="active", v2_0_0="shadow", v3_0_0="draft"))


def in_canary() -> tuple[Head, Callable[[str], str | None]]:
    return (Head(PID, active="1.0.0", history=("0.9.0",), seq=4, rollout=CANARY),
            statuses(v0_9_0="archived", v1_0_0="active", v2_0_0="canary", v3_0_0="draft"))


# --- activate ---------------------------------------------------------------------------------------------


def test_first_activation() -> None:
    t = plan_activate(Head(PID), "1.0.0", statuses(v1_0_0="draft"))
    assert t is not None
    assert (t.action, t.policy_id, t.from_version, t.to_version) == ("activate", PID, None, "1.0.0")
    assert t.head == Head(PID, active="1.0.0", history=(), seq=1)
    assert t.statuses == {"1.0.0": "active"}  # nothing was active, nothing to archive
    assert t.rollout is None and t.rollout_status is None


def test_activation_pushes_history_bumps_seq_and_archives_the_previous_active() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=4)
    t = plan_activate(head, "1.0.2", statuses(v1_0_0="archived", v1_0_1="active", v1_0_2="draft"))
    assert t is not None
    assert (t.from_version, t.to_version, t.action) == ("1.0.1", "1.0.2", "activate")
    assert t.head == Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=5)
    assert t.statuses == {"1.0.1": "archived", "1.0.2": "active"}
    assert head == Head(PID, active="1.0.1", history=("1.0.0",), seq=4)  # the input is left alone


def test_activating_the_active_version_changes_nothing() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=4)
    assert plan_activate(head, "1.0.1", statuses(v1_0_1="active")) is None


def test_activating_a_missing_version_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        plan_activate(Head(PID, active="1.0.0", seq=1), "9.9.9", statuses(v1_0_0="active"))
    assert info.value.details == {"id": PID, "version": "9.9.9"}
    assert isinstance(info.value, OpsError)


def test_status_of_is_asked_about_the_version_being_activated() -> None:
    asked: list[str] = []

    def status_of(version: str) -> str | None:
        asked.append(version)
        return "draft"

    plan_activate(Head(PID, active="1.0.0", seq=1), "1.1.0", status_of)
    assert "1.1.0" in asked


def test_history_is_bounded() -> None:
    history = tuple(f"1.0.{i}" for i in range(HISTORY_LIMIT))
    head = Head(PID, active="2.0.0", history=history, seq=99)
    t = plan_activate(head, "3.0.0", everything_exists)
    assert t is not None
    assert len(t.head.history) == HISTORY_LIMIT
    assert t.head.history[-1] == "2.0.0"
    assert t.head.history[0] == "1.0.1"  # the oldest entry fell off
    assert t.head.seq == 100


def test_activating_another_version_while_a_rollout_runs_is_failed_precondition() -> None:
    for head, status_of in (in_shadow(), in_canary()):
        with pytest.raises(FailedPrecondition) as info:
            plan_activate(head, "3.0.0", status_of)
        assert info.value.details["id"] == PID
        assert info.value.details["rollout"] == head.rollout.to_doc()
        # an earlier version too, and a named rollback is an activation
        with pytest.raises(FailedPrecondition):
            plan_activate(head, "0.9.0", status_of)
        with pytest.raises(FailedPrecondition):
            plan_rollback(head, "0.9.0", status_of)


def test_activating_the_active_version_during_a_rollout_changes_nothing() -> None:
    head, status_of = in_canary()
    assert plan_activate(head, "1.0.0", status_of) is None


@pytest.mark.parametrize("setup", [in_shadow, in_canary])
def test_activating_the_rollouts_challenger_ends_the_rollout_as_promoted(
    setup: Callable[[], tuple[Head, Callable[[str], str | None]]],
) -> None:
    head, status_of = setup()
    t = plan_activate(head, "2.0.0", status_of)
    assert t is not None
    assert (t.action, t.from_version, t.to_version) == ("activate", "1.0.0", "2.0.0")
    assert t.head == Head(PID, active="2.0.0", history=("0.9.0", "1.0.0"), seq=head.seq + 1, rollout=None)
    assert t.statuses == {"1.0.0": "archived", "2.0.0": "active"}
    assert t.rollout == head.rollout
    assert t.rollout_status == "promoted"


# --- rollback ---------------------------------------------------------------------------------------------


def test_rollback_without_version_pops_history() -> None:
    status_of = statuses(v1_0_0="archived", v1_0_1="archived", v1_0_2="active")
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    t = plan_rollback(head, None, status_of)
    assert t is not None
    assert (t.action, t.from_version, t.to_version) == ("rollback", "1.0.2", "1.0.1")
    assert t.head == Head(PID, active="1.0.1", history=("1.0.0",), seq=8)
    assert t.statuses == {"1.0.1": "active", "1.0.2": "archived"}
    assert t.rollout is None and t.rollout_status is None
    t2 = plan_rollback(t.head, None, status_of)
    assert t2 is not None
    assert t2.head == Head(PID, active="1.0.0", history=(), seq=9)
    assert t2.statuses == {"1.0.0": "active", "1.0.1": "archived"}
    with pytest.raises(FailedPrecondition):
        plan_rollback(t2.head, None, status_of)


def test_rollback_with_empty_history_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition) as info:
        plan_rollback(Head(PID, active="1.0.0", seq=1), None, everything_exists)
    assert info.value.details == {"id": PID, "active": "1.0.0"}
    with pytest.raises(FailedPrecondition):
        plan_rollback(Head(PID), None, everything_exists)


@pytest.mark.parametrize("setup", [in_shadow, in_canary])
def test_rollback_while_a_rollout_runs_is_failed_precondition(
    setup: Callable[[], tuple[Head, Callable[[str], str | None]]],
) -> None:
    head, status_of = setup()
    assert head.history  # there is something to roll back to; the rollout is what blocks it
    with pytest.raises(FailedPrecondition) as info:
        plan_rollback(head, None, status_of)
    assert info.value.details == {"id": PID, "rollout": head.rollout.to_doc()}


def test_rollback_to_a_deleted_previous_version_is_not_found() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=2)
    with pytest.raises(NotFound) as info:
        plan_rollback(head, None, statuses(v1_0_1="active"))
    assert info.value.details == {"id": PID, "version": "1.0.0"}


def test_rollback_to_a_named_version_is_an_activation_labelled_rollback() -> None:
    status_of = statuses(v1_0_0="archived", v1_0_1="archived", v1_0_2="active")
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    rb = plan_rollback(head, "1.0.0", status_of)
    act = plan_activate(head, "1.0.0", status_of)
    assert rb is not None and act is not None
    assert rb.action == "rollback"
    assert act.action == "activate"
    assert (rb.policy_id, rb.from_version, rb.to_version, rb.head, rb.statuses) == (
        act.policy_id, act.from_version, act.to_version, act.head, act.statuses)
    assert rb.head == Head(PID, active="1.0.0", history=("1.0.0", "1.0.1", "1.0.2"), seq=8)
    assert rb.statuses == {"1.0.2": "archived", "1.0.0": "active"}
    assert plan_rollback(head, "1.0.2", status_of) is None
    with pytest.raises(NotFound):
        plan_rollback(head, "0.0.1", status_of)


# --- shadow -----------------------------------------------------------------------------------------------


def test_start_shadow_from_draft() -> None:
    head = Head(PID, active="1.0.0", history=("0.9.0",), seq=3)
    t = plan_start_shadow(head, "2.0.0", statuses(v1_0_0="active", v2_0_0="draft"), "r7", T0)
    assert (t.action, t.policy_id, t.from_version, t.to_version) == ("shadow", PID, "1.0.0", "2.0.0")
    expected = Rollout("r7", "2.0.0", "1.0.0", "shadow", 0.0, T0, None)
    assert t.rollout == expected
    assert t.rollout_status == "running"
    assert t.statuses == {"2.0.0": "shadow"}  # the champion stays active
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=4, rollout=expected)


@pytest.mark.parametrize("status", ["shadow", "canary", "active", "archived", "rejected", "rolled_back"])
def test_only_a_draft_enters_shadow(status: str) -> None:
    head = Head(PID, active="1.0.0", seq=3)
    with pytest.raises(FailedPrecondition) as info:
        plan_start_shadow(head, "2.0.0", lambda v: status if v == "2.0.0" else "active", "r7", T0)
    assert info.value.details == {"id": PID, "version": "2.0.0", "status": status}


def test_shadow_of_a_missing_version_is_not_found() -> None:
    with pytest.raises(NotFound):
        plan_start_shadow(Head(PID, active="1.0.0", seq=1), "2.0.0", statuses(v1_0_0="active"), "r7", T0)


@pytest.mark.parametrize("setup", [in_shadow, in_canary])
def test_only_one_rollout_at_a_time(setup: Callable[[], tuple[Head, Callable[[str], str | None]]]) -> None:
    head, status_of = setup()
    with pytest.raises(FailedPrecondition) as info:
        plan_start_shadow(head, "3.0.0", status_of, "r8", T0)  # 3.0.0 is a draft
    assert info.value.details == {"id": PID, "rollout": head.rollout.to_doc()}


def test_shadow_needs_an_active_version() -> None:
    with pytest.raises(FailedPrecondition) as info:
        plan_start_shadow(Head(PID), "1.0.0", statuses(v1_0_0="draft"), "r1", T0)
    assert info.value.details == {"id": PID}


# --- canary -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0.05, 0.1, 0.5, 1 / 3])
def test_start_canary_from_shadow(split: float) -> None:
    head, status_of = in_shadow()
    t = plan_start_canary(head, "2.0.0", status_of, split, T0 + 60_000)
    assert (t.action, t.from_version, t.to_version) == ("canary", "1.0.0", "2.0.0")
    expected = Rollout("r1", "2.0.0", "1.0.0", "canary", split, T0, T0 + 60_000)
    assert t.rollout == expected
    assert t.rollout_status == "running"
    assert t.statuses == {"2.0.0": "canary"}
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=head.seq + 1, rollout=expected)


@pytest.mark.parametrize("split", [0, 0.0, -0.1, 0.6, 1, 1.0, math.nan, math.inf, True, False, "0.1", None])
def test_canary_split_must_be_a_number_in_0_to_half(split: object) -> None:
    head, status_of = in_shadow()
    with pytest.raises(InvalidArgument) as info:
        plan_start_canary(head, "2.0.0", status_of, split, T0)  # type: ignore[arg-type]
    assert info.value.details == {"field": "split"}


def test_canary_needs_the_version_in_shadow() -> None:
    head = Head(PID, active="1.0.0", seq=3)
    with pytest.raises(FailedPrecondition) as info:
        plan_start_canary(head, "2.0.0", statuses(v1_0_0="active", v2_0_0="draft"), 0.1, T0)
    assert info.value.details == {"id": PID, "version": "2.0.0", "status": "draft"}
    # a shadow of another version does not count
    shadow_head, status_of = in_shadow()
    with pytest.raises(FailedPrecondition):
        plan_start_canary(shadow_head, "3.0.0", status_of, 0.1, T0)


def test_canary_of_a_missing_version_is_not_found() -> None:
    head, status_of = in_shadow()
    with pytest.raises(NotFound):
        plan_start_canary(head, "9.9.9", status_of, 0.1, T0)


def test_canary_refuses_a_version_already_in_canary() -> None:
    head, status_of = in_canary()
    with pytest.raises(FailedPrecondition) as info:
        plan_start_canary(head, "2.0.0", status_of, 0.2, T0)
    assert info.value.details == {"id": PID, "rollout": CANARY.to_doc()}


# --- promote ----------------------------------------------------------------------------------------------


def test_promote_makes_the_challenger_active_and_archives_the_champion() -> None:
    head, status_of = in_canary()
    t = plan_promote(head, "2.0.0", status_of)
    assert (t.action, t.policy_id, t.from_version, t.to_version) == ("promote", PID, "1.0.0", "2.0.0")
    assert t.head == Head(PID, active="2.0.0", history=("0.9.0", "1.0.0"), seq=head.seq + 1, rollout=None)
    assert t.statuses == {"1.0.0": "archived", "2.0.0": "active"}
    assert t.rollout == CANARY
    assert t.rollout_status == "promoted"


def test_promote_needs_a_canary() -> None:
    head, status_of = in_shadow()
    with pytest.raises(FailedPrecondition):  # a shadow is not enough
        plan_promote(head, "2.0.0", status_of)
    canary_head, status_of = in_canary()
    with pytest.raises(FailedPrecondition):  # another version's canary
        plan_promote(canary_head, "3.0.0", status_of)
    with pytest.raises(FailedPrecondition) as info:  # no rollout at all
        plan_promote(Head(PID, active="1.0.0", seq=1), "2.0.0", statuses(v1_0_0="active", v2_0_0="draft"))
    assert info.value.details == {"id": PID, "version": "2.0.0", "rollout": None}
    with pytest.raises(NotFound):
        plan_promote(canary_head, "9.9.9", status_of)


# --- reject -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", [in_shadow, in_canary])
def test_reject_the_running_challenger_ends_its_rollout(
    setup: Callable[[], tuple[Head, Callable[[str], str | None]]],
) -> None:
    head, status_of = setup()
    t = plan_reject(head, "2.0.0", status_of)
    assert t.action == "reject"
    assert t.from_version == "2.0.0"
    assert t.to_version == "1.0.0"
    assert t.statuses == {"2.0.0": "rejected"}
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=head.seq + 1, rollout=None)
    assert t.rollout == head.rollout
    assert t.rollout_status == "rejected"


def test_reject_a_draft_leaves_another_versions_rollout_running() -> None:
    head, status_of = in_canary()
    t = plan_reject(head, "3.0.0", status_of)
    assert t.statuses == {"3.0.0": "rejected"}
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=head.seq + 1, rollout=CANARY)
    assert t.rollout is None and t.rollout_status is None


def test_reject_a_draft_without_any_active_version() -> None:
    t = plan_reject(Head(PID), "1.0.0", statuses(v1_0_0="draft"))
    assert t.statuses == {"1.0.0": "rejected"}
    assert t.head == Head(PID, seq=1)
    assert t.rollout is None


@pytest.mark.parametrize("status", ["active", "archived", "rejected", "rolled_back"])
def test_only_draft_shadow_or_canary_can_be_rejected(status: str) -> None:
    head = Head(PID, active="1.0.0", seq=3)
    with pytest.raises(FailedPrecondition) as info:
        plan_reject(head, "2.0.0", lambda v: status)
    assert info.value.details == {"id": PID, "version": "2.0.0", "status": status}
    with pytest.raises(NotFound):
        plan_reject(head, "2.0.0", nothing_exists)


# --- canary rollback --------------------------------------------------------------------------------------


def test_canary_rollback_returns_traffic_to_the_champion() -> None:
    head, status_of = in_canary()
    t = plan_canary_rollback(head, "2.0.0", status_of)
    assert (t.action, t.from_version, t.to_version) == ("canary_rollback", "2.0.0", "1.0.0")
    assert t.statuses == {"2.0.0": "rolled_back"}
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=head.seq + 1, rollout=None)
    assert t.rollout == CANARY
    assert t.rollout_status == "rolled_back"


def test_canary_rollback_needs_that_versions_rollout() -> None:
    head, status_of = in_canary()
    with pytest.raises(FailedPrecondition):
        plan_canary_rollback(head, "3.0.0", status_of)
    with pytest.raises(FailedPrecondition):
        plan_canary_rollback(Head(PID, active="1.0.0", seq=1), "2.0.0", statuses(v1_0_0="active", v2_0_0="draft"))
    with pytest.raises(NotFound):
        plan_canary_rollback(head, "9.9.9", status_of)


# --- a whole lifecycle ------------------------------------------------------------------------------------


def test_draft_to_shadow_to_canary_to_active() -> None:
    table = {"1.0.0": "active", "2.0.0": "draft"}
    head = Head(PID, active="1.0.0", seq=1)
    for step in (
        lambda h: plan_start_shadow(h, "2.0.0", table.get, "r1", T0),
        lambda h: plan_start_canary(h, "2.0.0", table.get, 0.2, T0 + 1),
        lambda h: plan_promote(h, "2.0.0", table.get),
    ):
        t = step(head)
        table.update(t.statuses)
        head = t.head
    assert head == Head(PID, active="2.0.0", history=("1.0.0",), seq=4, rollout=None)
    assert table == {"1.0.0": "archived", "2.0.0": "active"}
    # and back: the plain rollback re-activates the champion
    t = plan_rollback(head, None, table.get)
    assert t is not None
    assert t.head == Head(PID, active="1.0.0", history=(), seq=5)
    assert t.statuses == {"1.0.0": "active", "2.0.0": "archived"}


# --- documents --------------------------------------------------------------------------------------------


def test_head_doc_round_trip() -> None:
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    doc = head.to_doc()
    assert doc == {"id": PID, "active": "1.0.2", "history": ["1.0.0", "1.0.1"], "seq": 7, "rollout": None}
    assert Head.from_doc(PID, doc) == head


@pytest.mark.parametrize("rollout", [SHADOW, CANARY])
def test_head_doc_round_trip_with_a_rollout(rollout: Rollout) -> None:
    head = Head(PID, active="1.0.0", history=("0.9.0",), seq=4, rollout=rollout)
    doc = head.to_doc()
    assert doc["rollout"] == rollout.to_doc()
    assert Head.from_doc(PID, doc) == head


def test_rollout_doc_round_trip() -> None:
    assert CANARY.to_doc() == {
        "rolloutId": "r1", "version": "2.0.0", "champion": "1.0.0", "stage": "canary", "split": 0.1,
        "startedAt": T0, "canaryStartedAt": T0 + 3_600_000,
    }
    for rollout in (SHADOW, CANARY):
        assert Rollout.from_doc(rollout.to_doc()) == rollout
    assert Rollout.from_doc(None) is None
    assert Rollout.from_doc({}) is None
    # a split missing from an old document reads as 0; an int split reads as a float
    doc = {k: v for k, v in SHADOW.to_doc().items() if k != "split"}
    assert Rollout.from_doc(doc) == SHADOW
    canary = Rollout.from_doc({**CANARY.to_doc(), "split": 0})
    assert canary is not None and isinstance(canary.split, float)


@pytest.mark.parametrize("doc", [None, {}])
def test_head_from_missing_doc(doc: dict | None) -> None:
    assert Head.from_doc(PID, doc) == Head(PID, active=None, history=(), seq=0, rollout=None)


# --- experiments (kinds without an off-policy gate) ------------------------------------------------------
def test_an_experiment_takes_a_draft_straight_to_canary() -> None:
    head = Head(PID, active="1.0.0", history=("0.9.0",), seq=3)
    t = plan_start_experiment(head, "2.0.0", statuses(v1_0_0="active", v2_0_0="draft"), 0.2, "r9", T0)
    assert t.action == "canary" and t.statuses == {"2.0.0": "canary"} and t.rollout_status == "running"
    assert t.rollout == Rollout("r9", "2.0.0", "1.0.0", "canary", 0.2, T0, T0)
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=4, rollout=t.rollout)


@pytest.mark.parametrize(("head", "status", "error", "split"), [
    (Head(PID, active="1.0.0", seq=3, rollout=CANARY), "draft", FailedPrecondition, 0.2),  # one at a time
    (Head(PID, active="1.0.0", seq=3), "rejected", FailedPrecondition, 0.2),  # only a draft
    (Head(PID, seq=0), "draft", FailedPrecondition, 0.2),  # nothing to compare against
    (Head(PID, active="1.0.0", seq=3), "draft", InvalidArgument, 0.7),
    (Head(PID, active="1.0.0", seq=3), "draft", InvalidArgument, math.nan),
])
def test_an_experiment_is_refused(head: Head, status: str, error: type[OpsError], split: float) -> None:
    with pytest.raises(error):
        plan_start_experiment(head, "3.0.0", lambda v: status, split, "r9", T0)


def test_conclude_ends_an_undecided_canary_as_inconclusive() -> None:
    head, status_of = in_canary()
    t = plan_conclude(head, "2.0.0", status_of)
    assert t.action == "conclude" and t.statuses == {"2.0.0": "rejected"}
    assert t.rollout == CANARY and t.rollout_status == "inconclusive"
    assert t.head == Head(PID, active="1.0.0", history=("0.9.0",), seq=head.seq + 1, rollout=None)
    assert t.from_version == "2.0.0" and t.to_version == "1.0.0"
    with pytest.raises(FailedPrecondition):
        plan_conclude(head, "3.0.0", status_of)  # not the running canary
    shadow_head, shadow_status = in_shadow()
    with pytest.raises(FailedPrecondition):
        plan_conclude(shadow_head, "2.0.0", shadow_status)  # a shadow is not an experiment


def test_what_a_transition_writes() -> None:
    head, status_of = in_canary()
    t = plan_promote(head, "2.0.0", status_of)
    assert t.version_updates(T0, "ctl") == {
        "1.0.0": {"status": "archived", "statusChangedAt": T0, "statusChangedBy": "ctl"},
        "2.0.0": {"status": "active", "statusChangedAt": T0, "statusChangedBy": "ctl", "activatedAt": T0,
                  "activatedBy": "ctl"},
    }
    assert t.rollout_doc(T0, "ctl") == {**CANARY.to_doc(), "id": PID, "status": "promoted", "updatedAt": T0,
                                         "endedAt": T0, "endedBy": "ctl"}
    started = plan_start_experiment(Head(PID, active="1.0.0", seq=1), "2.0.0", statuses(v2_0_0="draft"), 0.2,
                                    "r9", T0)
    doc = started.rollout_doc(T0, "ctl")
    assert doc is not None and doc["status"] == "running" and "endedAt" not in doc
    assert plan_rollback(Head(PID, active="1.0.0", history=("0.9.0",), seq=2), None,
                         statuses(v0_9_0="archived", v1_0_0="active")).rollout_doc(T0, "ctl") is None
