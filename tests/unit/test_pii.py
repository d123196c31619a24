"""PII scrubbing of free text and JSON-like values (domain/pii.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.domain.pii import MAX_KEY_BYTES, luhn_ok, placeholder, scrub_text, scrub_value

EMAIL, CARD, SSN, PHONE = (placeholder(k) for k in ("email", "card", "ssn", "phone"))


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass Luhn."""
    return next(d for d in "0123456789" if luhn_ok(body + d))


# ----------------------------------------------------------------------------- golden examples
@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        # e-mail
        ("contact jane.doe@example.com now", f"contact {EMAIL} now", {"email": 1}),
        ("mail john.doe+ops@mail.example.co.uk.", f"mail {EMAIL}.", {"email": 1}),
        ("<ops_team-1@sub.example.io>", f"<{EMAIL}>", {"email": 1}),
        # payment cards (Luhn-valid)
        ("card 4111 1111 1111 1111 declined", f"card {CARD} declined", {"card": 1}),
        ("card 4111-1111-1111-1111", f"card {CARD}", {"card": 1}),
        ("pan=4111111111111111;", f"pan={CARD};", {"card": 1}),
        ("mc 5555 5555 5555 4444", f"mc {CARD}", {"card": 1}),
        ("amex 3782 822463 10005 ok", f"amex {CARD} ok", {"card": 1}),
        ("amex 378282246310005", f"amex {CARD}", {"card": 1}),
        ("diners 3056 930902 5904", f"diners {CARD}", {"card": 1}),
        ("discover 6011111111111117", f"discover {CARD}", {"card": 1}),
        ("qty 2 4111 1111 1111 1111", f"qty 2 {CARD}", {"card": 1}),
        # US SSN
        ("ssn 123-45-6789", f"ssn {SSN}", {"ssn": 1}),
        ("SSN:078-05-1120.", f"SSN:{SSN}.", {"ssn": 1}),
        # phones: international
        ("call +1 (555) 123-4567 today", f"call {PHONE} today", {"phone": 1}),
        ("+44 20 7946 0958", PHONE, {"phone": 1}),
        ("tel:+4915112345678", f"tel:{PHONE}", {"phone": 1}),
        ("+33 1 23 45 67 89", PHONE, {"phone": 1}),
        ("+1.555.123.4567", PHONE, {"phone": 1}),
        ("+44 (0)20 7946 0958", PHONE, {"phone": 1}),
        # phones: national
        ("(555) 123-4567", PHONE, {"phone": 1}),
        ("555-123-4567", PHONE, {"phone": 1}),
        ("555.123.4567", PHONE, {"phone": 1}),
        ("555 123 4567", PHONE, {"phone": 1}),
        ("1-555-123-4567", PHONE, {"phone": 1}),
        ("dial 555-1234.", f"dial {PHONE}.", {"phone": 1}),
        ("020 7946 0958", PHONE, {"phone": 1}),
        ("06 12 34 56 78", PHONE, {"phone": 1}),
        ("06.12.34.56.78", PHONE, {"phone": 1}),
        ("0151 12345678", PHONE, {"phone": 1}),
        ("(call 555-123-4567)", f"(call {PHONE})", {"phone": 1}),
    ],
)
def test_golden(text: str, expected: str, counts: dict[str, int]) -> None:
    assert scrub_text(text) == (expected, counts)


def test_every_kind_in_one_text() -> None:
    text = ("user jane@example.com paid with 4111 1111 1111 1111, ssn 123-45-6789, "
            "phone +1 555 123 4567 at 2026-11-22T10:30:00Z (policy router-core@1.0.2)")
    scrubbed, counts = scrub_text(text)
    assert scrubbed == (f"user {EMAIL} paid with {CARD}, ssn {SSN}, "
                        f"phone {PHONE} at 2026-11-22T10:30:00Z (policy router-core@1.0.2)")
    assert counts == {"email": 1, "card": 1, "ssn": 1, "phone": 1}


@pytest.mark.parametrize(
    "text", ["4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005", "(4111 1111 1111 1111)",
             "4111111111111111 555-123-4567"],
)
def test_a_card_is_counted_once_as_a_card(text: str) -> None:
    scrubbed, counts = scrub_text(text)
    assert counts["card"] == 1
    assert CARD in scrubbed
    assert counts.get("phone", 0) == text.count("555-123-4567")


def test_a_plus_prefixed_number_is_a_phone_even_when_luhn_holds() -> None:
    # E.164 numbers have at most 15 digits and one in ten passes Luhn: after '+', it is a phone
    assert luhn_ok("4915112345678")
    assert scrub_text("+4915112345678") == (PHONE, {"phone": 1})


# ----------------------------------------------------------------------------- negatives
@pytest.mark.parametrize(
    "text",
    [
        "deployed on 2026-11-22",
        "at 2026-11-22T10:30:00Z",
        "2026-11-22 10:30:45.123",
        "on 22.11.2026 and 01/02/2026 and 2026.11.22",
        "took 10:30:45",
        "version 1.0.2, v10.15.7, router-core@1.0.2, 2.31.0.1",
        "latency 0.023 s, p99 3.14159265358979, cost 1234567.89",
        "trace 550e8400-e29b-41d4-a716-446655440000",
        "id 12345678-1234-5678-1234-567812345678",
        "sha deadbeef4111111111111111 and 0x4111111111111111",
        "order 1234567890, ORD-2026-000123, order #100-2345-6789, ord_4111111111111111",
        "card 4111 1111 1111 1112",  # 16 digits, Luhn fails
        "card 4111111111111112",
        "card 4111-1111-1111-1112",
        "ssn 000-12-3456",  # invalid area
        "ssn 666-12-3456",
        "ssn 912-34-5678",
        "ssn 123-00-4567",  # invalid group
        "ssn 123-45-0000",  # invalid serial
        "ts 1760000000000 and snowflake 1234567890123456789",  # epoch ms and ids never count as cards
        "count 42, 1234 requests, 7 retries",
        "scores 10 20 30 40 50 and 1 234 567 people",
        "open 0800-1200, range 1000-2000",
        "host 192.168.100.200:8080",
        "email-ish: user@localhost, @handle, a@b",
        "",
    ],
)
def test_left_alone(text: str) -> None:
    assert scrub_text(text) == (text, {})


# ----------------------------------------------------------------------------- counting
def test_multiple_occurrences_are_counted() -> None:
    text = ("a@example.com, b@example.org; 555-123-4567 555-987-6543 +44 20 7946 0958; "
            "4111111111111111 and 5555 5555 5555 4444; 123-45-6789 / 234-56-7890")
    scrubbed, counts = scrub_text(text)
    assert counts == {"email": 2, "phone": 3, "card": 2, "ssn": 2}
    assert scrubbed == (f"{EMAIL}, {EMAIL}; {PHONE} {PHONE} {PHONE}; {CARD} and {CARD}; {SSN} / {SSN}")


def test_only_kinds_found_are_reported() -> None:
    assert scrub_text("jane@example.com") == (EMAIL, {"email": 1})
    assert scrub_text("nothing here") == ("nothing here", {})


# ----------------------------------------------------------------------------- JSON-like values
def test_scrub_value_nested_meta() -> None:
    meta = {
        "user": {"email": "jane@example.com", "phones": ["+1 555 123 4567", "555-987-6543"]},
        "payment": {"card": "4111 1111 1111 1111", "amount": 12.5, "ok": True, "note": None},
        "jane@example.com": "keys are scrubbed too",
        "trace": ["550e8400-e29b-41d4-a716-446655440000", 4111111111111111, ("ssn 123-45-6789",)],
        "depth": [[{"x": "mail a@b.io or b@c.io"}]],
    }
    scrubbed, counts = scrub_value(meta)
    assert scrubbed == {
        "user": {"email": EMAIL, "phones": [PHONE, PHONE]},
        "payment": {"card": CARD, "amount": 12.5, "ok": True, "note": None},
        EMAIL: "keys are scrubbed too",
        "trace": ["550e8400-e29b-41d4-a716-446655440000", 4111111111111111, (f"ssn {SSN}",)],
        "depth": [[{"x": f"mail {EMAIL} or {EMAIL}"}]],
    }
    assert counts == {"email": 4, "phone": 2, "card": 1, "ssn": 1}
    assert meta["user"] == {"email": "jane@example.com", "phones": ["+1 555 123 4567", "555-987-6543"]}  # untouched


# ----------------------------------------------------------------------------- keys
def test_personal_data_in_keys_is_scrubbed_and_counted() -> None:
    meta = {"jane.doe@example.com": 1, "+1 415 555 2671": {"calls": 2}, "card 4111 1111 1111 1111": True,
            "123-45-6789": None, "region": "eu", "2026-11-22": 3}
    assert scrub_value(meta) == ({EMAIL: 1, PHONE: {"calls": 2}, f"card {CARD}": True, SSN: None, "region": "eu",
                                  "2026-11-22": 3}, {"email": 1, "card": 1, "ssn": 1, "phone": 1})


def test_keys_that_scrub_to_the_same_text_keep_every_value() -> None:
    meta = {"jane@example.com": 1, "john@example.com": 2, "region": "eu", "ops@example.org": {"n": 3}}
    scrubbed, counts = scrub_value(meta)
    assert scrubbed == {EMAIL: 1, f"{EMAIL}~2": 2, "region": "eu", f"{EMAIL}~3": {"n": 3}}
    assert list(scrubbed) == [EMAIL, f"{EMAIL}~2", "region", f"{EMAIL}~3"]  # input order, numbered in it
    assert counts == {"email": 3}


def test_a_scrubbed_key_never_takes_the_name_of_a_key_that_was_sent() -> None:
    # keys scrubbing leaves alone keep their names, wherever they are; scrubbed ones take the next free number
    meta = {"a@example.com": 1, f"{EMAIL}~2": "sent as is", "b@example.com": 2, EMAIL: "also sent as is"}
    scrubbed, counts = scrub_value(meta)
    assert scrubbed == {f"{EMAIL}~3": 1, f"{EMAIL}~2": "sent as is", f"{EMAIL}~4": 2, EMAIL: "also sent as is"}
    assert counts == {"email": 2}


def test_keys_in_dicts_inside_lists_are_scrubbed() -> None:
    meta = {"users": [{"jane@example.com": {"555-123-4567": "x"}}, [{"bob@example.com": 1, "bo@example.com": 2}]]}
    assert scrub_value(meta) == ({"users": [{EMAIL: {PHONE: "x"}}, [{EMAIL: 1, f"{EMAIL}~2": 2}]]},
                                 {"email": 3, "phone": 1})


def test_a_key_that_scrubbing_makes_too_long_is_cut_to_a_storable_name() -> None:
    # placeholders are longer than short e-mails: 211 of them grow a 1,497-byte key to 3,600 bytes
    key = " ".join(["a@b.io"] * 211) + " 0151 1234 5678 9012"  # a number that is not a card at the end
    assert len(key.encode()) <= MAX_KEY_BYTES
    scrubbed, counts = scrub_value({key: 1, key + " ": 2})
    assert counts == {"email": 422}
    names = list(scrubbed)
    assert len(names) == 2 and sorted(scrubbed.values()) == [1, 2]
    for name in names:
        assert 0 < len(name.encode()) <= MAX_KEY_BYTES and name.startswith(EMAIL)
        assert scrub_text(name) == (name, {})


def reserved(name: str) -> bool:
    """Whether Firestore reserves a field name (``__.*__``)."""
    return len(name) >= 4 and name.startswith("__") and name.endswith("__")


def test_a_key_cut_to_fit_stays_a_valid_firestore_field_name() -> None:
    # grown past the limit, the key is cut inside its run of underscores: "__ ... ___" would be reserved
    key = "__ " + "a@b.io " * 87 + "_" * 100 + "x"
    assert not reserved(key)
    ((name, value),) = scrub_value({key: 1})[0].items()
    assert value == 1 and name and not reserved(name) and len(name.encode()) <= MAX_KEY_BYTES


def test_non_string_keys_pass_through() -> None:
    assert scrub_value({1: "jane@example.com", None: 2}) == ({1: EMAIL, None: 2}, {"email": 1})


@pytest.mark.parametrize("value", [None, 0, 4111111111111111, 1.5, True, "plain", [], {}])
def test_scrub_value_scalars_and_empties(value: object) -> None:
    assert scrub_value(value) == (value, {})


# ----------------------------------------------------------------------------- idempotence
IDEMPOTENCE_SAMPLES = [
    "jane@example.com 4111 1111 1111 1111 123-45-6789 +1 (555) 123-4567",
    "a@example.com555-123-4567",
    "555-123-4567 555-987-6543 4111111111111111 2026-11-22",
    "+1 555 123 4567-4111111111111111",
]


@pytest.mark.parametrize("text", IDEMPOTENCE_SAMPLES)
def test_scrubbing_scrubbed_text_changes_nothing(text: str) -> None:
    once, _ = scrub_text(text)
    assert scrub_text(once) == (once, {})


@settings(max_examples=300)
@given(st.text(alphabet="0123456789 -.+()@:/ax", max_size=60))
def test_idempotent_on_digit_heavy_text(text: str) -> None:
    once, _ = scrub_text(text)
    assert scrub_text(once) == (once, {})


def test_placeholders_are_not_pii() -> None:
    text = " ".join(placeholder(k) for k in ("email", "card", "ssn", "phone"))
    assert scrub_text(text) == (text, {})


# ----------------------------------------------------------------------------- properties
no_digits_no_at = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="@"))


@given(no_digits_no_at)
def test_text_without_digits_or_at_is_unchanged(text: str) -> None:
    assert scrub_text(text) == (text, {})


not_pii = st.one_of(
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ", timespec="milliseconds") + "Z"),
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.tuples(*[st.integers(0, 999)] * 3).map(lambda v: "{}.{}.{}".format(*v)),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    st.times().map(str),
    st.ip_addresses(v=4).map(str),
)


@given(st.lists(not_pii, min_size=1, max_size=4).map(" and ".join))
def test_dates_times_versions_decimals_uuids_ips_are_unchanged(text: str) -> None:
    assert scrub_text(text) == (text, {})


words = st.sampled_from(["", "card ", "paid with ", "pan=", "(", "ref: ", "x "])
tails = st.sampled_from(["", " ok", ".", ", thanks", ")", "; next", " 2026-11-22"])


def _layout(number: str, sep: str, amex: bool) -> str:
    if sep == "":
        return number
    cuts = (4, 10) if amex else tuple(range(4, len(number), 4))
    parts = [number[a:b] for a, b in zip((0, *cuts), (*cuts, len(number)), strict=True)]
    return sep.join(parts)


@given(
    first=st.sampled_from("23456"),
    rest=st.text(alphabet="0123456789", min_size=14, max_size=14),
    sep=st.sampled_from(["", " ", "-"]),
    head=words,
    tail=tails,
)
def test_luhn_valid_16_digit_numbers_are_always_redacted(first: str, rest: str, sep: str, head: str,
                                                          tail: str) -> None:
    # 15 random digits (the first one a card's 2-6, see _CARD_FIRST_DIGITS) plus the Luhn check digit
    body = first + rest
    number = body + luhn_check_digit(body)
    assert luhn_ok(number)
    scrubbed, counts = scrub_text(f"{head}{_layout(number, sep, amex=False)}{tail}")
    assert scrubbed == f"{head}{CARD}{tail}"
    assert counts == {"card": 1}


@given(
    first=st.sampled_from("23456"),
    rest=st.text(alphabet="0123456789", min_size=13, max_size=13),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_luhn_valid_15_digit_numbers_in_amex_layout_are_redacted(first: str, rest: str, sep: str) -> None:
    body = first + rest
    number = body + luhn_check_digit(body)
    assert scrub_text(f"amex {_layout(number, sep, amex=True)}") == (f"amex {CARD}", {"card": 1})


@given(
    rest=st.text(alphabet="0123456789", min_size=14, max_size=14),
    first=st.sampled_from("0123456789"),
    sep=st.sampled_from(["", " ", "-"]),
    wrong=st.integers(min_value=1, max_value=9),
)
def test_luhn_failing_16_digit_numbers_are_never_redacted(rest: str, first: str, sep: str, wrong: int) -> None:
    body = first + rest
    check = str((int(luhn_check_digit(body)) + wrong) % 10)
    number = body + check
    assert not luhn_ok(number)
    text = f"card {_layout(number, sep, amex=False)} end"
    assert scrub_text(text) == (text, {})


def test_luhn_known_values() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
    rng = random.Random(7)
    for _ in range(200):
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(12, 18)))
        assert sum(luhn_ok(body + d) for d in "0123456789") == 1


# ----------------------------------------------------------------------------- JSON-like values, generated
pii_samples = st.sampled_from([
    "jane.doe@example.com", "a@b.io", "4111 1111 1111 1111", "4111111111111111", "378282246310005", "123-45-6789",
    "+1 (555) 123-4567", "555-123-4567", "020 7946 0958", "+4915112345678", "06 12 34 56 78",
])
filler = st.sampled_from(["", " ", "user ", "card ", "x", "_", "-", ":", "2026-11-22", "v1.0.2", "42", "~2", "__"])
pii_text = st.lists(st.one_of(pii_samples, filler, st.text(alphabet="0123456789 -.+()@:/ax_~", max_size=12)),
                    max_size=5).map("".join)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), pii_text),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(pii_text.filter(lambda k: k != "" and not reserved(k)), children,
                                               max_size=5)),
    max_leaves=20,
)


def strings_in(value: object) -> list[str]:
    """Every key and string in a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings_in(k), *strings_in(v)]]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings_in(item)]
    return []


def shape(value: object) -> object:
    """The value with every string (key or leaf) replaced by one marker: what scrubbing must preserve."""
    if isinstance(value, str):
        return "s"
    if isinstance(value, dict):
        return sorted(repr(shape(v)) for v in value.values())
    if isinstance(value, list | tuple):
        return [shape(item) for item in value]
    return value


@settings(max_examples=300)
@given(json_like)
def test_after_scrubbing_no_detector_finds_anything_in_any_key_or_value(value: object) -> None:
    scrubbed, counts = scrub_value(value)
    for text in strings_in(scrubbed):
        assert scrub_text(text) == (text, {}), text
    for d in dicts_in(scrubbed):
        for key in d:
            assert key and len(key.encode()) <= MAX_KEY_BYTES and not reserved(key)
    assert shape(scrubbed) == shape(value)  # no key lost, no value lost or moved out of its dict
    assert scrub_value(scrubbed) == (scrubbed, {})
    found = sum(counts.values())
    assert found == sum(sum(scrub_text(t)[1].values()) for t in strings_in(value))


def dicts_in(value: object) -> list[dict[str, object]]:
    if isinstance(value, dict):
        return [value, *(d for v in value.values() for d in dicts_in(v))]
    if isinstance(value, list | tuple):
        return [d for item in value for d in dicts_in(item)]
    return []
