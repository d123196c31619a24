"""Learning-domain error codes: stable, validated, and all documented in README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsloop.domain import errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_code_is_documented_in_readme_and_readme_lists_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(E_LEARN_[A-Z_]+)`", readme))
    assert documented == set(errors.CODES)


def test_each_error_class_has_a_default_code_and_an_explicit_one_wins() -> None:
    assert errors.NotFound("x").code == "E_LEARN_NOT_FOUND"
    assert errors.Conflict("x").code == "E_LEARN_CONFLICT"
    assert errors.FailedPrecondition("x", {"code": "E_LEARN_DISABLED"}).code == "E_LEARN_DISABLED"
    assert errors.FailedPrecondition("x", code="E_LEARN_ROLLOUT_DENIED").code == "E_LEARN_ROLLOUT_DENIED"


def test_an_undocumented_code_is_refused_loudly() -> None:
    with pytest.raises(ValueError, match="E_LEARN_MADE_UP"):
        errors.FailedPrecondition("x", code="E_LEARN_MADE_UP")


def test_codes_in_source_are_all_known() -> None:
    used = set()
    for path in (ROOT / "functions" / "opsloop").rglob("*.py"):
        used |= set(re.findall(r"\"(E_LEARN_[A-Z_]+)\"", path.read_text()))
    assert used <= set(errors.CODES), used - set(errors.CODES)
