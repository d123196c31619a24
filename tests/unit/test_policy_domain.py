"""Activation and rollback planning (domain/policy.py)."""

from __future__ import annotations

import pytest

from opsloop.domain.errors import FailedPrecondition, NotFound, OpsError
from opsloop.domain.policy import HISTORY_LIMIT, Head, plan_activate, plan_rollback

PID = "router-core"


def test_first_activation() -> None:
    t = plan_activate(Head(PID), "1.0.0", exists=True)
    assert t is not None
    assert (t.action, t.policy_id, t.from_version, t.to_version) == ("activate", PID, None, "1.0.0")
    assert t.head == Head(PID, active="1.0.0", history=(), seq=1)


def test_activation_pushes_history_and_bumps_seq() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=4)
    t = plan_activate(head, "1.0.2", exists=True)
    assert t is not None
    assert (t.from_version, t.to_version, t.action) == ("1.0.1", "1.0.2", "activate")
    assert t.head == Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=5)
    assert head == Head(PID, active="1.0.1", history=("1.0.0",), seq=4)  # the input is left alone


def test_activating_the_active_version_changes_nothing() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=4)
    assert plan_activate(head, "1.0.1", exists=True) is None


def test_activating_a_missing_version_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        plan_activate(Head(PID, active="1.0.0", seq=1), "9.9.9", exists=False)
    assert info.value.details == {"id": PID, "version": "9.9.9"}
    assert isinstance(info.value, OpsError)


def test_history_is_bounded() -> None:
    history = tuple(f"1.0.{i}" for i in range(HISTORY_LIMIT))
    head = Head(PID, active="2.0.0", history=history, seq=99)
    t = plan_activate(head, "3.0.0", exists=True)
    assert t is not None
    assert len(t.head.history) == HISTORY_LIMIT
    assert t.head.history[-1] == "2.0.0"
    assert t.head.history[0] == "1.0.1"  # the oldest entry fell off


def test_rollback_without_version_pops_history() -> None:
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    t = plan_rollback(head, None, exists=True)
    assert t is not None
    assert (t.action, t.from_version, t.to_version) == ("rollback", "1.0.2", "1.0.1")
    assert t.head == Head(PID, active="1.0.1", history=("1.0.0",), seq=8)
    t2 = plan_rollback(t.head, None, exists=True)
    assert t2 is not None
    assert t2.head == Head(PID, active="1.0.0", history=(), seq=9)
    with pytest.raises(FailedPrecondition):
        plan_rollback(t2.head, None, exists=True)


def test_rollback_with_empty_history_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition) as info:
        plan_rollback(Head(PID, active="1.0.0", seq=1), None, exists=True)
    assert info.value.details == {"id": PID, "active": "1.0.0"}
    with pytest.raises(FailedPrecondition):
        plan_rollback(Head(PID), None, exists=True)


def test_rollback_to_a_deleted_previous_version_is_not_found() -> None:
    head = Head(PID, active="1.0.1", history=("1.0.0",), seq=2)
    with pytest.raises(NotFound) as info:
        plan_rollback(head, None, exists=False)
    assert info.value.details["version"] == "1.0.0"


def test_rollback_to_a_named_version_is_an_activation_labelled_rollback() -> None:
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    rb = plan_rollback(head, "1.0.0", exists=True)
    act = plan_activate(head, "1.0.0", exists=True)
    assert rb is not None and act is not None
    assert rb.action == "rollback"
    assert act.action == "activate"
    assert (rb.policy_id, rb.from_version, rb.to_version, rb.head) == (
        act.policy_id, act.from_version, act.to_version, act.head)
    assert rb.head == Head(PID, active="1.0.0", history=("1.0.0", "1.0.1", "1.0.2"), seq=8)
    assert plan_rollback(head, "1.0.2", exists=True) is None
    with pytest.raises(NotFound):
        plan_rollback(head, "0.0.1", exists=False)


def test_head_doc_round_trip() -> None:
    head = Head(PID, active="1.0.2", history=("1.0.0", "1.0.1"), seq=7)
    doc = head.to_doc()
    assert doc == {"id": PID, "active": "1.0.2", "history": ["1.0.0", "1.0.1"], "seq": 7}
    assert Head.from_doc(PID, doc) == head


@pytest.mark.parametrize("doc", [None, {}])
def test_head_from_missing_doc(doc: dict | None) -> None:
    assert Head.from_doc(PID, doc) == Head(PID, active=None, history=(), seq=0)
