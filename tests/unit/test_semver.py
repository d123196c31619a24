"""Versions of policy documents (domain/semver.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.semver import Version, bump_patch, doc_id, is_valid, split_ref, validate_policy_id

part = st.integers(min_value=0, max_value=999_999_999)


def test_parse() -> None:
    assert Version.parse("1.2.3") == Version(1, 2, 3)
    assert Version.parse("0.0.0") == Version(0, 0, 0)
    assert Version.parse("10.20.30") == Version(10, 20, 30)
    assert str(Version.parse("1.0.10")) == "1.0.10"


@pytest.mark.parametrize(
    ("before", "after"), [("1.0.0", "1.0.1"), ("2.5.9", "2.5.10"), ("1.0.9", "1.0.10"), ("0.0.0", "0.0.1")]
)
def test_bump_patch(before: str, after: str) -> None:
    assert bump_patch(before) == after


def test_ordering_is_numeric() -> None:
    assert Version.parse("1.0.10") > Version.parse("1.0.9")
    assert Version.parse("1.10.0") > Version.parse("1.9.99")
    assert Version.parse("2.0.0") > Version.parse("1.99.99")
    assert "1.0.10" < "1.0.9"  # the trap the numeric ordering avoids
    ordered = sorted(["1.0.9", "1.0.10", "0.9.0", "1.0.0"], key=Version.parse)
    assert ordered == ["0.9.0", "1.0.0", "1.0.9", "1.0.10"]


@settings(max_examples=100, deadline=None)
@given(a=st.tuples(part, part, part), b=st.tuples(part, part, part))
def test_ordering_matches_tuple_ordering(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va, vb = Version.parse(".".join(map(str, a))), Version.parse(".".join(map(str, b)))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)


@settings(max_examples=100, deadline=None)
@given(v=st.tuples(part, part, part))
def test_str_parse_round_trip(v: tuple[int, int, int]) -> None:
    text = ".".join(map(str, v))
    assert str(Version.parse(text)) == text


@pytest.mark.parametrize(
    "bad",
    ["v1.0", "1.0", "01.0.0", "1.01.0", "1.0.01", "", None, "1.0.0.0", "1.0.-1", " 1.0.0", "1.0.0 ",
     "1.0.0-rc1", "a.b.c", "1..0", 100, "1234567890.0.0"],
)
def test_rejects_malformed(bad: object) -> None:
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse(bad)  # type: ignore[arg-type]
    assert not is_valid(bad)  # type: ignore[arg-type]
    if isinstance(bad, str):
        with pytest.raises(ValueError):
            bump_patch(bad)


# BUG: the patterns end in `$`, which also matches just before a trailing "\n" (use fullmatch / \Z)
@pytest.mark.parametrize("bad", ["1.0.0\n", "1.0.9\n"])
def test_version_rejects_trailing_newline(bad: str) -> None:
    assert not is_valid(bad)


def test_policy_id_rejects_trailing_newline() -> None:
    with pytest.raises(ValueError):
        validate_policy_id("router-core\n")
    with pytest.raises(ValueError):
        split_ref("router-core@1.0.0\n")


def test_bump_patch_result_is_always_a_valid_version() -> None:
    # BUG: the largest patch the parser accepts bumps to one it rejects
    top = "1.0.999999999"
    assert is_valid(top)
    try:
        bumped = bump_patch(top)
    except ValueError:
        return  # refusing to bump is fine
    assert is_valid(bumped), f"bump_patch({top!r}) produced unparseable {bumped!r}"


def test_is_valid() -> None:
    assert is_valid("1.0.0")
    assert not is_valid("1.0")


@pytest.mark.parametrize("good", ["router-core", "a", "r2_d2", "0abc", "a" * 63])
def test_policy_id_accepted(good: str) -> None:
    assert validate_policy_id(good) == good


@pytest.mark.parametrize("bad", ["", "Router", "-router", "_x", "router core", "router@1", "a" * 64, None])
def test_policy_id_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="policy id"):
        validate_policy_id(bad)  # type: ignore[arg-type]


def test_doc_id() -> None:
    assert doc_id("router-core", "1.0.1") == "router-core@1.0.1"
    with pytest.raises(ValueError):
        doc_id("router-core", "1.0")
    with pytest.raises(ValueError):
        doc_id("Router", "1.0.0")


def test_split_ref() -> None:
    assert split_ref("router-core@1.0.0") == ("router-core", "1.0.0")
    assert split_ref("x@2.10.3") == ("x", "2.10.3")
    for ref in ["router-core", "router-core@", "@1.0.0", "router-core@1.0", "Router@1.0.0", "a@b@1.0.0"]:
        with pytest.raises(ValueError):
            split_ref(ref)


@settings(max_examples=60, deadline=None)
@given(
    pid=st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    v=st.tuples(part, part, part),
)
def test_split_ref_inverts_doc_id(pid: str, v: tuple[int, int, int]) -> None:
    version = ".".join(map(str, v))
    assert split_ref(doc_id(pid, version)) == (pid, version)
